"""Helpers of the reliability tests: processes, memory, small filesystems, damage counts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from conftest import pid_alive
from records import lines_by_writer, parse
from stress_check import LINE

TESTS = Path(__file__).resolve().parent
LONG = os.environ.get("SKYRL_FDLOG_LONG") == "1"


def vm_rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_gone(pids, timeout: float) -> float:
    """Wait until none of `pids` runs; return the seconds it took (fail after timeout)."""
    start = time.monotonic()
    pids = list(pids)
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still running after {timeout}s: {[pid for pid in pids if pid_alive(pid)]}")
        time.sleep(0.05)
    return time.monotonic() - start


def helpers_of(log: Path) -> list[int]:
    """Pids of skyrl-fdlog-helper processes writing `log` (their argv names the path)."""
    wanted = f"path={log}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"skyrl-fdlog-helper") and wanted in argv:
            found.append(int(entry.name))
    return found


@contextmanager
def tmpfs(mount_point: Path, size: str = "1m"):
    """A tmpfs of `size` mounted at mount_point for the duration (root only)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros to `path` until the filesystem is full; return the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 4096
        while True:
            try:
                written += os.write(fd, block)
            except OSError:
                break
        # The last partial page, byte by byte, so not even a short write fits.
        while True:
            try:
                if os.write(fd, b"\0") == 0:
                    break
                written += 1
            except OSError:
                break
    finally:
        os.close(fd)
    return written


def damage(data: bytes, writers: int, count: int) -> dict:
    """What became of writer_program.py's lines in `data` (a prefixed log).

    expected: lines written (writers actors and as many children, 3 methods, `count` each);
    intact: distinct lines that arrived whole with a good checksum; lost = expected - intact;
    torn: records that do not parse plus rejoined lines that fail the line format or checksum;
    duplicated: intact lines seen more than once.
    """
    records, bad = parse(data)
    torn = len(bad)
    seen: Counter = Counter()
    for writer_lines in lines_by_writer(records).values():
        for text, mark in writer_lines:
            match = LINE.match(text)
            if mark != ":" or match is None or int(match.group(6), 16) != zlib.crc32(match.group(7)):
                torn += 1
                continue
            role, index, _pid, method, seq = match.groups()[:5]
            seen[(role, int(index), method, int(seq))] += 1
    expected = writers * 2 * 3 * count
    intact = sum(1 for key in seen if key[1] < writers and key[3] < count)
    return {
        "expected": expected,
        "intact": intact,
        "lost": expected - intact,
        "torn": torn,
        "duplicated": sum(n - 1 for n in seen.values() if n > 1),
    }


def run_fs_writers(logs: list[Path], count: int, lock: str, tmp: Path, timeout: float = 600) -> dict:
    """Start one writer_program actor (plus its child) per entry of `logs`, all at once, with
    redirect(lock=lock); wait for the writers and then for every helper to finish writing.

    Returns helper pids, whether each locked, and the seconds from start to the last helper's
    exit (the time until every line is in the file)."""
    report = tmp / f"helpers-{lock}.txt"
    report.unlink(missing_ok=True)
    env = {**os.environ, "FDLOG_TEST_LOCK": lock, "FDLOG_TEST_HELPERS": str(report), "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "_fs_writer.py"),
                str(log),
                str(index),
                str(count),
                str(1000 + index),
            ],
            env=env,
        )
        for index, log in enumerate(logs)
    ]
    for writer in writers:
        assert writer.wait(timeout=timeout) == 0, f"writer exited with {writer.returncode}"
    helpers = [tuple(map(int, line.split())) for line in report.read_text().splitlines()]
    assert len(helpers) == len(logs), helpers
    wait_gone([pid for pid, _ in helpers], timeout=timeout)
    return {
        "seconds": time.monotonic() - start,
        "helpers": [pid for pid, _ in helpers],
        "locked": [bool(locked) for _, locked in helpers],
    }


# Actors: child processes that redirect, write, time their writes and report through files.

PRELUDE = '''
import json, os, sys, time, traceback
import skyrl_fdlog

def _record_error(kind, value, tb):
    # fd 2 is the log once redirected: tracebacks go to a file the test reads.
    with open(os.environ["FDLOG_TEST_ERRORS"], "a") as f:
        f.write("".join(traceback.format_exception(kind, value, tb)))
    sys.__excepthook__(kind, value, tb)

sys.excepthook = _record_error

def wait_file(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"actor: timed out waiting for {path}")
        time.sleep(0.01)

def report(path, **values):
    with open(path + ".tmp", "w") as f:
        json.dump(values, f)
    os.replace(path + ".tmp", path)

def wait_in_log(path, needle, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                if needle in f.read():
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"actor: {needle!r} never reached {path}")
        time.sleep(0.02)

def lines(prefix, count, width=0, per_second=0.0, progress=None):
    """print() count numbered lines; return (worst single print, total) in seconds."""
    worst, start = 0.0, time.monotonic()
    for i in range(count):
        t = time.monotonic()
        print(f"{prefix} {i} " + "x" * width if width else f"{prefix} {i}")
        worst = max(worst, time.monotonic() - t)
        if progress is not None and i % 500 == 0:
            os.pwrite(progress, f"{i:>12}".encode(), 0)
        if per_second:
            time.sleep(max(0.0, start + (i + 1) / per_second - time.monotonic()))
    return worst, time.monotonic() - start
'''


def start_actor(code: str, tmp_path: Path) -> subprocess.Popen:
    """Run PRELUDE + code in a fresh interpreter; its own stdout/stderr go to files."""
    out = open(tmp_path / "actor.stdout", "wb")
    err = open(tmp_path / "actor.stderr", "wb")
    env = {**os.environ, "FDLOG_TEST_ERRORS": str(tmp_path / "actor.errors")}
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)], stdout=out, stderr=err, env=env
    )


def actor_errors(tmp_path: Path) -> str:
    path = tmp_path / "actor.errors"
    stderr = (tmp_path / "actor.stderr").read_bytes()[-2000:].decode(errors="replace")
    return (path.read_text() if path.exists() else "") + stderr


def finish(actor: subprocess.Popen, tmp_path: Path, timeout: float = 120) -> None:
    try:
        code = actor.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        actor.kill()
        actor.wait()
        raise AssertionError(f"actor did not finish in {timeout}s: {actor_errors(tmp_path)}") from None
    assert code == 0, f"actor exited {code}: {actor_errors(tmp_path)}"


def wait_report(path: Path, actor: subprocess.Popen, timeout: float, what: str) -> dict:
    """The actor's JSON report at `path`, or fail after timeout saying the actor was stuck."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if actor.poll() is not None:
            raise AssertionError(
                f"actor exited {actor.returncode} before {what}: {actor_errors(path.parent)}"
            )
        if time.monotonic() > deadline:
            progress = path.with_suffix(".progress")
            done = progress.read_text().strip() if progress.exists() else "?"
            raise AssertionError(
                f"actor blocked: {what} not done after {timeout}s (last progress mark: line {done})"
            )
        time.sleep(0.02)
    return json.loads(path.read_text())


def actor_around_a_fault(
    tmp_path: Path, log: Path, first: int, later: str, redirect_args: str = "", setup: str = ""
) -> subprocess.Popen:
    """Start an actor that runs `setup`, redirects to `log`, prints "a 0".."a first-1", then
    waits for the test's fault (mark it done with fault_done) and runs `later` before
    restore().  Returns once the first lines are in the log."""
    ready, fault = tmp_path / "ready", tmp_path / "fault"
    actor = start_actor(
        f"""
        {setup}
        skyrl_fdlog.redirect({str(log)!r}{redirect_args})
        lines("a", {first})
        wait_in_log({str(log)!r}, b"a {first - 1}\\n")
        report({str(ready)!r})
        wait_file({str(fault)!r})
        {later}
        skyrl_fdlog.restore()
    """,
        tmp_path,
    )
    wait_report(ready, actor, 30, "the first lines")
    return actor


def fault_done(tmp_path: Path) -> None:
    (tmp_path / "fault").touch()


def numbered(records, prefix: bytes, width: int = 0) -> list[int]:
    """Sequence numbers of intact 'out' lines "PREFIX N" (+ " " and `width` x's), in file order."""
    pattern = re.compile(re.escape(prefix) + rb" (\d+)" + (b" x{%d}" % width if width else b""))
    found = []
    for record in records:
        if record.stream == "out" and record.mark == ":":
            match = pattern.fullmatch(record.payload)
            if match:
                found.append(int(match.group(1)))
    return found


def cut_short(records, prefix: bytes, width: int) -> list[bytes]:
    """'out' lines that start like "PREFIX N" but are not intact: records cut by the fault."""
    intact = re.compile(re.escape(prefix) + rb" \d+ x{%d}" % width)
    return [
        r.payload
        for r in records
        if r.stream == "out" and r.payload.startswith(prefix) and not intact.fullmatch(r.payload)
    ]


def unique_log(directory: Path, tmp_path: Path) -> Path:
    """A log name on a shared volume that no earlier run used."""
    return directory / f"{tmp_path.name}-{os.getpid()}-{time.time_ns()}.log"


def dropped_counts(records) -> list[int]:
    """The counts of every `dropped` record skyrl_fdlog wrote."""
    return [
        int(m.group(1))
        for r in records
        if r.stream == "fdlog"
        for m in [re.search(rb"dropped (\d+)", r.payload)]
        if m
    ]
