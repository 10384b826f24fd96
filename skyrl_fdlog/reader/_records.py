"""Records: the record format of docs/format.md parsed, and the one read loop of the reader.

Every part of the reader that reads a log (:func:`iter_records`, ``tail`` reading back,
``tail -f`` following, ``stats``, the demo's summary and the benchmarks' checker) reads it
through :class:`RecordReader`: read a block, cut it into lines (:class:`LineSplitter`),
parse each line (:class:`RecordParser`).  Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import os
import re
from collections.abc import Iterator
from typing import BinaryIO, Literal, TypeVar, Union

from ._message import level_of, view

#: How much one read takes from the file.
CHUNK_BYTES = 1 << 20
#: The longest line of the file held whole; a longer one is cut into pieces of exactly
#: this size.  A record is never longer than 4096 bytes, so only content that is not a log
#: gets cut, and a small cut keeps memory small on it (a 1 GiB line without a newline).
CUT_BYTES = 1 << 20

Malformed = Literal["unparsable", "truncated"]
Source = Union[str, "os.PathLike[str]", BinaryIO]

# The prefix regular expression of docs/format.md, matched on the line decoded as latin-1
# (one byte, one character: match offsets are byte offsets, and groups come out as str
# without a decode per field).  re.ASCII keeps \d to [0-9].
_PREFIX = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9._-]{1,64}) "
    r"([A-Za-z0-9._:-]{1,64})\[(\d+)\] (out|err|fdlog)([:+~]) ",
    re.ASCII,
)
# Real prefixes are under 200 bytes; matching on a head of the line keeps a 4 KiB payload
# from being decoded.  A line whose prefix is longer (a huge pid) is retried whole.
_HEAD_BYTES = 256


_Class = TypeVar("_Class", bound=type)


def _with_slots(cls: _Class) -> _Class:
    """Give a dataclass ``__slots__``, as ``dataclass(slots=True)`` does from Python 3.10.

    ``__slots__`` cannot simply be written in the class body: a field default is a class
    attribute, which clashes with the field's slot.  So, as the standard library does, the
    class is made again from its namespace with the fields as slots and without the
    defaults, which live on in the generated ``__init__``.
    """
    fields = tuple(field.name for field in dataclasses.fields(cls))
    namespace = {k: v for k, v in cls.__dict__.items() if k not in fields}
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__slots__"] = fields
    slotted = type(cls)(cls.__name__, cls.__bases__, namespace)
    slotted.__qualname__ = cls.__qualname__
    return slotted


@_with_slots
@dataclasses.dataclass
class Record:
    """One record of an infra log, or (from the joiner) one logical line.

    For a record that did not parse (``malformed == "unparsable"``) the writer fields are
    empty (``""``, pid 0, time 0), ``mark`` is ``":"`` and ``payload`` is the whole line.
    A ``"truncated"`` record (no ``\\n`` at the end of the input) keeps the fields it
    parsed, if any; its payload may be cut short.
    """

    ts: str
    """The timestamp as written, ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    time_ms: int
    """``ts`` as milliseconds since the Unix epoch."""
    node: str
    name: str
    """The actor (or process) name."""
    pid: int
    stream: str
    """``"out"``, ``"err"`` or ``"fdlog"``."""
    mark: str
    """``":"`` a line end, ``"+"`` a fragment (for a joined line: a partial line), ``"~"``
    a progress snapshot."""
    payload: bytes
    """The bytes after the prefix, without the ``\\n``."""
    malformed: Malformed | None = None
    parts: int = 1
    """How many records the joiner concatenated into this line."""

    @property
    def parsed(self) -> bool:
        """True when the writer fields are known (the prefix parsed)."""
        return self.stream != ""

    @property
    def partial(self) -> bool:
        """True for a fragment, or a joined line whose end never came."""
        return self.mark == "+"

    @property
    def level(self) -> str | None:
        """The payload's level, from this line alone: ``"debug"``, ``"info"``,
        ``"warning"``, ``"error"``, ``"critical"`` or None (see :data:`LEVELS`; the table is
        skyrl_fdlog/levels.json).  Lines inside a Python traceback need the lines before
        them: :func:`with_levels` reads a traceback as one block of level ``"error"``."""
        return level_of(self.shown_text())

    def shown_text(self) -> str:
        """The payload as the CLI shows it (vLLM's decoration of its own pid and colours
        dropped), decoded as UTF-8 with invalid bytes as U+FFFD."""
        payload = view(self.payload, self.pid)[1] if self.parsed else self.payload
        return payload.decode("utf-8", "replace")

    @property
    def datetime(self) -> _dt.datetime | None:
        """The timestamp as an aware UTC datetime; None when the prefix did not parse."""
        if not self.parsed:
            return None
        return _dt.datetime.fromtimestamp(self.time_ms / 1000, _dt.timezone.utc)


class RecordParser:
    """Turns one line (without its ``\\n``) into a :class:`Record`; never raises."""

    def __init__(self) -> None:
        # Records come roughly in time order, so the epoch of the last second seen is
        # nearly always the one needed next: a one-entry cache, constant in memory.
        self._second = ""
        self._second_ms = 0

    def parse(self, line: bytes, truncated: bool = False) -> Record:
        """Parse ``line``; ``truncated`` says the input ended before its ``\\n``."""
        match = _PREFIX.match(line[:_HEAD_BYTES].decode("latin-1"))
        if match is None and len(line) > _HEAD_BYTES:
            match = _PREFIX.match(line.decode("latin-1"))
        if match is not None:
            ts, node, name, pid, stream, mark = match.groups()
            second = ts[:19]
            if second != self._second:
                try:
                    epoch = _dt.datetime.fromisoformat(second + "+00:00").timestamp()
                except ValueError:  # digits in the right places, but no such date
                    match = None
                else:
                    self._second, self._second_ms = second, int(epoch) * 1000
        if match is None:
            return Record("", 0, "", "", 0, "", ":", line, "truncated" if truncated else "unparsable")
        return Record(
            ts,
            self._second_ms + int(ts[20:23]),
            node,
            name,
            int(pid),
            stream,
            mark,
            line[match.end() :],
            "truncated" if truncated else None,
        )


class LineSplitter:
    """Cuts a byte stream into lines at ``\\n``, holding an unfinished last line back.

    An unfinished line longer than ``max_line`` is released in pieces of exactly
    ``max_line`` bytes, so memory stays bounded on input that is not a log (no valid record
    is longer than 4096 bytes).
    """

    def __init__(self, max_line: int = CUT_BYTES) -> None:
        self._max_line = max_line
        self.rest = b""
        """The bytes after the last ``\\n`` fed so far."""

    def feed(self, data: bytes) -> list[bytes]:
        """Return the lines that ``data`` completes, without their ``\\n``; a line longer
        than ``max_line`` as its pieces."""
        size = self._max_line
        lines = (self.rest + data if self.rest else data).split(b"\n")
        rest = lines.pop()
        if len(rest) > size:
            # Hold back the last (at most size) bytes: a \n may still end them.  The cut
            # falls on a multiple of size from the line's start, so the pieces are the same
            # whatever the reads were.
            cut = len(rest) - (len(rest) % size or size)
            lines.append(rest[:cut])
            rest = rest[cut:]
        self.rest = rest
        if lines and max(map(len, lines)) > size:
            lines = [line[i : i + size] for line in lines for i in range(0, len(line) or 1, size)]
        return lines


@contextlib.contextmanager
def open_source(source: Source) -> Iterator[BinaryIO]:
    """Open a path for reading in binary, or pass an open binary stream through.

    A path is closed on exit; a stream is left open for its owner.  ``OSError`` from
    opening a path propagates unchanged (it names the path).
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=0) as stream:
            yield stream
    elif isinstance(source, io.TextIOBase):
        raise TypeError("the reader needs a binary stream; open the file with 'rb'")
    else:
        yield source


class RecordReader:
    """The one read loop of the reader: reads ``stream`` a block at a time, cuts the blocks
    into lines and parses them, holding an unfinished last line back for the next block.

    Iterating gives every record up to the end of the stream, the unfinished last line
    (if any) as a ``truncated`` record.  A caller that waits for more (``tail -f``) calls
    :meth:`read` again after it returned None, and :meth:`finish` when it gives up on the
    unfinished line.  ``end`` stops reading at that offset of the stream (which must then
    be seekable), for a reader of part of a file.
    """

    def __init__(self, stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES, end: int | None = None) -> None:
        self.stream = stream
        self._chunk_bytes = chunk_bytes
        self._left = None if end is None else max(0, end - stream.tell())
        self._parse = RecordParser().parse
        self._splitter = LineSplitter()
        self.data = b""
        """The bytes of the last :meth:`read`: ``tail -f`` keeps their end to notice a file
        that was cut back and rewritten."""

    def read(self) -> Iterator[Record] | None:
        """The records that the next block completes (maybe none), parsed as they are
        taken; None when the stream has nothing more now (or ``end`` is reached)."""
        size = self._chunk_bytes if self._left is None else min(self._chunk_bytes, self._left)
        data = self.stream.read(size) if size else b""
        if not data:
            return None
        if self._left is not None:
            self._left -= len(data)
        self.data = data
        return map(self._parse, self._splitter.feed(data))

    def finish(self) -> list[Record]:
        """The unfinished last line as a ``truncated`` record (none if there is none), which
        is then forgotten: what is read next starts a new line."""
        rest, self._splitter.rest = self._splitter.rest, b""
        return [self._parse(rest, truncated=True)] if rest else []

    def __iter__(self) -> Iterator[Record]:
        while (records := self.read()) is not None:
            yield from records
        yield from self.finish()


def iter_records(source: Source, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Record]:
    """Yield every record of ``source`` in file order, in constant memory.

    Every byte of the input ends up in exactly one record's payload or prefix, so the
    file can be rebuilt from the records; see :class:`Record` for malformed lines.
    """
    with open_source(source) as stream:
        yield from RecordReader(stream, chunk_bytes)
