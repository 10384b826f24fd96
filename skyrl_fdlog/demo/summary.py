"""Reading the infra log back: records per actor, with the regular expression of docs/format.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

RECORD = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9._-]{1,64}) "
    rb"([A-Za-z0-9._:-]{1,64})\[(\d+)\] (out|err|fdlog)([:+~]) (.*)$")
# A `+` record is a fragment whose line goes on in a later record; `:` and `~` end a line.
LINE_ENDS = (b":", b"~")


def lines_per_actor(log_file: str | Path) -> Counter[str]:
    """Logical lines in the log by actor name (records that end a line); lines that are not
    records (a fallback to direct writes, say) count under '(not a record)'."""
    counts: Counter[str] = Counter()
    with open(log_file, "rb") as log:
        for line in log:
            match = RECORD.match(line.rstrip(b"\n"))
            if match is None:
                counts["(not a record)"] += 1
            elif match.group(6) in LINE_ENDS:
                counts[match.group(3).decode()] += 1
    return counts
