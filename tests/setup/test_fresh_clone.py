"""README's set-up on a machine that is not ours: `make venv` in a fresh clone, with pip's machine
configuration removed and TORCH_INDEX on a local PEP 503 index built around the torch CPU wheel.

Needs no access to PyTorch's index (the local index stands in for it); the other packages come
from PyPI, or from pip's cache when an earlier run filled it. Builds a whole second venv (a few
minutes), so `make test` leaves it out and `make test-setup` (.ci/run) runs it.
"""

from __future__ import annotations

import subprocess

from _pip_setup import ROOT, make_index, real_torch_wheel, unconfigured_pip_env


def test_make_venv_in_a_fresh_clone_takes_torch_from_torch_index(tmp_path):
    index = make_index(tmp_path / "index", real_torch_wheel(tmp_path / "found"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    wheel_dir = tmp_path / "wheels"  # empty: nothing at hand, so the index must be used
    result = subprocess.run(
        ["make", "venv", f"TORCH_INDEX={index}", f"TORCH_WHEELS={wheel_dir}"],
        cwd=clone,
        env=unconfigured_pip_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert f"downloading it from TORCH_INDEX={index}" in log, log[-5000:]
    imported = subprocess.run(
        [
            str(clone / ".venv" / "bin" / "python"),
            "-c",
            "import vllm, torch, ray, skyrl_fdlog; print(torch.__version__, skyrl_fdlog.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    version, location = imported.stdout.split()
    assert version == "2.13.0+cpu"
    assert location.startswith(str(clone))
