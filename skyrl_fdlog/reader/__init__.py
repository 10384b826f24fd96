"""Read infra logs: parse records, rejoin split lines, merge per-node files by time.

The record format is specified in docs/format.md; this module is its reference reader.
It needs nothing but the standard library of CPython 3.9 or later: reading a log needs no
compiled capture core.

Guarantees:

* Streaming: memory is bounded by one read chunk (``CHUNK_BYTES``), the longest line of
  the file held whole (``CUT_BYTES``), the longest joined line (``MAX_LINE_BYTES``) and
  the joiner's pending chains (``max_pending_bytes``), never by the size of the file.
* Total: any bytes parse.  A line that does not match the format becomes a record with
  ``malformed="unparsable"`` whose payload is the whole line; a last line without its
  ``\\n`` (a cut file, or a record still being written) has ``malformed="truncated"``.
* Exact: joining the payloads of a ``+`` chain gives the original line's bytes; payloads
  are never decoded, so invalid UTF-8, NUL and escape sequences come back unchanged.

Typical use::

    from skyrl_fdlog.reader import iter_lines

    for line in iter_lines("/tmp/skyrl-logs/infra-....log"):
        if line.name == "VLLMEngine" and not line.malformed:
            print(line.datetime, line.payload.decode(errors="replace"))

    for line in tail("/tmp/skyrl-logs/infra-....log", 20, actor="VLLMEngine*"):
        ...   # the engine's last 20 lines, read from the end of a file of any size
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as _dt
import heapq
import io
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import BinaryIO, Literal, TypeVar, Union

from ._message import LEVELS, LevelTracker, level_of, view

__all__ = [
    "CHUNK_BYTES",
    "CUT_BYTES",
    "MAX_LINE_BYTES",
    "MAX_PENDING_BYTES",
    "LineJoiner",
    "LineSplitter",
    "Malformed",
    "Record",
    "RecordParser",
    "Source",
    "iter_lines",
    "iter_records",
    "join_lines",
    "LEVELS",
    "with_levels",
    "merge_by_time",
    "open_source",
    "read_back",
    "tail",
]

#: How much one read takes from the file.
CHUNK_BYTES = 1 << 20
#: The longest line of the file held whole; a longer one is cut into pieces of exactly
#: this size.  A record is never longer than 4096 bytes, so only content that is not a log
#: gets cut, and a small cut keeps memory small on it (a 1 GiB line without a newline).
CUT_BYTES = 1 << 20
#: The longest line the joiner rebuilds from a ``+`` chain before releasing it in pieces.
MAX_LINE_BYTES = 16 << 20
#: The joiner's default bound on the bytes of all its pending chains together.
MAX_PENDING_BYTES = 64 << 20

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
            return Record(
                "", 0, "", "", 0, "", ":", line, "truncated" if truncated else "unparsable"
            )
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


def iter_records(source: Source, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Record]:
    """Yield every record of ``source`` in file order, in constant memory.

    Every byte of the input ends up in exactly one record's payload or prefix, so the
    file can be rebuilt from the records; see :class:`Record` for malformed lines.
    """
    parse = RecordParser().parse
    splitter = LineSplitter()
    with open_source(source) as stream:
        while data := stream.read(chunk_bytes):
            for line in splitter.feed(data):
                yield parse(line)
    if splitter.rest:
        yield parse(splitter.rest, truncated=True)


class _Chain:
    """The fragments of one line still waiting for their end."""

    __slots__ = ("first", "last_seen", "parts", "size")

    def __init__(self, first: Record) -> None:
        self.first = first
        self.parts = [first.payload]
        self.size = len(first.payload)
        self.last_seen = time.monotonic()


class LineJoiner:
    """Rejoins ``+`` chains into logical lines, per (node, pid, stream).

    Lines come out in the order they end, each as a :class:`Record` carrying the first
    fragment's time and writer, the concatenated payload and ``parts``.  A chain whose end
    never comes is released as a partial line (mark ``+``): at :meth:`finish`, when it
    reaches ``max_line_bytes`` (its next fragments then start a new line), and, oldest
    first, when all pending chains together pass ``max_pending_bytes``.  A truncated record
    ends its chain as a partial line marked ``truncated``; an unparsable one passes as is.
    """

    def __init__(
        self, max_line_bytes: int = MAX_LINE_BYTES, max_pending_bytes: int = MAX_PENDING_BYTES
    ) -> None:
        self._max_line = max_line_bytes
        self._max_pending = max_pending_bytes
        self._pending = 0
        self._chains: dict[tuple[str, int, str], _Chain] = {}

    def push(self, record: Record) -> list[Record]:
        """Take the next record; return the lines it completes or forces out."""
        if not record.parsed:
            return [record]
        key = (record.node, record.pid, record.stream)
        chain = self._chains.get(key)
        if record.mark == "+" and record.malformed is None:
            if chain is None:
                chain = self._chains[key] = _Chain(record)
            else:
                chain.parts.append(record.payload)
                chain.size += len(record.payload)
                chain.last_seen = time.monotonic()
            self._pending += len(record.payload)
            out = []
            if chain.size >= self._max_line:
                out.append(self._release(key, "+", None))
            while self._pending > self._max_pending:
                out.append(self._release(next(iter(self._chains)), "+", None))
            return out
        if chain is None:
            if record.malformed is not None:
                return [dataclasses.replace(record, mark="+")]
            return [record]
        chain.parts.append(record.payload)
        if record.malformed is not None:
            return [self._release(key, "+", record.malformed)]
        return [self._release(key, record.mark, None)]

    def lines(self, records: Iterable[Record], finish: bool = True) -> Iterator[Record]:
        """Push every record and yield the lines; with ``finish``, then the dangling ones."""
        chains = self._chains
        push = self.push
        for record in records:
            # Fast path: nothing pending, a whole line in one record.
            if not chains and record.mark != "+" and record.malformed is None:
                yield record
            else:
                yield from push(record)
        if finish:
            yield from self.finish()

    def flush_idle(self, idle_s: float) -> list[Record]:
        """Release, as partial lines, the chains that got no fragment for ``idle_s``."""
        now = time.monotonic()
        stale = [key for key, chain in self._chains.items() if now - chain.last_seen >= idle_s]
        return [self._release(key, "+", None) for key in stale]

    def finish(self) -> list[Record]:
        """Release every pending chain as a partial line, oldest first."""
        return [self._release(key, "+", None) for key in list(self._chains)]

    def _release(self, key: tuple[str, int, str], mark: str, malformed: Malformed | None) -> Record:
        chain = self._chains.pop(key)
        self._pending -= chain.size
        first = chain.first
        return Record(
            first.ts,
            first.time_ms,
            first.node,
            first.name,
            first.pid,
            first.stream,
            mark,
            b"".join(chain.parts),
            malformed,
            len(chain.parts),
        )


def join_lines(
    records: Iterable[Record],
    max_line_bytes: int = MAX_LINE_BYTES,
    max_pending_bytes: int = MAX_PENDING_BYTES,
) -> Iterator[Record]:
    """Yield the logical lines of ``records``; see :class:`LineJoiner` for the rules."""
    return LineJoiner(max_line_bytes, max_pending_bytes).lines(records)


def iter_lines(source: Source) -> Iterator[Record]:
    """Yield the logical lines of one log: :func:`iter_records` then :func:`join_lines`."""
    return join_lines(iter_records(source))


def with_levels(lines: Iterable[Record]) -> Iterator[tuple[Record, str | None]]:
    """Each line with its level (see :attr:`Record.level`), a Python traceback read as one
    block of level ``"error"`` per writer: its ``Traceback (most recent call last):`` line,
    the indented lines after it and the exception line that ends it.  ``lines`` are joined
    lines in the order written (:func:`iter_lines`, :func:`tail`)::

        for line, level in with_levels(iter_lines(path)):
            if level in ("error", "critical"):
                print(line.name, line.pid, line.payload)
    """
    tracker = LevelTracker()
    for line in lines:
        yield line, tracker.level(line.shown_text(), (line.node, line.pid, line.stream))


def merge_by_time(*streams: Iterable[Record]) -> Iterator[Record]:
    """Interleave record streams (one per file) by time, keeping each stream's own order.

    Records with equal times come in stream order; an unparsable record (no time) stays
    right after the record before it in its stream.
    """
    return map(itemgetter(1), heapq.merge(*map(_keyed_by_time, streams), key=itemgetter(0)))


def _keyed_by_time(records: Iterable[Record]) -> Iterator[tuple[int, Record]]:
    time_ms = 0
    for record in records:
        if record.parsed:
            time_ms = record.time_ms
        yield time_ms, record


def records_between(stream: BinaryIO, start: int, end: int) -> Iterator[Record]:
    """The records of ``stream`` whose lines begin at or after ``start`` and end by ``end``."""
    parse = RecordParser().parse
    splitter = LineSplitter()
    # Reading from the byte before start tells whether start begins a line: if it does,
    # the first piece is empty; either way the first piece is not a whole line.
    position = max(0, start - 1)
    stream.seek(position)
    skip_first = start > 0
    while position < end:
        data = stream.read(min(CHUNK_BYTES, end - position))
        if not data:
            break
        position += len(data)
        for line in splitter.feed(data):
            if skip_first:
                skip_first = False
            else:
                yield parse(line)
    if splitter.rest and not skip_first:
        yield parse(splitter.rest, truncated=True)


#: Selects and joins lines: (records, joiner) -> lines.
Select = Callable[[Iterable[Record], LineJoiner], Iterable[Record]]


def read_back(stream: BinaryIO, end: int, count: int, select: Select) -> tuple[list[Record], LineJoiner, bool]:
    """The last ``count`` lines that ``select`` makes of the records before ``end``, the
    joiner that made them (holding chains still open) and whether the whole file was read.

    Reads back from ``end`` in windows that grow fourfold until ``count`` lines are found,
    so the last lines of a huge file cost a few reads; memory holds ``count`` lines and one
    chunk.  A chain that began before the window shows as a line without its start.
    """
    window = 1 << 16
    while True:
        start = max(0, end - window)
        joiner = LineJoiner()
        found = collections.deque(select(records_between(stream, start, end), joiner), count)
        if len(found) >= count or start == 0:
            return list(found), joiner, start == 0
        window *= 4


def tail(source: str | os.PathLike, n: int = 20, *, actor: str | None = None,
         pid: int | None = None) -> list[Record]:
    """The last ``n`` whole lines of the log ``source`` written by ``actor`` (a shell-style
    pattern, cleaned as ``skyrl-fdlog --actor`` cleans it) and/or ``pid``, oldest first,
    without reading the whole file (:func:`read_back`).  Lines of every process of the
    actor count, its children's included."""
    from ._filters import Filters

    record_test = Filters(actors=(actor,) if actor else (),
                          pids=(pid,) if pid is not None else ()).record_test()

    def select(records: Iterable[Record], joiner: LineJoiner) -> Iterable[Record]:
        return joiner.lines(filter(record_test, records) if record_test else records)

    with open(source, "rb") as stream:
        lines, _, _ = read_back(stream, os.fstat(stream.fileno()).st_size, n, select)
    return lines
