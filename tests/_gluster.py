"""The GlusterFS test bed (tests/glusterfs_bed.sh) as a pytest fixture.

`gluster_bed` brings the bed up once per session (reusing one a developer already started)
and, if it started it, takes it down at the end.  It skips, with a loud reason, only when
this machine cannot mount FUSE at all (no /dev/fuse, not root); any other failure to bring
the bed up fails the tests that need it.  SKYRL_FDLOG_REQUIRE_GLUSTER=1 turns even that skip
into a failure (for CI on machines that are known to have FUSE).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "glusterfs_bed.sh"
CANNOT_RUN = 77


@dataclass
class GlusterBed:
    """A running bed: one volume, one brick, two FUSE mounts of it (two simulated machines)."""

    env: dict

    @property
    def mounts(self) -> tuple[Path, Path]:
        return Path(self.env["MOUNT1"]), Path(self.env["MOUNT2"])

    @property
    def brick(self) -> Path:
        return Path(self.env["BRICK"])

    def client_pid(self, mount_index: int) -> int:
        """The glusterfs FUSE client process behind MOUNT1 (index 0) or MOUNT2 (index 1)."""
        return int(self.env[f"CLIENT{mount_index + 1}_PID"])

    def run(self, command: str) -> dict:
        """Run the bed script (up/down/status); return its KEY=VALUE output."""
        result = subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(
                f"glusterfs_bed.sh {command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        self.env = parse_env(result.stdout) or self.env
        return self.env

    @contextmanager
    def client_stopped(self, mount_index: int):
        """SIGSTOP the FUSE daemon of one mount: every file operation on that mount hangs in the
        kernel until the daemon gets SIGCONT (which this always sends on the way out)."""
        pid = self.client_pid(mount_index)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)


def parse_env(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def fuse_unavailable_reason() -> str | None:
    """Why this machine cannot mount a FUSE filesystem at all, or None when it can."""
    if os.geteuid() != 0:
        return f"not root (uid {os.geteuid()}): mounting FUSE and running glusterd need root"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine (kernel or container without FUSE)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as error:
        return f"cannot open /dev/fuse: {error}"
    return None


_state = {"bed": None, "started_here": False, "users": 0}


def acquire() -> GlusterBed:
    reason = fuse_unavailable_reason()
    if reason is not None:
        message = f"GLUSTERFS TEST BED CANNOT RUN ON THIS MACHINE: {reason}"
        if os.environ.get("SKYRL_FDLOG_REQUIRE_GLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    if _state["bed"] is None:
        already = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
        started = time.monotonic()
        result = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
        if result.returncode == CANNOT_RUN:
            message = f"GLUSTERFS TEST BED CANNOT RUN ON THIS MACHINE: {result.stderr.strip()}"
            if os.environ.get("SKYRL_FDLOG_REQUIRE_GLUSTER") == "1":
                pytest.fail(message)
            pytest.skip(message)
        if result.returncode != 0:
            pytest.fail(
                f"glusterfs_bed.sh up failed ({result.returncode}) although FUSE is "
                f"available:\n{result.stdout}\n{result.stderr}"
            )
        bed = GlusterBed(parse_env(result.stdout))
        bed.env["UP_SECONDS"] = f"{time.monotonic() - started:.1f}"
        _state.update(bed=bed, started_here=already.returncode != 0)
    _state["users"] += 1
    return _state["bed"]


def release() -> None:
    _state["users"] -= 1
    if _state["users"] == 0 and _state["started_here"] and os.environ.get("SKYRL_FDLOG_KEEP_GLUSTER") != "1":
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=300)
        _state.update(bed=None, started_here=False)


@pytest.fixture(scope="session")
def gluster_bed():
    """The running GlusterFS bed (see the module docstring for when it skips)."""
    bed = acquire()
    try:
        yield bed
    finally:
        release()
