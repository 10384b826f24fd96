"""Order between an actor's Python output and its fd-level output, measured.

Each writer alternates `print(line)` and `os.write(1, line)` (bench_writer.py, role
"order"), numbering the lines in the order it wrote them.  With skyrl_fdlog's default the
two go through different channels (the actor's own pipe and the socket on fd 1) and the
helper may read them in another order; with SKYRL_FDLOG_PYTHON_PIPES=0 or dup2 there is one
channel.  In the log, per writer, a line is *late* when a line written after it already
appeared; how late = how many lines written after it got ahead (the largest number seen
before it minus its own).  Reported: lines late, and the distribution of how late.
"""

from __future__ import annotations

import re
from typing import Any

import harness

LINE = re.compile(rb"ORD W(\d{3}) S(\d{9}) (py|fd)$")


def late_lines(data: bytes, prefixed: bool) -> tuple[dict[int, list[int]], int, int]:
    """({writer: [how late, for each late line]}, lines found, unreadable lines)."""
    best: dict[int, int] = {}
    late: dict[int, list[int]] = {}
    found = unreadable = 0
    for record in data.split(b"\n")[:-1]:
        payload = record.split(b" ", 4)[4] if prefixed and record.count(b" ") >= 4 else record
        m = LINE.search(payload)
        if m is None:
            unreadable += 1
            continue
        found += 1
        wid, seq = int(m.group(1)), int(m.group(2))
        top = best.get(wid, -1)
        if seq < top:
            late.setdefault(wid, []).append(top - seq)
        else:
            best[wid] = seq
    return late, found, unreadable


def run_order(method: str, writers: int, pairs: int, interval: float, **kwargs: Any) -> dict:
    """One order case: `writers` processes of `pairs` print()/os.write pairs each, `interval`
    seconds apart (0: full speed, loading the machine and the helper)."""
    case = harness.Case(
        method,
        writers,
        size=40,
        lines=2 * pairs * writers,
        role="order",
        probe={"pairs": pairs, "interval": interval},
        keep_log=True,
        max_seconds=600,
        **kwargs,
    )
    case.prepare()
    case.go()
    result = case.finish()
    assert case.path is not None
    data = case.path.read_bytes()
    case.keep_log = False
    case.cleanup()
    late, found, unreadable = late_lines(data, prefixed=method == "fdlog")
    distances = sorted(d for ds in late.values() for d in ds)
    return result | {
        "pairs": pairs,
        "interval": interval,
        "expected": 2 * pairs * writers,
        "found": found,
        "unreadable": unreadable,
        "late": len(distances),
        "late_p50": harness.percentile(distances, 0.5) if distances else 0,
        "late_p99": harness.percentile(distances, 0.99) if distances else 0,
        "late_max": distances[-1] if distances else 0,
    }
