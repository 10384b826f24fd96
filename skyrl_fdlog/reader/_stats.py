"""Per-writer counts for ``skyrl-fdlog stats``: a health check of a log file.

A writer is an (actor, pid, node).  Counts:

* ``lines``: logical lines after rejoining (partial ones included); ``bytes``: their
  payload bytes.
* ``first`` / ``last``: the earliest and latest record time.
* ``partial``: lines whose end never came; ``continuations``: ``+`` records.
* ``drops``: ``fdlog`` records that mention ``dropped`` (the capture lost lines).
* ``malformed``: truncated records of this writer.  Unparsable lines have no writer and
  are counted apart, in :attr:`Stats.unparsable`.

Memory grows with the number of writers, not with the file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable

from ._lines import LineJoiner
from ._records import Record


@dataclasses.dataclass
class WriterStats:
    actor: str
    pid: int
    node: str
    lines: int = 0
    bytes: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    partial: int = 0
    continuations: int = 0
    drops: int = 0
    malformed: int = 0


@dataclasses.dataclass
class Stats:
    writers: dict[tuple[str, int, str], WriterStats] = dataclasses.field(default_factory=dict)
    unparsable: int = 0
    records: int = 0

    @property
    def malformed(self) -> int:
        """Records that are not well-formed: unparsable plus truncated."""
        return self.unparsable + sum(w.malformed for w in self.writers.values())

    def to_json(self) -> dict[str, object]:
        """A JSON-ready summary; times as ISO 8601 UTC strings."""
        return {
            "records": self.records,
            "unparsable": self.unparsable,
            "malformed": self.malformed,
            "writers": [
                {**dataclasses.asdict(w), "first": _iso(w.first_ms), "last": _iso(w.last_ms)}
                for w in self._ordered()
            ],
        }

    def render(self) -> str:
        """A plain-text table, one row per writer in order of first appearance in time."""
        header = (
            "actor",
            "pid",
            "node",
            "lines",
            "bytes",
            "first",
            "last",
            "partial",
            "cont",
            "drops",
            "malformed",
        )
        rows = [header] + [
            (
                w.actor,
                str(w.pid),
                w.node,
                str(w.lines),
                str(w.bytes),
                _iso(w.first_ms) or "-",
                _iso(w.last_ms) or "-",
                str(w.partial),
                str(w.continuations),
                str(w.drops),
                str(w.malformed),
            )
            for w in self._ordered()
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        text = "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
        )
        return (
            f"{text}\n\n{self.records} records, {len(self.writers)} writers, "
            f"{self.unparsable} unparsable, {self.malformed} malformed in all\n"
        )

    def _ordered(self) -> list[WriterStats]:
        return sorted(self.writers.values(), key=lambda w: (w.first_ms or 0, w.actor, w.pid))


def collect(records: Iterable[Record]) -> Stats:
    """Count ``records`` (in file order) per writer; see the module for what is counted."""
    stats = Stats()
    writers = stats.writers
    joiner = LineJoiner()

    def writer_of(record: Record) -> WriterStats:
        key = (record.name, record.pid, record.node)
        writer = writers.get(key)
        if writer is None:
            writer = writers[key] = WriterStats(record.name, record.pid, record.node)
        return writer

    for record in records:
        stats.records += 1
        if not record.parsed:
            stats.unparsable += 1
            continue
        writer = writer_of(record)
        if writer.first_ms is None or record.time_ms < writer.first_ms:
            writer.first_ms = record.time_ms
        if writer.last_ms is None or record.time_ms > writer.last_ms:
            writer.last_ms = record.time_ms
        if record.malformed is not None:
            writer.malformed += 1
        elif record.mark == "+":
            writer.continuations += 1
        if record.stream == "fdlog" and b"dropped" in record.payload:
            writer.drops += 1
        for line in joiner.push(record):
            _count_line(writer_of(line), line)
    for line in joiner.finish():
        _count_line(writer_of(line), line)
    return stats


def _count_line(writer: WriterStats, line: Record) -> None:
    writer.lines += 1
    writer.bytes += len(line.payload)
    if line.partial:
        writer.partial += 1


def _iso(time_ms: int | None) -> str | None:
    if time_ms is None:
        return None
    when = _dt.datetime.fromtimestamp(time_ms / 1000, _dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"
