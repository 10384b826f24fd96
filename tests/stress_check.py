"""The checker for writer_program.py output: every line once, whole, in order, attributed."""

from __future__ import annotations

import re
import zlib
from collections import defaultdict

from records import Record, lines_by_writer, parse

LINE = re.compile(rb"^(actor|child)(\d+)\.(\d+)\.(print|write|printf) (\d+) ([0-9a-f]{8}) (.*)$", re.S)


def check_lines(lines: list[bytes], writers: int, count: int) -> list[str]:
    """Problems found among `lines` (payloads of whole lines); empty when all is well."""
    problems = []
    seqs: dict[tuple, list[int]] = defaultdict(list)
    for text in lines:
        match = LINE.match(text)
        if match is None:
            problems.append(f"torn or foreign line: {text[:80]!r}")
            continue
        role, index, pid, method, seq, crc, body = match.groups()
        if int(crc, 16) != zlib.crc32(body):
            problems.append(f"checksum mismatch: {text[:80]!r}")
            continue
        seqs[(role, int(index), method)].append(int(seq))
    for role in (b"actor", b"child"):
        for index in range(writers):
            for method in (b"print", b"write", b"printf"):
                got = seqs.get((role, index, method), [])
                if got != list(range(count)):
                    problems.append(
                        f"{role.decode()}{index} {method.decode()}: expected 0..{count - 1} "
                        f"once in order, got {len(got)} lines"
                        f"{' out of order or duplicated' if len(got) == count else ''}"
                    )
    return problems


def check_log(data: bytes, writers: int, count: int) -> list[str]:
    """Problems in a log written by redirect(): records parse, lines rejoin, attribution holds."""
    records, bad = parse(data)
    problems = [f"malformed record: {line[:80]!r}" for line in bad]
    lines = []
    for (pid, stream), writer_lines in lines_by_writer(records).items():
        for text, mark in writer_lines:
            if mark != ":":
                problems.append(f"pid {pid} {stream}: line ended with {mark!r}: {text[:80]!r}")
            match = LINE.match(text)
            if match is not None and int(match.group(3)) != pid:
                problems.append(f"line of pid {int(match.group(3))} attributed to pid {pid}")
            lines.append(text)
    names = {record.pid: record.name for record in records}
    for record in records:
        if names[record.pid] != record.name:
            problems.append(f"pid {record.pid} appears as {names[record.pid]} and {record.name}")
    return problems + check_lines(lines, writers, count)


def actor_names(records: list[Record]) -> set[str]:
    return {record.name for record in records}
