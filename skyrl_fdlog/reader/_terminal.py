"""Print lines so that log content cannot take over the terminal.

Guarantees, unless ``raw_bytes`` is asked for:

* Every byte that a terminal could act on is shown as an escape, never sent: C0 controls
  but tab (``\\x1b``, ``\\r``, ``\\x07``...), DEL, bytes that are not UTF-8 (``\\xff``),
  and the code points C1 controls, bidirectional overrides and line separators
  (``\\u009b``, ``\\u202e``, ``\\u2028``).  A backslash in the payload is left as it is,
  so escapes are for eyes, not for parsing; ``--raw-bytes`` gives the exact bytes.
* One output line per logical line: a payload never holds ``\\n``, and ``\\r`` is escaped,
  so no payload can move the cursor to rewrite or fake a prefix.
* Colour marks the actor, and shows the colours a payload asked for (vLLM's and Ray's
  SGR colour sequences, ``_message.COLOUR``; never one that hides text), reset at the end
  of the line; without colour those sequences are dropped.  Whether to colour is decided
  by :func:`use_color`; ``--no-prefix`` output is never coloured.
* vLLM's ``(EngineCore pid=N)`` decoration of a line whose writer is pid N is not shown:
  its role shows in the prefix, ``name[pid/role]`` (``_message.undecorate``).
"""

from __future__ import annotations

import os
import re
import zlib
from typing import BinaryIO

from ._dedup import Repeat
from ._message import COLOUR, drop_colours, undecorate
from ._records import Record

# What a terminal could act on, each mapped to its visible escape: C0 controls but tab,
# DEL, C1 controls, bidirectional marks and overrides, line and paragraph separators, and
# the bytes that were not UTF-8 (kept by surrogateescape as U+DC80..U+DCFF).
_UNSAFE_CODES = [
    *range(0x00, 0x09),
    *range(0x0B, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x2028, 0x202F),
    *range(0x2066, 0x206A),
]
_ESCAPES = {code: f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" for code in _UNSAFE_CODES}
_ESCAPES.update({0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)})
_UNSAFE = re.compile("[" + "".join(map(chr, _ESCAPES)) + "]")
# Six basic and six bright foreground colours, picked by a stable hash of the actor.
_PALETTE = [f"\x1b[{code}m" for code in (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)]
_GREEN = "\x1b[32m"
_RESET = "\x1b[0m"
# Printable ASCII and tab print as they are: the common case skips decoding.
_NOT_PLAIN_ASCII = re.compile(rb"[^\t\x20-\x7e]")
_BUFFER_BYTES = 1 << 16


def escape(payload: bytes) -> str:
    """The payload as text that is safe to print; see the module's guarantees."""
    text = payload.decode("utf-8", "surrogateescape")
    # Searching first is much faster than translating text that holds nothing to escape.
    return text if _UNSAFE.search(text) is None else text.translate(_ESCAPES)


def escape_keeping_colours(payload: bytes) -> str:
    """Like :func:`escape`, but the payload's colour sequences are kept as colour, and a
    reset ends the text when there was any, so no colour runs on into the next line."""
    shown = []
    position = 0
    for match in COLOUR.finditer(payload):
        # A colour sequence is ASCII, so cutting around it never splits a UTF-8 character.
        shown.append(escape(payload[position : match.start()]))
        shown.append(match.group().decode("ascii"))
        position = match.end()
    if not shown:
        return escape(payload)
    shown.append(escape(payload[position:]))
    shown.append(_RESET)
    return "".join(shown)


def shown_path(path: str | os.PathLike[str]) -> str:
    """A file name as safe to print: its bytes escaped as a payload's are."""
    return escape(os.fsencode(path))


def use_color(choice: str, stream: BinaryIO) -> bool:
    """Whether to colour: ``always``, ``never``, or ``auto``.

    ``auto`` colours only a terminal, and only when ``NO_COLOR`` is unset or empty
    (https://no-color.org: an explicit ``--color always`` overrides it).
    """
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


class BufferedPrinter:
    """Writes lines (and dedup summaries) to a binary stream, one output line each, as
    :meth:`render` shows them.  Output is buffered: call :meth:`flush` when the reader
    should see it, or ask for ``flush_each`` line (a live log shipper reads every line
    at once)."""

    def __init__(self, out: BinaryIO, *, flush_each: bool = False) -> None:
        self._out = out
        self._flush_each = flush_each
        self._buffer: list[bytes] = []
        self._buffered = 0

    def write(self, item: Record | Repeat) -> None:
        """Print one line, or a dedup summary as its line with the repeat count."""
        text = self.render(item) + b"\n"
        # Joining many lines into one write is most of the speed of printing; the bound is
        # in bytes because one line can be megabytes long.
        self._buffer.append(text)
        self._buffered += len(text)
        if self._flush_each:
            self.flush()
        elif self._buffered >= _BUFFER_BYTES:
            self._write_buffer()

    def flush(self) -> None:
        self._write_buffer()
        self._out.flush()

    def _write_buffer(self) -> None:
        self._out.write(b"".join(self._buffer))
        self._buffer.clear()
        self._buffered = 0

    def render(self, item: Record | Repeat) -> bytes:
        """One output line, without its ``\\n``."""
        raise NotImplementedError


class Printer(BufferedPrinter):
    """Shows lines as text.

    With ``prefix`` a line shows as ``ts node name[pid] stream+mark payload`` (the record
    format itself, so partial lines and progress snapshots keep their ``+`` and ``~``;
    ``name[pid/role]`` when vLLM's decoration named the line's role); without, as its
    payload alone.  An unparsable line shows as it was in the file.  With ``raw_bytes``
    the payload is shown exactly as written (decoration and escape sequences included)
    and the prefix as in the file.
    """

    def __init__(self, out: BinaryIO, *, prefix: bool, raw_bytes: bool, color: bool) -> None:
        super().__init__(out)
        self._prefix = prefix
        self._raw_bytes = raw_bytes
        self._color = color
        # The payload's own colours show only next to a prefix: --no-prefix output is
        # what a program reads (grep, a file), so it never carries colour codes.
        self._payload_colours = color and prefix

    def render(self, item: Record | Repeat) -> bytes:
        if isinstance(item, Repeat):
            suffix = f" [repeated {item.count}x across cluster]"
            if self._color:
                suffix = _GREEN + suffix + _RESET
            return self._render(item.line) + suffix.encode()
        return self._render(item)

    def _render(self, line: Record) -> bytes:
        payload = line.payload
        role = None
        if not self._raw_bytes:
            if line.parsed:
                role, payload = undecorate(payload, line.pid)
            if _NOT_PLAIN_ASCII.search(payload) is not None:
                if self._payload_colours:
                    payload = escape_keeping_colours(payload).encode()
                else:
                    payload = escape(drop_colours(payload)).encode()
        if not (self._prefix and line.parsed):
            return payload
        writer = f"{line.name}[{line.pid}/{role}]" if role else f"{line.name}[{line.pid}]"
        if self._color:
            writer = _PALETTE[zlib.crc32(line.name.encode()) % len(_PALETTE)] + writer + _RESET
        return f"{line.ts} {line.node} {writer} {line.stream}{line.mark} ".encode() + payload
