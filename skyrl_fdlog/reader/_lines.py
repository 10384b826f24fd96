"""Logical lines: ``+`` chains rejoined, levels read, several files merged by time.

A line cut into several records (docs/format.md: a ``+`` record's line goes on in a later
record of the same writer) comes out of :class:`LineJoiner` whole again.  Memory is bounded
by ``max_line_bytes`` and ``max_pending_bytes``, never by the file.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Iterable, Iterator
from operator import itemgetter

from ._message import LevelTracker
from ._records import Malformed, Record, Source, iter_records

#: The longest line the joiner rebuilds from a ``+`` chain before releasing it in pieces.
MAX_LINE_BYTES = 16 << 20
#: The joiner's default bound on the bytes of all its pending chains together.
MAX_PENDING_BYTES = 64 << 20


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
