"""pytest-benchmark suites for the key comparisons (120 B lines, drain included).

    .venv/bin/python -m pytest benchmarks/test_bench_compare.py --benchmark-only \
        --benchmark-columns=median,min,max --benchmark-sort=name

Each round starts the writers untimed (interpreter start-up, imports, redirect()), then the
timed part runs from the "go" signal until every writer has drained; the lines/s each
round measured inside the writers are in extra_info.  Save with --benchmark-autosave and
compare runs with `pytest-benchmark compare`.  Every skyrl_fdlog round must keep all lines.
"""

from __future__ import annotations

import statistics

import harness
import pytest

LINES = 100_000
ROUNDS = 3


def run_rounds(benchmark, tmp_path, method, writers, size=120, lines=LINES, **kwargs):
    cases = []

    def setup():
        case = harness.Case(
            method, writers, size=size, lines=lines, max_seconds=10, workdir=tmp_path, **kwargs
        ).prepare()
        cases.append(case)
        return (case,), {}

    benchmark.pedantic(lambda case: case.go(), setup=setup, rounds=ROUNDS, iterations=1)
    results = [case.finish() for case in cases]
    rates = [r["lines_per_s"] for r in results]
    benchmark.extra_info.update(
        {
            "lines_per_s_median": statistics.median(rates),
            "lines_per_s": rates,
            "writers": writers,
            "size": size,
        }
    )
    for r in results:
        if "check" in r and method == "fdlog":
            assert r["check"]["torn"] == 0 and r["check"]["missing"] == 0, r["check"]
    return results


@pytest.mark.parametrize("method", harness.METHODS)
@pytest.mark.parametrize("writers", [1, 4])
def test_throughput_120B(benchmark, tmp_path, method, writers):
    """Lines/s of each method, 1 and 4 writer processes, into one file."""
    benchmark.group = f"120 B lines, {writers} writer{'s' if writers > 1 else ''}"
    run_rounds(benchmark, tmp_path, method, writers)


@pytest.mark.parametrize("gather_us", [0, 100, 300, 1000])
def test_fdlog_gather_window(benchmark, tmp_path, gather_us):
    """skyrl_fdlog's throughput at each SKYRL_FDLOG_GATHER_US, 4 writers."""
    benchmark.group = "skyrl_fdlog gather window, 4 writers"
    run_rounds(benchmark, tmp_path, "fdlog", 4, gather_us=gather_us)


@pytest.mark.parametrize("method", ["fdlog", "dup2", "filehandler"])
def test_throughput_8KiB(benchmark, tmp_path, method):
    """Long lines (split into records by skyrl_fdlog), 4 writers."""
    benchmark.group = "8 KiB lines, 4 writers"
    run_rounds(benchmark, tmp_path, method, 4, size=8192, lines=10_000)
