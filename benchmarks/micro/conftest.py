"""Fixtures of the micro-benchmarks: the C driver library, the helper program, the machine.

Run through `make bench-micro` (see micro_bench.py); pytest finds these files only there,
since their names do not match the default test_*.py.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import runpy
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BASELINE = HERE / "baseline"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average {load}"
    )


def pytest_report_header() -> list[str]:
    """Name the machine at the top of the run, and the machine the baseline came from."""
    lines = [f"machine: {machine_line()}"]
    saved = sorted(BASELINE.glob("*/*.json"))
    for path in saved[-1:]:
        info = json.loads(path.read_text()).get("machine_info", {})
        brand = info.get("cpu", {}).get("brand_raw") or info.get("processor") or "?"
        count = info.get("cpu", {}).get("count", "?")
        lines.append(
            f"baseline: {path.relative_to(REPO)} ({brand}, {count} CPUs, "
            f"Python {info.get('python_version', '?')})"
        )
    if not saved:
        lines.append(f"baseline: none saved in {BASELINE.relative_to(REPO)} (make bench-micro MICRO_SAVE=1)")
    return lines


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved with every run, so a comparison can tell which machine the baseline is from."""
    machine_info["cpu_model"] = cpu_model()
    machine_info["nproc"] = os.cpu_count()


def build_flags() -> tuple[list[str], list[str]]:
    """The include directories and compile flags of the real build (skyrl_fdlog/_build.py),
    which also regenerates csrc/shared/levels.h."""
    cwd = os.getcwd()
    os.chdir(REPO)  # _build.py names csrc/ relative to the repository
    try:
        build = runpy.run_path(str(REPO / "skyrl_fdlog" / "_build.py"))
    finally:
        os.chdir(cwd)
    return [str(REPO / d) for d in build["INCLUDE_DIRS"]], list(build["COMPILE_ARGS"])


@pytest.fixture(scope="session")
def micro_lib() -> Iterator[ctypes.CDLL]:
    """driver.c and the helper's shared C (assembler, record format, levels), as one library."""
    includes, flags = build_flags()
    sources = [HERE / "driver.c"] + [
        REPO / "csrc" / "shared" / n for n in ("assemble.c", "record.c", "levels.c")
    ]
    digest = hashlib.sha256(b"".join(s.read_bytes() for s in sources)).hexdigest()[:12]
    with tempfile.TemporaryDirectory(prefix="skyrl-fdlog-micro-") as tmp:
        target = Path(tmp) / f"libmicro-{digest}.so"
        command = [
            os.environ.get("CC", "cc"),
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wextra",
            "-Werror",
            *flags,
            *[f"-I{d}" for d in includes],
            "-o",
            str(target),
            *map(str, sources),
        ]
        subprocess.run(command, check=True)
        lib = ctypes.CDLL(str(target))
        lib.micro_assemble.restype = ctypes.c_uint64
        lib.micro_assemble.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.micro_format.restype = ctypes.c_uint64
        lib.micro_format.argtypes = [ctypes.c_int, ctypes.c_size_t]
        lib.micro_levels.restype = ctypes.c_long
        lib.micro_levels.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        yield lib


@pytest.fixture(scope="session")
def helper_program() -> str:
    """The helper of the checkout under test (build_ext --inplace, or the installed package)."""
    from skyrl_fdlog._redirect import helper_executable

    return helper_executable()


def margin_percent() -> float:
    """The change that counts (MICRO_MARGIN, percent of the baseline's fastest round; 20 by
    default).  The fastest round, not the median: it is the one least disturbed by other
    work on a shared machine (on this 2-core machine at load 3 the median of the same code
    moved by up to +170% between two runs, the minimum by far less)."""
    return float(os.environ.get("MICRO_MARGIN", "20"))


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Each benchmark's fastest round against the baseline's, flagged beyond the margin either way
    (pytest-benchmark's --benchmark-compare-fail then fails the run on the slower ones)."""
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    margin = margin_percent()
    write = terminalreporter.write_line
    terminalreporter.section(f"against the baseline (margin {margin:g}% of the fastest round)")
    write(f"this machine: {machine_line()}")
    if terminalreporter.config.getoption("benchmark_save"):
        write("saved as the new baseline: nothing compared")
        return
    if not session.compared_mapping:
        write(
            "no baseline for this machine and Python in benchmarks/micro/baseline: nothing "
            "compared (save one with: make bench-micro MICRO_SAVE=1)"
        )
        return
    for path, mapping in session.compared_mapping.items():
        stored = Path(getattr(session.storage, "path", BASELINE)) / path
        info = json.loads(stored.read_text()).get("machine_info", {})
        write(f"baseline: {Path(path).name}, {info.get('cpu_model', '?')}, {info.get('nproc', '?')} CPUs")
        for bench in session.benchmarks:
            old = mapping.get(bench.fullname)
            if old is None or not bench.stats:
                write(f"  {bench.name}: not in the baseline")
                continue
            now, before = bench.stats.min, old["stats"]["min"]
            change = (now - before) / before * 100
            lines = bench.extra_info.get("lines_per_call", 1)
            verdict = (
                "SLOWER beyond the margin"
                if change > margin
                else "faster beyond the margin"
                if change < -margin
                else "within the margin"
            )
            cpu = ""
            if "helper_cpu_ns_per_line_min" in bench.extra_info:
                cpu = (
                    f"; helper CPU {old.get('extra_info', {}).get('helper_cpu_ns_per_line_min', 0):,.0f}"
                    f" -> {bench.extra_info['helper_cpu_ns_per_line_min']:,.0f} ns per line"
                )
            write(
                f"  {bench.name}: fastest {before / lines * 1e9:,.0f} -> {now / lines * 1e9:,.0f} "
                f"ns per line ({change:+.0f}%): {verdict}{cpu}"
            )
