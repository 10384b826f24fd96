"""Properties of the reader's parser, joiner and terminal escaping, for any input bytes.

    python tests/_fuzz_reader.py [libFuzzer flags] [CORPUS_DIR...]   (atheris, coverage-guided)

check(data) is also called by tests/test_reliability_fuzz.py through hypothesis.  With
FDLOG_FUZZ_PLANT_BUG=1 the parser is deliberately broken (it drops the last byte of any
payload holding a tab), so the test can prove that the harness catches damage.

Properties:
  1. Total and exact: iter_records never raises; one record per input line; an unparsable
     line's payload is the whole line; a parsed record's payload is the end of its line, and
     the rest of the line is exactly the prefix the record's fields spell; the same records
     whatever the read chunk size.
  2. No impersonation: any payload behind a real prefix comes back as payload, byte for byte,
     with the real writer's fields, whatever prefix it imitates.
  3. Rejoining: a line cut into '+' fragments at any points, interleaved with another
     writer's records, is rejoined exactly.
  4. Terminal safety: skyrl_fdlog.reader._terminal.escape() output holds no byte or code
     point a terminal acts on (C0 but tab, DEL, C1, bidi controls, line separators, surrogates).
"""

from __future__ import annotations

import io
import os
import re
import sys

try:
    import atheris
except ImportError:  # the hypothesis test imports check() without atheris
    atheris = None


def _load():
    if atheris is not None and __name__ == "__main__":
        with atheris.instrument_imports():
            from skyrl_fdlog import reader
            from skyrl_fdlog.reader import _terminal
    else:
        from skyrl_fdlog import reader
        from skyrl_fdlog.reader import _terminal
    return reader, _terminal


reader, terminal = _load()

if os.environ.get("FDLOG_FUZZ_PLANT_BUG") == "1":
    _real_parse = reader.RecordParser.parse

    def _broken_parse(self, line, truncated=False):
        record = _real_parse(self, line, truncated)
        if b"\t" in record.payload:
            record.payload = record.payload[:-1]
        return record

    reader.RecordParser.parse = _broken_parse

PREFIX = b"2026-11-27T02:47:06.123Z node-1 Actor.x:1[4242] out"
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def spelled_prefix(record) -> bytes:
    return f"{record.ts} {record.node} {record.name}[{record.pid}] {record.stream}{record.mark} ".encode()


def check_records(data: bytes, chunk: int) -> None:
    records = list(reader.iter_records(io.BytesIO(data), chunk_bytes=chunk))
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    assert len(records) == len(lines), (len(records), len(lines))
    for number, (record, line) in enumerate(zip(records, lines)):
        truncated = number == len(lines) - 1 and not data.endswith(b"\n")
        assert (record.malformed == "truncated") == truncated or record.malformed == "unparsable"
        if not record.parsed:
            assert record.payload == line
            continue
        assert line.endswith(record.payload)
        head = line[: len(line) - len(record.payload)]
        # pid may have been written with leading zeros; everything else is spelled exactly.
        pid_digits = re.search(rb"\[(\d+)\] ", head).group(1)
        assert head == spelled_prefix(record).replace(f"[{record.pid}]".encode(), b"[" + pid_digits + b"]")
    again = list(reader.iter_records(io.BytesIO(data), chunk_bytes=1 << 20))
    assert again == records


def check_impersonation(payload: bytes) -> None:
    payload = payload.replace(b"\n", b"")
    for mark in b":+~":
        line = PREFIX + bytes([mark]) + b" " + payload
        record = reader.RecordParser().parse(line)
        assert (record.node, record.name, record.pid, record.stream) == (
            "node-1",
            "Actor.x:1",
            4242,
            "out",
        ), record
        assert record.mark == chr(mark) and record.payload == payload and record.malformed is None


def check_rejoin(data: bytes) -> None:
    line = data.replace(b"\n", b"")
    cuts = sorted({b % (len(line) + 1) for b in data[:8]})
    pieces = [line[a:b] for a, b in zip([0] + cuts, cuts + [len(line)])]
    records = []
    for index, piece in enumerate(pieces):
        mark = b":" if index == len(pieces) - 1 else b"+"
        records.append(PREFIX + mark + b" " + piece)
        records.append(b"2026-11-27T02:47:06.124Z node-1 Other[7] out: between " + bytes([index % 256]))
    text = b"\n".join(records) + b"\n"
    joined = [r for r in reader.iter_lines(io.BytesIO(text)) if r.pid == 4242]
    assert len(joined) == 1 and joined[0].payload == line and joined[0].mark == ":", joined


def check_escape(data: bytes) -> None:
    shown = terminal.escape(data.replace(b"\n", b""))  # a payload never holds \n
    assert UNSAFE.search(shown) is None, ascii(shown)
    shown.encode("utf-8")  # strict: no lone surrogate survives


def check(data: bytes) -> None:
    """Every property for one input."""
    check_records(data, 1 + (data[0] % 7 if data else 0))
    check_impersonation(data)
    check_rejoin(data)
    check_escape(data)


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
