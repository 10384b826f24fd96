"""The installed package is complete: extension, helper program, typing marker, metadata and
console script. scripts/test_wheel.sh runs this beside the core tests against the wheel (and
the sdist) installed in fresh venvs, with SKYRL_FDLOG_EXPECT_INSTALLED=1; under `make test` it
checks the editable install the same way, except where the test says it needs a real install."""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import skyrl_fdlog
from skyrl_fdlog import _fdlog

PACKAGE = Path(skyrl_fdlog.__file__).resolve().parent
EXPECT_INSTALLED = os.environ.get("SKYRL_FDLOG_EXPECT_INSTALLED") == "1"


@pytest.mark.skipif(not EXPECT_INSTALLED, reason="only under scripts/test_wheel.sh")
def test_package_comes_from_site_packages_not_the_source_tree():
    """Under scripts/test_wheel.sh the tests exercise the installed files: skyrl_fdlog, its
    extension and its helper all lie in this interpreter's site-packages."""
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert PACKAGE == site / "skyrl_fdlog"
    assert Path(_fdlog.__file__).resolve().parent == PACKAGE
    assert not (PACKAGE.parent / "csrc").exists()


def elf_machine(path: Path) -> int:
    """e_machine of a little-endian ELF file (62 x86_64, 183 aarch64): bytes 18 and 19."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[5] == 1, f"{path} is not a little-endian ELF file"
    return int.from_bytes(header[18:20], "little")


def test_extension_and_helper_are_built_for_this_interpreters_machine():
    """Both compiled files match the interpreter's own ELF machine. Under QEMU this matters: a
    wheel for aarch64 that carried an x86_64 helper would still run on an x86_64 host."""
    interpreter = elf_machine(Path(sys.executable).resolve())
    assert elf_machine(Path(_fdlog.__file__)) == interpreter
    assert elf_machine(PACKAGE / "skyrl-fdlog-helper") == interpreter


def test_tests_run_on_the_architecture_under_test():
    """scripts/test_wheel.sh names the wheel's architecture in SKYRL_FDLOG_EXPECT_MACHINE
    (aarch64 under QEMU): the interpreter running these tests is that machine's, not the host's."""
    assert platform.machine() == os.environ.get("SKYRL_FDLOG_EXPECT_MACHINE", platform.machine())


def test_extension_is_the_abi3_build():
    """The cffi extension is the limited-API build that one wheel serves to every CPython >= 3.9."""
    assert Path(_fdlog.__file__).name == "_fdlog.abi3.so"


def test_extension_carries_no_test_entry_points():
    """Test-only C (tests/c/) is built by the tests themselves, never into the shipped extension:
    the extension has no fdl_test_ function, neither in its cffi lib nor anywhere in the file."""
    assert [name for name in dir(_fdlog.lib) if name.startswith("fdl_test_")] == []
    assert b"fdl_test_" not in Path(_fdlog.__file__).read_bytes()


def test_helper_program_is_installed_beside_the_package_and_executable():
    """redirect() starts skyrl-fdlog-helper from the package directory; installing keeps it
    executable (a wheel that lost the mode bit would make every redirect() fall back)."""
    helper = PACKAGE / "skyrl-fdlog-helper"
    assert helper.is_file()
    assert helper.stat().st_mode & stat.S_IXUSR


def test_redirect_round_trip_through_the_installed_helper(tmp_path):
    """A child redirects to a log, prints, restores: the line arrives as a whole record written
    by the installed helper (no SKYRL_FDLOG_HELPER override)."""
    log = tmp_path / "infra.log"
    env = {key: value for key, value in os.environ.items() if key != "SKYRL_FDLOG_HELPER"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, skyrl_fdlog\n"
            f"r = skyrl_fdlog.redirect({str(log)!r}, name='wheeltest')\n"
            "print('hello from the installed wheel')\n"
            "skyrl_fdlog.restore()\n"
            "print(r.helper_pid)\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 0
    records = [line for line in log.read_text().splitlines() if "hello from the installed wheel" in line]
    assert len(records) == 1 and " wheeltest[" in records[0] and " out: " in records[0], records


def test_version_has_one_source():
    """The distribution's version is skyrl_fdlog/_version.py's __version__."""
    assert metadata.version("skyrl-fdlog") == skyrl_fdlog.__version__


def test_metadata_names_license_python_and_dependency():
    """License (SPDX expression), supported Pythons and the runtime dependency are in the metadata."""
    meta = metadata.metadata("skyrl-fdlog")
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.9"
    assert any(req.startswith("cffi") for req in metadata.requires("skyrl-fdlog") or [])
    assert "Typing :: Typed" in meta.get_all("Classifier")


def test_typing_marker_is_installed():
    """py.typed ships, so type checkers read the package's annotations."""
    assert (PACKAGE / "py.typed").is_file()


def test_console_script_is_declared_and_runs():
    """`skyrl-fdlog` points at skyrl_fdlog.cli:main, and the script installed beside this
    interpreter answers --help."""
    scripts = {
        ep.name: ep.value
        for ep in metadata.distribution("skyrl-fdlog").entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {"skyrl-fdlog": "skyrl_fdlog.cli:main"}
    script = Path(sys.executable).parent / "skyrl-fdlog"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (not a venv install)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "skyrl-fdlog" in result.stdout


def test_python_dash_m_runs_the_cli():
    """`python -m skyrl_fdlog --help` is the console script without the script file."""
    result = subprocess.run(
        [sys.executable, "-m", "skyrl_fdlog", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
