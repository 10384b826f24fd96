"""Reading the infra log back: lines per actor, counted with the package's own reader."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from skyrl_fdlog.reader import iter_records


def lines_per_actor(log_file: str | Path) -> Counter[str]:
    """Logical lines in the log by actor name (records that end a line: a ``+`` record is a
    fragment whose line goes on in a later record); lines that are not records (a fallback
    to direct writes, say) count under '(not a record)'."""
    counts: Counter[str] = Counter()
    for record in iter_records(log_file):
        if not record.parsed:
            counts["(not a record)"] += 1
        elif not record.partial:
            counts[record.name] += 1
    return counts
