"""Appends larger than PIPE_BUF on the filesystems where the helper makes them.

On ext2/3/4 and tmpfs the helper writes its queued batches (each at most PIPE_BUF bytes of
whole records) up to 64 KiB at a time with one writev(2) (csrc/helper/log_writer.c): Linux
holds the file's inode lock for the whole of such a write, so it lands whole against every
other appender.  POSIX does not promise it, so these tests show it on each filesystem the
helper enables: many processes appending such runs at once never tear a record, and real
helpers writing into one log on it keep every line whole.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stress_check import check_log
from test_core_stress import run_writers

# statfs f_type, as log_writer.c tests it
FILESYSTEMS = {"ext4": 0xEF53, "tmpfs": 0x01021994}
PROCESSES = 8
RUNS = 200  # per process: 1,600 concurrent appends of up to 64 KiB each
RUN_BYTES = 64 * 1024
RECORD = re.compile(rb"^(\d+) (\d+) (\d+) ([A-Z]*)$")

APPENDER = r"""
import os, random, sys
path, index, runs, run_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(index)
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
seq = 0

def batch():  # whole records, at most 4096 bytes
    global seq
    data = b""
    while True:
        size = rng.randrange(1, 1500)
        record = b"%d %d %d %s\n" % (index, seq, size, bytes([65 + seq % 26]) * size)
        if len(data) + len(record) > 4096:
            return data
        data += record
        seq += 1

follow = batch()
for _ in range(runs):  # each run: batches up to run_bytes in one writev
    batches = []
    while sum(map(len, batches)) + len(follow) <= run_bytes:
        batches.append(follow)
        follow = batch()
    assert os.writev(fd, batches) == sum(map(len, batches))
os.write(fd, follow)
print(seq)
"""


def filesystem_type(path: Path) -> int:
    """statfs(2)'s f_type of the filesystem holding path."""

    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    libc = ctypes.CDLL(None, use_errno=True)
    result = StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(result)) != 0:
        raise OSError(ctypes.get_errno(), f"statfs {path}")
    return result.f_type & 0xFFFFFFFF


@pytest.fixture(params=sorted(FILESYSTEMS))
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory on each filesystem the helper writes runs on: tmp_path for ext4, /dev/shm
    for tmpfs."""
    name: str = request.param
    place = tmp_path if name == "ext4" else Path("/dev/shm")
    if filesystem_type(place) != FILESYSTEMS[name]:
        pytest.skip(f"{place} is not on {name} on this machine")
    directory = Path(os.path.join(place, f"large-appends-{os.getpid()}-{name}"))
    directory.mkdir()
    yield directory
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


def test_concurrent_appends_of_64_kib_runs_stay_whole(directory: Path) -> None:
    """8 processes append 200 runs each, every run one writev of up to 64 KiB of records, to
    one O_APPEND file at once: every record is in the file whole, once, in each writer's
    order."""
    log = directory / "appends.log"
    log.touch()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(log), str(i), str(RUNS), str(RUN_BYTES)],
            stdout=subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    written = [int(proc.communicate(timeout=300)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    seqs: list[list[int]] = [[] for _ in range(PROCESSES)]
    torn = []
    for line in log.read_bytes().split(b"\n")[:-1]:
        match = RECORD.match(line)
        if (
            match is None
            or len(match.group(4)) != int(match.group(3))
            or match.group(4) != bytes([65 + int(match.group(2)) % 26]) * int(match.group(3))
        ):
            torn.append(line[:80])
            continue
        seqs[int(match.group(1))].append(int(match.group(2)))
    assert torn == []
    assert seqs == [list(range(n)) for n in written]


def test_helpers_keep_every_line_whole(directory: Path) -> None:
    """12 redirected processes (and a child of each) write lines of up to 3 KB in pieces into
    one log on the filesystem: every line arrives once, whole, in order, from its own pid, and
    no record is longer than PIPE_BUF."""
    log = directory / "infra.log"
    data = run_writers(log, writers=12, count=200)
    deadline = time.monotonic() + 30
    while check_log(data, 12, 200) and time.monotonic() < deadline:  # helpers finish last
        time.sleep(0.2)
        data = log.read_bytes()
    assert check_log(data, 12, 200) == []
    assert max(len(line) + 1 for line in data.split(b"\n")[:-1]) <= 4096
