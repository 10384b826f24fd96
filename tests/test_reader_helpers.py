"""Not tests: helpers shared by test_reader*.py and test_cli*.py.

``line_records`` is a test-only writer that follows docs/format.md to the letter, so the
reader is checked against the specification and not only against the C writer; the CLI
helpers run ``python -m skyrl_fdlog`` in a real child process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAYLOAD_MAX = 3840  # the largest payload of one record (docs/format.md, PIPE_BUF)
T0 = 1795747626000  # 2026-11-27T02:47:06.000Z in epoch milliseconds


def ts_text(time_ms: int) -> str:
    """A record timestamp, ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    when = dt.datetime.fromtimestamp(time_ms / 1000, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def record(
    payload: bytes,
    *,
    time_ms: int = T0,
    node: str = "node-1",
    name: str = "Actor",
    pid: int = 100,
    stream: str = "out",
    mark: str = ":",
) -> bytes:
    """One record, ``\\n`` included."""
    prefix = f"{ts_text(time_ms)} {node} {name}[{pid}] {stream}{mark} ".encode()
    return prefix + payload + b"\n"


def line_records(
    payload: bytes, *, split: int = PAYLOAD_MAX, end: str = ":", **writer: object
) -> list[bytes]:
    """The records a writer emits for one line: ``+`` fragments of ``split`` bytes, then
    the last piece marked ``end`` (an empty line is one empty ``:`` record)."""
    pieces = [payload[i : i + split] for i in range(0, len(payload), split)] or [b""]
    return (
        [record(piece, mark="+", **writer) for piece in pieces[:-1]]  # type: ignore[arg-type]
        + [record(pieces[-1], mark=end, **writer)]
    )  # type: ignore[arg-type]


def pattern(length: int, seed: int = 0, avoid: bytes = b"\n") -> bytes:
    """``length`` bytes that differ with the seed and along the line, using every byte
    value but those in ``avoid`` (so invalid UTF-8 and control bytes occur)."""
    alphabet = bytes(b for b in range(256) if b not in avoid)
    block = bytes(alphabet[(seed + i) % len(alphabet)] for i in range(4096))
    return (block * (length // 4096 + 1))[:length]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI child: the source tree first on the path (but not under
    scripts/test_wheel.sh, which tests the installed wheel), no colour unless asked (so a
    developer's NO_COLOR or FORCE settings do not leak in)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if env.get("SKYRL_FDLOG_EXPECT_INSTALLED") != "1":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(
    *args: object, input: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m skyrl_fdlog ARGS`` to completion; output captured as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "skyrl_fdlog", *map(str, args)],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env or cli_env(),
    )


def cli_popen(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m skyrl_fdlog ARGS`` with piped, unbuffered-by-us stdout/stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "skyrl_fdlog", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or cli_env(),
    )


class Reader:
    """Collects a follower child's stdout without blocking the test."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.data = b""
        os.set_blocking(child.stdout.fileno(), False)

    def lines_until(self, predicate, timeout: float = 10.0) -> list[bytes]:
        """Read until predicate(lines) holds; fail with what was read after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BlockingIOError):  # nothing new yet
                self.data += os.read(self.child.stdout.fileno(), 65536)
            lines = self.data.splitlines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; output so far: {self.data!r}")
            time.sleep(0.05)


@pytest.fixture
def follow():
    """Start `skyrl-fdlog tail -f ...` children; kill them at the end of the test."""
    children = []

    def start(*args: object) -> Reader:
        child = subprocess.Popen(
            [sys.executable, "-m", "skyrl_fdlog", "tail", "-f", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        children.append(child)
        return Reader(child)

    yield start
    for child in children:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
