"""Where the C core cannot be built (macOS laptops that run SkyRL's unit tests), the package still
installs, the reader works, and the SkyRL drop-in falls back to SkyRL's plain dup2 with one warning
line. This machine is Linux, so the build switch SKYRL_FDLOG_BUILD_CORE=0 stands in for another
platform: the wheel is built without the extension and installed into a fresh venv with nothing
else (no cffi either), and used from there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def venv_without_core(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("no-core")
    source = work / "source"  # the tracked files only: no extension built in this tree
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--wheel-dir",
            str(work / "wheels"),
            str(source),
        ],
        env={**os.environ, "SKYRL_FDLOG_BUILD_CORE": "0"},
        check=True,
        capture_output=True,
    )
    (wheel,) = (work / "wheels").glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so") or n.endswith("skyrl-fdlog-helper")], names
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    python = work / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    return python


def run_isolated(python: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SKYRL_LOG_FILE")}
    return subprocess.run(
        [str(python), "-I", "-c", code], cwd=cwd, env={**clean, **env}, capture_output=True, timeout=60
    )


def test_the_dropin_falls_back_to_a_plain_dup2_with_one_warning(venv_without_core, tmp_path):
    log = tmp_path / "logs" / "infra.log"
    result = run_isolated(
        venv_without_core,
        """
import os, sys
from skyrl_fdlog.skyrl import redirect_actor_output_to_file
redirect_actor_output_to_file()
print("from print", flush=True)
os.write(2, b"from fd 2\\n")
redirect_actor_output_to_file()   # a second actor in the same process: still one warning
print("again", flush=True)
""",
        tmp_path,
        SKYRL_LOG_FILE=str(log),
        SKYRL_DUMP_INFRA_LOG_TO_STDOUT="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    warning = result.stderr.decode().splitlines()
    assert len(warning) == 1 and "compiled core is not available" in warning[0], warning
    assert str(log) in warning[0]
    assert log.read_bytes() == b"from print\nfrom fd 2\nagain\n"


def test_the_reader_works_and_redirect_says_why_it_cannot(venv_without_core, tmp_path):
    log = tmp_path / "infra.log"
    log.write_bytes(b"2026-11-27T02:47:06.123Z node-1 Engine[12] out: hello\n")
    result = run_isolated(
        venv_without_core,
        f"""
import subprocess, sys
from skyrl_fdlog import reader
print([r.payload for r in reader.iter_lines({str(log)!r})])
try:
    import skyrl_fdlog
    skyrl_fdlog.redirect({str(log)!r})
except ImportError as error:
    print("ImportError", error)
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "[b'hello']"
    assert lines[1].startswith("ImportError")
