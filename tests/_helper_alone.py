"""The helper program on its own, without redirect(): the test holds the writing ends of its
channels, so it can write as any process (a child, a process in another pid namespace) and
start the helper under a wrapper (faketime) or with other limits.

    helper = HelperAlone(log, ["faketime", ...], preexec=...)
    helper.out.send(b"line\\n")      # a socket with SO_PASSCRED on its reading end
    helper.close()                    # the helper sees EOF, writes everything and exits
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(os.environ.get("SKYRL_FDLOG_HELPER") or ROOT / "skyrl_fdlog" / "skyrl-fdlog-helper")


def channel() -> tuple[socket.socket, socket.socket]:
    """(reading end with SO_PASSCRED, writing end), as fdl_channel_open makes them."""
    read, write = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    read.shutdown(socket.SHUT_WR)
    write.shutdown(socket.SHUT_RD)
    return read, write


class HelperAlone:
    def __init__(
        self,
        log: Path,
        wrapper: list[str] = (),
        settings: dict | None = None,
        env: dict | None = None,
        preexec=None,
        log_fd: int | None = None,
        launcher_exits: bool = True,
    ):
        """Start the helper on a fresh pair of channels, writing `log` (opened here unless
        log_fd is given); returns once it said READY.  launcher_exits=False: the wrapper stays
        (it is the init of a pid namespace the helper runs in); the caller ends it."""
        self.log = log
        if log_fd is None:
            log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        out_read, self.out = channel()
        err_read, self.err = channel()
        status_read, status_write = os.pipe()
        handed = [log_fd, out_read.fileno(), err_read.fileno(), status_write]
        # The helper requires every setting (csrc/shared/settings.h).
        all_settings = {
            "name": "alone",
            "node": "n",
            "path": str(log),
            "raw": 0,
            "lock": 0,
            "idle_ms": 200,
            "snapshot_ms": 5000,
            "gather_us": 0,
            "buffer_bytes": 4 << 20,
            "max_bytes": 0,
            "restarted_after": 0,
            "owner": 0,
            "surface": 0,
            **(settings or {}),
        }

        def place_fds():
            # Copies out of the way first, so that the dup2 onto 3..6 cannot overwrite a source.
            copies = [os.dup(fd) for fd in handed]
            for target, fd in enumerate(copies, start=3):
                os.dup2(fd, target)
            if preexec is not None:
                preexec()

        argv = [*wrapper, str(HELPER), *(f"{key}={value}" for key, value in all_settings.items())]
        self.launcher = subprocess.Popen(
            argv,
            preexec_fn=place_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        for fd in (out_read.fileno(), err_read.fileno(), status_write):
            os.close(fd)
        out_read.detach()
        err_read.detach()
        if log_fd >= 0:
            os.close(log_fd)
        if launcher_exits:
            self.launcher.wait(timeout=30)  # it forks the real helper and exits
        self.status = os.fdopen(status_read, "rb")
        ready = self.status.readline()
        assert ready.startswith(b"READY "), ready
        self.pid = int(ready.split()[1])

    def close(self, timeout: float = 30) -> bytes:
        """Close the writing ends; return what the helper said on its way out."""
        self.out.close()
        self.err.close()
        # Up to the EXIT line, not to EOF: a wrapper (unshare) may hold the pipe open.
        said = b""
        while not said.startswith(b"EXIT"):
            said = self.status.readline()
            if not said:
                break
        self.status.close()
        return said
