"""Hostile or unusual output: everything lands exactly as written, per docs/format.md.

Each actor runs in its own process; the log is checked with the independent parser in
tests/records.py (lines rejoined with lines_by_writer).
"""

from __future__ import annotations

import datetime as dt

import pytest

from _faults import LONG
from conftest import run_python
from records import lines_by_writer, parse

pytestmark = pytest.mark.slow

STORM_SECONDS = 30 if LONG else 6


def checked(log) -> list:
    """The log's records; fails on a line that is not a record or a record over PIPE_BUF."""
    data = log.read_bytes()
    records, bad = parse(data)
    assert bad == [], bad[:3]
    assert max(len(line) + 1 for line in data.split(b"\n")[:-1]) <= 4096
    return records


def big_line(size: int) -> bytes:
    """`size` bytes of every value but \\n and \\r (NUL, ESC and invalid UTF-8 included)."""
    pattern = bytes(b for b in range(256) if b not in b"\r\n")
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.mark.parametrize("ending", ["newline", "eof"])
def test_ten_mebibyte_line(log_file, tmp_path, ending):
    """A 10 MiB line (all byte values but \\n and \\r), written in one os.write, ended by a
    newline or by the writer closing without one: it is split into records of at most
    PIPE_BUF bytes that rejoin to exactly the 10 MiB; without the newline the line is a
    partial one (an unterminated '+' chain), as docs/format.md says."""
    expected = tmp_path / "expected"
    expected.write_bytes(big_line(10 << 20))
    end = b"\n" if ending == "newline" else b""
    run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        data = open({str(expected)!r}, "rb").read()
        os.write(1, data + {end!r})
        skyrl_fdlog.restore()
    """)
    lines = lines_by_writer(checked(log_file))
    assert len(lines) == 1
    [(text, mark)] = next(iter(lines.values()))
    assert mark == (":" if ending == "newline" else "partial")
    assert text == expected.read_bytes()


PAYLOADS = [
    b"nul\0inside\0\0",
    b"\0",
    b"\xff\xfe\xfd",
    b"\xc3\x28 bad continuation",
    b"\xed\xa0\x80 encoded surrogate",
    b"\xf4\x90\x80\x80 above U+10FFFF",
    b"cut \xe2\x82",
    b"\xc0\xaf overlong slash",
    b"\x1b[31mred\x1b[0m",
    b"\x1b[2K\x1b[1A\x1b[1000D cursor games",
    b"\x1b[?1049h alternate screen",
    b"\x1b]0;window title\x07",
    b"\x1b]8;;https://example.invalid\x1b\\link\x1b]8;;\x1b\\",
    b"\x1b]52;c;ZXZpbA==\x07 clipboard",
    b"\x1bP+q544e\x1b\\ DCS",
    b"\xc2\x9b31m C1 CSI",
    b"\xe2\x80\xae reversed bidi",
    b"abc\x08\x08\x08xyz",
    b"\x07\x0b\x0c\x7f",
    b"tab\there",
    b"2026-01-01T00:00:00.000Z othernode Victim[1] err: forged record",
    b"2026-01-01T00:00:00.000Z othernode Victim[1] out+ forged fragment",
]


def test_nul_invalid_utf8_and_escape_sequences_pass_unchanged(log_file):
    """NUL bytes, invalid UTF-8 (bad continuations, surrogates, overlong forms, a sequence cut
    at the line end), ANSI CSI, OSC (title, hyperlink, clipboard), DCS, C1 and bidi controls,
    backspaces and a payload imitating another actor's record: each line lands byte for byte,
    on its stream, attributed to the writer, never to the imitated actor."""
    run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, name="Hostile")
        for payload in {PAYLOADS!r}:
            os.write(1, payload + b"\\n")
            os.write(2, payload + b"\\n")
        skyrl_fdlog.restore()
    """)
    records = checked(log_file)
    assert {r.name for r in records} == {"Hostile"} and len({r.pid for r in records}) == 1
    for stream in ("out", "err"):
        assert [(r.mark, r.payload) for r in records if r.stream == stream] == [(":", p) for p in PAYLOADS]


def test_carriage_return_storm_is_rate_limited(log_file):
    """A progress bar redrawn with '\\r' 1,000 times a second for STORM_SECONDS (6 s; 30 s
    long): at most one '~' snapshot per 5 s (snapshot_interval) plus the final ':' line, each
    snapshot one whole state of the bar, the final line its last state, and the redraws
    never slow the writer down."""
    result = run_python(f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        start, i = time.monotonic(), 0
        while time.monotonic() - start < {STORM_SECONDS}:
            os.write(1, f"\\rLoading: {{i:>7}} |{{'#' * (i % 50):<50}}|".encode())
            i += 1
            time.sleep(max(0.0, start + i / 1000 - time.monotonic()))
        elapsed = time.monotonic() - start
        os.write(1, b"\\n")
        skyrl_fdlog.restore()
        print(i, elapsed)
    """)
    redraws, elapsed = result.stdout.split()
    redraws = int(redraws)
    records = checked(log_file)
    states = [(r.mark, r.payload, r.time) for r in records]
    snapshots = [s for s in states if s[0] == "~"]
    print(
        f"\nMEASURED carriage-return storm: {redraws} redraws in {float(elapsed):.1f} s -> "
        f"{len(snapshots)} snapshots + 1 line, {log_file.stat().st_size} bytes of log"
    )
    assert redraws >= STORM_SECONDS * 1000 * 0.8
    assert states[-1][0] == ":" and len(states) == len(snapshots) + 1
    assert 1 <= len(snapshots) <= STORM_SECONDS // 5 + 1
    times = [dt.datetime.fromisoformat(t.decode().replace("Z", "+00:00")) for _, _, t in snapshots]
    assert all((b - a).total_seconds() >= 4.9 for a, b in zip(times, times[1:]))
    last = redraws - 1
    assert states[-1][1] == f"Loading: {last:>7} |{'#' * (last % 50):<50}|".encode()
    for _, payload, _ in snapshots:
        i = int(payload.split()[1])
        assert payload == f"Loading: {i:>7} |{'#' * (i % 50):<50}|".encode()


def test_hundred_thousand_line_bursts(log_file):
    """100,000 lines printed as fast as Python can (one write each) on stdout, and 100,000
    lines in a single 1.9 MB os.write on stderr: every line lands once, in order."""
    result = run_python(f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        start = time.monotonic()
        for i in range(100_000):
            print(f"burst line {{i}}")
        printed = time.monotonic() - start
        os.write(2, b"".join(b"block line %d\\n" % i for i in range(100_000)))
        skyrl_fdlog.restore()
        print(printed)
    """)
    records = checked(log_file)
    out = [r.payload for r in records if r.stream == "out"]
    err = [r.payload for r in records if r.stream == "err"]
    print(f"\nMEASURED 100,000 prints in {float(result.stdout):.2f} s")
    assert out == [f"burst line {i}".encode() for i in range(100_000)]
    assert err == [f"block line {i}".encode() for i in range(100_000)]
    assert all(r.mark == ":" for r in records)
