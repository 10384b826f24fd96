"""Reading back from the end of a log: its last lines without reading the whole file.

:func:`read_back` is the backwards reader under :func:`tail` and ``skyrl-fdlog tail``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ._filters import Filters
from ._lines import LineJoiner
from ._records import Record, RecordReader


def records_between(stream: BinaryIO, start: int, end: int) -> Iterator[Record]:
    """The records of ``stream`` whose lines begin at or after ``start`` and end by ``end``."""
    # Reading from the byte before start tells whether start begins a line: if it does,
    # the first piece is empty; either way the first piece is not a whole line.
    stream.seek(max(0, start - 1))
    records = iter(RecordReader(stream, end=end))
    if start > 0:
        next(records, None)
    yield from records


#: Selects and joins lines: (records, joiner) -> lines.
Select = Callable[[Iterable[Record], LineJoiner], Iterable[Record]]


def read_back(
    stream: BinaryIO, end: int, count: int, select: Select
) -> tuple[list[Record], LineJoiner, bool]:
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


def tail(
    source: str | os.PathLike[str], n: int = 20, *, actor: str | None = None, pid: int | None = None
) -> list[Record]:
    """The last ``n`` whole lines of the log ``source`` written by ``actor`` (a shell-style
    pattern, cleaned as ``skyrl-fdlog --actor`` cleans it) and/or ``pid``, oldest first,
    without reading the whole file (:func:`read_back`).  Lines of every process of the
    actor count, its children's included."""
    record_test = Filters(
        actors=(actor,) if actor else (), pids=(pid,) if pid is not None else ()
    ).record_test()

    def select(records: Iterable[Record], joiner: LineJoiner) -> Iterable[Record]:
        return joiner.lines(filter(record_test, records) if record_test else records)

    with open(source, "rb") as stream:
        lines, _, _ = read_back(stream, os.fstat(stream.fileno()).st_size, n, select)
    return lines
