"""Pieces for the set-up tests: pip without this machine's configuration, and PEP 503 indexes.

A developer's or CI machine may configure pip with wheel folders and indexes of its own (this
project's development machine does: that is how torch's CPU build was found before
scripts/install_torch.sh existed). A user's machine has none of that, so these tests run pip with
its configuration files and PIP_* variables removed.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TORCH = ROOT / "scripts" / "install_torch.sh"
TORCH_REQUIREMENT = "torch==2.13.0+cpu"
# A port nothing listens on: an index there refuses at once, as a mirror that is down would.
UNREACHABLE_INDEX = "http://127.0.0.1:9/whl/cpu"


def unconfigured_pip_env(**extra: str) -> dict[str, str]:
    """os.environ without pip's configuration: PIP_CONFIG_FILE=/dev/null makes pip read no
    config file at all; every other PIP_* variable is dropped."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


def make_index(root: Path, *wheels: Path) -> str:
    """A PEP 503 simple index under root holding these wheels; returns its file:// URL."""
    for wheel in wheels:
        project = root / wheel.name.split("-")[0].lower().replace("_", "-")
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, project / wheel.name)
        links = "".join(
            f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
            for p in sorted(project.glob("*.whl"))
        )
        (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return root.as_uri()


def stub_torch_wheel(folder: Path) -> Path:
    """A wheel that pip takes for torch 2.13.0+cpu but holds only metadata: the selection logic
    of scripts/install_torch.sh is tested without unpacking 750 MB each time."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "torch-2.13.0+cpu-py3-none-any.whl"
    info = "torch-2.13.0+cpu.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+cpu\n")
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: skyrl-fdlog tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def fresh_venv(folder: Path) -> Path:
    """A new venv of the running Python (pip from ensurepip: no download); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    return folder / "bin" / "python"


def installed_torch_version(python: Path) -> str | None:
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def real_torch_wheel(folder: Path) -> Path:
    """The real torch CPU wheel for this Python, fetched the way pip finds it without any index
    (this machine's configured wheel folders, or the folder an earlier `make venv` downloaded
    into); fails, saying where it looked, when there is none."""
    cache = Path(os.environ.get("TORCH_WHEELS", Path.home() / ".cache" / "skyrl-fdlog" / "wheels"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--find-links",
            str(cache),
            "--dest",
            str(folder),
            TORCH_REQUIREMENT,
        ],
        capture_output=True,
        text=True,
    )
    wheels = sorted(folder.glob("torch-*.whl"))
    if result.returncode != 0 or not wheels:
        raise AssertionError(
            f"no {TORCH_REQUIREMENT} wheel for this Python in pip's configured "
            f"wheel folders or in {cache}: run `make venv` once with internet "
            f"(it keeps the wheel there).\n{result.stderr[-2000:]}"
        )
    return wheels[0]
