"""The C core builds warning-free and runs clean under AddressSanitizer and UBSan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from records import lines_by_writer, parse
from stress_check import check_log

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
sys.path.insert(0, str(ROOT))
from skyrl_fdlog._build import EXTENSION_SOURCES, HELPER_SOURCES, INCLUDE_DIRS  # noqa: E402

STRICT = [
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-Werror",
    *(f"-I{ROOT / directory}" for directory in INCLUDE_DIRS),
]
SANITIZE = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
]


def compile_c(sources: list[Path], output: Path, *flags: str) -> None:
    cc = os.environ.get("CC", "cc")
    result = subprocess.run(
        [cc, *STRICT, *flags, *map(str, sources), "-o", str(output)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("optimisation", ["-O0", "-O2"])
def test_every_c_file_compiles_with_all_warnings_as_errors(tmp_path, optimisation):
    """-Wall -Wextra -Werror at -O0 and -O2 (some warnings appear only when optimising), the
    tests' C included."""
    for source in sorted([*CSRC.rglob("*.c"), *(ROOT / "tests" / "c").glob("*.c")]):
        compile_c([source], tmp_path / (source.stem + ".o"), "-c", optimisation)


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory) -> dict:
    """The helper and a C driver of the extension's code, built with ASan and UBSan."""
    directory = tmp_path_factory.mktemp("asan")
    helper = directory / "skyrl-fdlog-helper"
    compile_c([CSRC / name for name in HELPER_SOURCES], helper, *SANITIZE, "-pthread")
    driver = directory / "capture_smoke"
    compile_c(
        [
            ROOT / "tests" / "c" / "capture_smoke.c",
            ROOT / "tests" / "c" / "assembler_entry.c",
            *(CSRC / name for name in EXTENSION_SOURCES),
        ],
        driver,
        *SANITIZE,
    )
    reports = directory / "reports"
    reports.mkdir()
    env = {
        **os.environ,
        "ASAN_OPTIONS": f"log_path={reports}/asan:detect_leaks=1:abort_on_error=0",
        "UBSAN_OPTIONS": f"log_path={reports}/ubsan:print_stacktrace=1:halt_on_error=1",
    }
    return {"helper": helper, "driver": driver, "reports": reports, "env": env}


def assert_no_reports(reports: Path) -> None:
    found = {p.name: p.read_text()[:2000] for p in reports.iterdir()}
    assert found == {}, found


def test_c_core_end_to_end_under_sanitizers(sanitized, tmp_path):
    """Opening, capture, a forked writer, release and the assembler entry point, all in C with
    ASan/UBSan (leak checking on), with a 100 kB line, NULs, a carriage-return storm and invalid
    UTF-8: no report, and both writers' lines are whole in the log."""
    log = tmp_path / "smoke.log"
    result = subprocess.run(
        [str(sanitized["driver"]), str(sanitized["helper"]), str(log)],
        env=sanitized["env"],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result
    assert_no_reports(sanitized["reports"])
    records, bad = parse(log.read_bytes())
    assert bad == []
    lines = lines_by_writer(records)
    assert len({pid for pid, _ in lines}) == 2
    for (_pid, stream), writer_lines in lines.items():
        if stream == "out":
            texts = [text for text, _ in writer_lines]
            assert texts == [b"x" * 500 + b"\0" + b"x" * 99499, b"stdio line 42"]
        else:
            assert writer_lines == [(b"bar \xff\xfe", "~"), (b"bar \xff\xfe", ":")]


def test_python_stress_through_the_sanitized_helper(sanitized, tmp_path):
    """The stress writers of test_core_stress, through the ASan/UBSan helper: every line whole
    and no sanitizer report."""
    writer = ROOT / "tests" / "writer_program.py"
    log = tmp_path / "stress.log"
    env = {**sanitized["env"], "SKYRL_FDLOG_HELPER": str(sanitized["helper"]), "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen([sys.executable, str(writer), str(log), str(i), "150", str(i)], env=env)
        for i in range(4)
    ]
    assert all(proc.wait(timeout=300) == 0 for proc in procs)
    import time

    deadline = time.monotonic() + 30
    while check_log(log.read_bytes(), 4, 150) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert check_log(log.read_bytes(), 4, 150) == []
    assert_no_reports(sanitized["reports"])


def test_sanitizer_reports_would_be_seen(sanitized, tmp_path):
    """The report directory really receives sanitizer output: a deliberate use after free in a
    tiny program built the same way is reported there."""
    source = tmp_path / "overflow.c"
    source.write_text(
        "#include <stdlib.h>\nint main(int argc, char **argv){(void)argv;"
        " char *p = malloc(4); p[0] = 1; free(p); return p[argc - 1];}\n"
    )
    program = tmp_path / "overflow"
    compile_c([source], program, *SANITIZE, "-Wno-use-after-free")
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {
        **os.environ,
        "ASAN_OPTIONS": f"log_path={reports}/asan",
        "UBSAN_OPTIONS": f"log_path={reports}/ubsan:halt_on_error=1",
    }
    subprocess.run([str(program)], env=env, capture_output=True)
    assert any("heap-use-after-free" in p.read_text() for p in reports.iterdir())
