"""Quick checks that the benchmark suite works (about half a minute; CI can run it).

.venv/bin/python -m pytest benchmarks/test_bench_smoke.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import harness
import pytest
from bench_lines import check_log, make_line

HERE = Path(__file__).resolve().parent


def prefixed(pid: int, payload: bytes, mark: str = ":") -> bytes:
    return b"2026-11-27T02:47:06.123Z node bench0[%d] out%s %s\n" % (pid, mark.encode(), payload)


def test_checker_counts_whole_lines_and_catches_every_kind_of_damage():
    """The checker passes an intact log and finds a torn, a lost, a duplicated and a
    reordered line: a check that cannot fail proves nothing."""
    size = 64
    lines = [make_line(w, s, size) + b"\n" for w in (0, 1) for s in range(5)]
    intact = check_log(b"".join(lines), {0: 5, 1: 5}, size, prefixed=False)
    assert intact.ok and intact.whole == 10

    torn = lines[:]
    torn[2] = lines[2][:20] + lines[7][20:]  # the front of one line, the end of another
    result = check_log(b"".join(torn), {0: 5, 1: 5}, size, prefixed=False)
    assert (result.torn, result.missing) == (1, 1)

    result = check_log(b"".join(lines[:3] + lines[4:]), {0: 5, 1: 5}, size, prefixed=False)
    assert (result.torn, result.missing) == (0, 1)

    result = check_log(b"".join(lines + lines[:1]), {0: 5, 1: 5}, size, prefixed=False)
    assert result.duplicated == 1 and not result.ok

    result = check_log(b"".join([lines[1], lines[0]] + lines[2:]), {0: 5, 1: 5}, size, prefixed=False)
    assert result.reordered == 1 and not result.ok

    result = check_log(b"".join(lines)[:-5], {0: 5, 1: 5}, size, prefixed=False)
    assert result.torn == 1 and result.missing == 1


def test_checker_rejoins_records_and_reports_helper_notes():
    """In skyrl_fdlog's format, '+' fragments rejoin into the line, a lost record is found,
    and a helper's own 'fdlog' record (e.g. dropped lines) is counted."""
    size = 100
    line = make_line(3, 0, size)
    data = prefixed(7, line[:30], "+") + prefixed(7, line[30:]) + prefixed(7, make_line(3, 1, size))
    assert check_log(data, {3: 2}, size, prefixed=True).ok
    cut = prefixed(7, line[:30], "+") + prefixed(7, make_line(3, 1, size))
    result = check_log(cut, {3: 2}, size, prefixed=True)
    assert (result.torn, result.missing) == (1, 2)  # the orphan fragment glues onto line 1
    note = b"2026-11-27T02:47:06.123Z node bench0[9] fdlog: dropped 5 records\n"
    result = check_log(data + note, {3: 2}, size, prefixed=True)
    assert result.ok and result.notes == 1


@pytest.mark.parametrize("method", harness.METHODS)
def test_each_method_runs_and_keeps_a_single_writers_lines(method, tmp_path):
    """Every method's writer starts, writes, drains and (one writer, line-buffered) loses
    nothing; skyrl_fdlog's helper is measured through wait4()."""
    result = harness.run_case(method, 1, size=120, lines=3000, max_seconds=2, workdir=tmp_path)
    assert result["lines"] == 3000 and result["lines_per_s"] > 0
    if method in harness.CHECKABLE:
        assert result["check"]["whole"] == 3000, result["check"]
    if method == "fdlog" and harness._subreaper:  # prctl worked: helpers were measured
        assert result["helper_cpu_s"] >= 0 and 0 < result["helper_maxrss_kib"] < 64 * 1024


@pytest.mark.parametrize("buffering", ["line", "unbuffered", "default", "cstdio"])
@pytest.mark.parametrize("size", [120, 8192])
def test_skyrl_fdlog_keeps_every_line_whole_under_load(buffering, size, tmp_path):
    """4 writers at full speed, each way of writing, short and long lines: 0 torn, 0 lost."""
    lines = 20000 if size < 1024 else 4000
    result = harness.run_case(
        "fdlog", 4, size=size, lines=lines, max_seconds=5, buffering=buffering, workdir=tmp_path
    )
    check = result["check"]
    assert (check["torn"], check["missing"], check["duplicated"], check["reordered"]) == (0, 0, 0, 0), check
    assert check["notes"] == 0, check["examples"]


def test_one_helper_serves_every_child_of_a_redirect(tmp_path):
    """helper_count.py's "one helper" case: 8 children of one redirect() at full speed
    through its sockets, one helper for all, 0 torn or lost."""
    result = harness.run_case(harness.ONE_HELPER, 8, size=120, lines=16000, max_seconds=5, workdir=tmp_path)
    check = result["check"]
    assert (check["whole"], check["torn"], check["missing"]) == (16000, 0, 0), check
    if harness._subreaper:
        assert result["helpers"] == 1


def test_latency_probe_sees_every_probe(tmp_path):
    """The latency harness finds each timestamped probe line in the file."""
    result = harness.run_latency("fdlog", load=False, probes=20, interval=0.002, workdir=tmp_path)
    assert result["received"] == 20 and 0 < result["p50_us"] < 1e6


def test_runner_quick_mode_writes_the_report(tmp_path):
    """run.py --quick produces benchmarks.md (with the goals and targets sections), the PNG and
    the JSON."""
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--quick",
            "--sections",
            "throughput,latency",
            "--methods",
            "fdlog,dup2,filehandler",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        check=True,
        timeout=300,
    )
    text = (out / "benchmarks.md").read_text()
    assert "## Issue 16's goals: met or missed" in text and "**Command:**" in text
    assert "## Against the earlier targets" in text
    assert (out / "benchmarks.png").stat().st_size > 10_000
    saved = json.loads((out / "benchmarks.json").read_text())
    assert not [r for r in saved["results"] if "error" in r]
