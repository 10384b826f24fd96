"""The benchmark's test lines and the checker that finds torn, lost and reordered ones.

Every line a writer emits is determined by (writer id, sequence number, size):

    W003 S000001234 003.003.003.003.003. E000001234\\n

so the checker rebuilds the expected bytes and compares: a line torn by another writer's
bytes, cut short, or missing is found exactly.  The filler repeats the writer id, so two
writers' pieces glued together never look like a whole line.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from skyrl_fdlog.reader import iter_records, join_lines

HEAD = 16  # "W003 S000001234 "
TAIL = 11  # " E000001234"
MIN_SIZE = HEAD + TAIL + 2


def filler(wid: int, size: int) -> str:
    """The constant middle of writer `wid`'s lines of `size` bytes (newline included)."""
    n = size - HEAD - TAIL - 1
    unit = f"{wid:03d}."
    return (unit * (n // len(unit) + 1))[:n]


def line_parts(wid: int, size: int) -> tuple[str, str]:
    """(before the first seq, between the seqs): line = f"{a}{seq:09d}{b}{seq:09d}"."""
    if size < MIN_SIZE:
        raise ValueError(f"lines must be at least {MIN_SIZE} bytes, got {size}")
    return f"W{wid:03d} S", f" {filler(wid, size)} E"


def make_line(wid: int, seq: int, size: int) -> bytes:
    """The exact bytes of line `seq` of writer `wid`, without the newline."""
    a, b = line_parts(wid, size)
    return f"{a}{seq:09d}{b}{seq:09d}".encode()


@dataclass
class Check:
    """What a log holds compared with what the writers say they wrote."""

    expected: int = 0  # lines the writers wrote
    whole: int = 0  # expected lines found whole (each counted once)
    torn: int = 0  # lines in the file that are not a whole expected line
    missing: int = 0  # expected lines not found whole (lost, or torn)
    duplicated: int = 0  # expected lines found more than once
    reordered: int = 0  # lines of one writer out of sequence order
    notes: int = 0  # skyrl_fdlog's own records ("dropped ...", restarts)
    fragments: int = 0  # '+' records rejoined (long lines)
    examples: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.torn == 0 and self.missing == 0 and self.duplicated == 0 and self.reordered == 0

    def as_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("expected", "whole", "torn", "missing", "duplicated", "reordered", "notes", "fragments")
        } | {"examples": self.examples[:3]}


def _payload_lines(data: bytes, prefixed: bool, check: Check) -> list[bytes]:
    """The logical lines in the log, read by skyrl_fdlog's own reader: when prefixed,
    records parsed and fragments rejoined; else each line of the file as it is."""
    records = iter_records(io.BytesIO(data))
    out = []
    for line in join_lines(records) if prefixed else records:
        if line.malformed == "truncated":  # cut by the end of the file, with its fragments
            check.torn += 1
            check.fragments += line.parts - 1
            check.examples.append(b"unterminated last line: " + line.payload[:60])
        elif prefixed and not line.parsed:
            check.torn += 1
            if len(check.examples) < 3:
                check.examples.append(b"malformed record: " + line.payload[:60])
        elif line.stream == "fdlog":
            check.notes += 1
            if len(check.examples) < 3:
                check.examples.append(b"fdlog note: " + line.payload[:120])
        elif line.partial:  # fragments whose end never came
            check.torn += 1
            check.fragments += line.parts
            check.examples.append(b"unterminated fragment chain: " + line.payload[:60])
        else:
            check.fragments += line.parts - 1
            out.append(line.payload)
    return out


def check_log(data: bytes, counts: dict[int, int], size: int, prefixed: bool) -> Check:
    """Compare a log with the lines writers `counts` = {wid: lines written} emitted."""
    check = Check(expected=sum(counts.values()))
    parts = {wid: line_parts(wid, size) for wid in counts}
    seen: dict[int, bytearray] = {wid: bytearray(n) for wid, n in counts.items()}
    last: dict[int, int] = {wid: -1 for wid in counts}
    length = size - 1
    for text in _payload_lines(data, prefixed, check):
        wid = seq = -1
        if len(text) == length and text[:1] == b"W":
            try:
                wid = int(text[1:4])
                seq = int(text[6:15])
            except ValueError:
                wid = -1
        p = parts.get(wid)
        if p is None or not 0 <= seq < counts[wid] or text != f"{p[0]}{seq:09d}{p[1]}{seq:09d}".encode():
            check.torn += 1
            if len(check.examples) < 3:
                check.examples.append(b"torn: " + text[:60])
            continue
        marks = seen[wid]
        if marks[seq]:
            check.duplicated += 1
        else:
            marks[seq] = 1
            check.whole += 1
        if seq < last[wid]:
            check.reordered += 1
        last[wid] = seq
    check.missing = check.expected - check.whole
    check.examples = [e.decode("utf-8", "replace") for e in check.examples]
    return check
