"""Shared helpers: every test that touches fds 1 and 2 runs its code in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The GlusterFS bed, a session fixture that test_shared_fs.py and test_reliability_faults.py ask
# for by name (imported into a test module, a fixture reads to linters as an unused import).
from _gluster import gluster_bed  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _assembler_entry import AssemblerEntry  # noqa: E402
from _assembler_entry import build as build_assembler_entry  # noqa: E402
from test_reader_helpers import follow  # noqa: E402, F401 (a fixture of the CLI tests)


def run_python(
    code: str, *, env: dict | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with stdout and stderr captured.  Python's default
    buffering unless `env` asks otherwise: a developer's PYTHONUNBUFFERED=1 must not hide the
    buffered path."""
    full_env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    full_env |= env or {}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"child failed ({result.returncode}):\nstdout: {result.stdout[-3000:]!r}"
            f"\nstderr: {result.stderr[-3000:]!r}"
        )
    return result


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll until predicate() is truthy; return its value or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def refusal(path: Path, call: str = "redirect") -> str:
    """Call skyrl_fdlog.<call>(path) in a child; return the FdlogError message, checking that
    it is an OSError and that fd 1 was left as it was."""
    result = run_python(
        f"""
        import os, skyrl_fdlog
        before = os.fstat(1)
        try:
            skyrl_fdlog.{call}({str(path)!r})
        except skyrl_fdlog.FdlogError as error:
            assert isinstance(error, OSError)
            after = os.fstat(1)
            assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
            print(error)
        else:
            raise SystemExit("no refusal")
    """,
        timeout=30,
    )
    return result.stdout.decode()


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the GlusterFS bed carries the `gluster` marker, whichever module it is in."""
    for item in items:
        if "gluster_bed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gluster)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "infra.log"


@pytest.fixture(scope="session")
def assembler_entry(tmp_path_factory: pytest.TempPathFactory) -> AssemblerEntry:
    """The assembler's test entry point, compiled once per session (tests/_assembler_entry.py)."""
    return build_assembler_entry(tmp_path_factory.mktemp("assembler-entry"))
