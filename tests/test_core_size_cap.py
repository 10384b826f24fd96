"""redirect(max_bytes=...) and SKYRL_FDLOG_MAX_BYTES: a flood (NCCL_DEBUG=TRACE) cannot fill the disk."""

from __future__ import annotations

import re

import pytest

from conftest import run_python
from records import parse

pytestmark = pytest.mark.slow

CAP = 64 << 10


def test_past_the_cap_records_are_dropped_counted_and_said_once_then_rotation_starts_again(log_file):
    rotated = log_file.with_name(log_file.name + ".1")
    result = run_python(
        f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, max_bytes={CAP})
        started = time.monotonic()
        for i in range(20000):
            print(f"flood {{i:05d}} " + "x" * 80)
        took = time.monotonic() - started
        assert skyrl_fdlog.flush(timeout=10)
        os.rename({str(log_file)!r}, {str(rotated)!r})
        deadline = time.monotonic() + 20
        while not os.path.exists({str(log_file)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)   # the helper checks the path about once a second
        print("after rotation")
        skyrl_fdlog.restore()
        os.write(2, f"{{took:.2f}}".encode())
    """,
        timeout=120,
    )
    assert float(result.stderr) < 30  # the flood was never held up for long (not a timing goal)
    old, bad = parse(rotated.read_bytes())
    assert bad == []
    kept = [r for r in old if r.stream == "out"]
    notes = [r.payload.decode() for r in old if r.stream == "fdlog"]
    assert 0 < len(kept) < 20000
    output_bytes = sum(len(line) + 1 for line in rotated.read_bytes().splitlines() if b" fdlog: " not in line)
    assert CAP - 4096 <= output_bytes <= CAP  # stops within one batch of the cap, never past it
    assert len([n for n in notes if "reached its cap of 65536 bytes" in n]) == 1
    (count,) = [n for n in notes if n.startswith("dropped ")]
    dropped = int(re.match(r"dropped (\d+) records", count).group(1))
    assert len(kept) + dropped == 20000, (len(kept), dropped)
    new, bad = parse(log_file.read_bytes())
    assert bad == [] and [r.payload for r in new if r.stream == "out"] == [b"after rotation"]


def test_the_variable_sets_the_cap_and_bad_values_are_refused(tmp_path):
    log = tmp_path / "capped.log"
    run_python(
        f"""
        import skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        for i in range(3000):
            print("y" * 100)
        skyrl_fdlog.restore()
    """,
        env={"SKYRL_FDLOG_MAX_BYTES": "32K"},
    )
    records, _ = parse(log.read_bytes())
    assert sum(r.stream == "out" for r in records) < 3000
    assert any(b"cap of 32768 bytes" in r.payload for r in records if r.stream == "fdlog")
    result = run_python(f"""
        import skyrl_fdlog
        for bad in (0, -5, 1.5, "10"):
            try:
                skyrl_fdlog.redirect({str(tmp_path / "x.log")!r}, max_bytes=bad)
            except ValueError as error:
                print(error)
    """)
    assert len(result.stdout.decode().splitlines()) == 4
    variable = run_python(
        f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(tmp_path / "x.log")!r})
        except ValueError as error:
            print(error)
    """,
        env={"SKYRL_FDLOG_MAX_BYTES": "lots"},
    )
    assert "SKYRL_FDLOG_MAX_BYTES" in variable.stdout.decode() and "'lots'" in variable.stdout.decode()
    assert not (tmp_path / "x.log").exists()
