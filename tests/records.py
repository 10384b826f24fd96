"""A minimal, independent parser of docs/format.md for the core tests.

Deliberately separate from skyrl_fdlog.reader so the writer is checked
against the written specification, not against our own reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECORD = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9._-]{1,64}) ([A-Za-z0-9._:-]{1,64})"
    rb"\[(\d+)\] (out|err|fdlog)([:+~]) (.*)$",
    re.S,
)


@dataclass
class Record:
    time: bytes
    node: str
    name: str
    pid: int
    stream: str
    mark: str
    payload: bytes


def parse(data: bytes) -> tuple[list[Record], list[bytes]]:
    """Records of a whole file, and the lines that are not records."""
    records, bad = [], []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the empty text after the final newline (or of an empty file)
    for line in lines:
        match = RECORD.match(line)
        if match is None:
            bad.append(line)
            continue
        t, node, name, pid, stream, mark, payload = match.groups()
        records.append(
            Record(t, node.decode(), name.decode(), int(pid), stream.decode(), mark.decode(), payload)
        )
    return records, bad


def lines_by_writer(records: list[Record]) -> dict[tuple[int, str], list[tuple[bytes, str]]]:
    """Rejoin '+' chains: for each (pid, stream), its lines as (bytes, final mark)."""
    pending: dict[tuple[int, str], bytes] = {}
    lines: dict[tuple[int, str], list[tuple[bytes, str]]] = {}
    for record in records:
        key = (record.pid, record.stream)
        joined = pending.pop(key, b"") + record.payload
        if record.mark == "+":
            pending[key] = joined
        else:
            lines.setdefault(key, []).append((joined, record.mark))
    for key, joined in pending.items():
        lines.setdefault(key, []).append((joined, "partial"))
    return lines
