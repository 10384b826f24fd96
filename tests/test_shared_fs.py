"""Several machines appending to one log over a shared filesystem (GlusterFS on loopback).

Two FUSE mounts of one GlusterFS volume (tests/glusterfs_bed.sh) stand for two machines: each
mount has its own client process, kernel caches and write-behind.  Writers on both append to
one file through redirect(); the volume keeps its default options (write-behind on).

Sizes: 8 writer_program.py actors (4 per mount), each with a child, 3 methods each, so
48 x COUNT lines.  COUNT is 150 by default (7,200 lines) and 3,334 with SKYRL_FDLOG_LONG=1
(160,032 lines, the size the issue measured by hand).  Each test prints a MEASURED line;
docs/reliability.md quotes them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from _faults import LONG, damage, run_fs_writers
from conftest import run_python
from stress_check import check_log

pytestmark = [pytest.mark.gluster, pytest.mark.slow]

WRITERS = 8
COUNT = 3334 if LONG else 150


def read_settled(path, attempts: int = 20) -> bytes:
    """The file as a mount sees it once its size stops changing (FUSE caches attributes ~1 s)."""
    previous = None
    for _ in range(attempts):
        data = path.read_bytes()
        if data == previous:
            return data
        previous = data
        time.sleep(0.5)
    return previous


def shared_run(bed, tmp_path, lock: str) -> tuple[dict, dict, bytes]:
    """8 actors, alternating between the two mounts, appending to one file with `lock`."""
    mount1, mount2 = bed.mounts
    name = f"{tmp_path.name}-{lock}-{os.getpid()}-{time.time_ns()}.log"
    logs = [(mount1 if index % 2 == 0 else mount2) / name for index in range(WRITERS)]
    run = run_fs_writers(logs, COUNT, lock, tmp_path)
    time.sleep(1.5)  # let both clients' attribute caches expire before reading
    data = read_settled(mount1 / name)
    found = damage(data, WRITERS, COUNT)
    found["brick"] = damage((bed.brick / name).read_bytes(), WRITERS, COUNT)
    found["lines_per_s"] = round(found["expected"] / run["seconds"])
    print(
        f"\nMEASURED lock={lock}: {found['expected']} lines from {WRITERS} writers "
        f"(+children) on 2 mounts, {run['seconds']:.1f} s until all written "
        f"({found['lines_per_s']} lines/s); through a mount: lost {found['lost']}, "
        f"torn {found['torn']}, duplicated {found['duplicated']}; on the brick: "
        f"lost {found['brick']['lost']}, torn {found['brick']['torn']}"
    )
    return run, found, data


def test_bed_is_two_clients_whose_locks_exclude_each_other(gluster_bed):
    """The premise of the bed: both mounts are FUSE (GlusterFS), a file written through one
    is seen through the other, and a whole-file fcntl lock held through mount 1 makes a
    non-blocking lock attempt through mount 2 fail, as between two machines."""
    mount1, mount2 = gluster_bed.mounts
    for mount in (mount1, mount2):
        assert os.statvfs(mount).f_bsize > 0
        assert "fuse.glusterfs" in next(line for line in open("/proc/mounts") if f" {mount} " in line)
    path = mount1 / "lock-probe"
    path.write_bytes(b"from mount 1\n")
    assert (mount2 / "lock-probe").read_bytes() == b"from mount 1\n"
    with open(path, "ab") as first, open(mount2 / "lock-probe", "ab") as second:
        fcntl.lockf(first, fcntl.LOCK_EX)
        with pytest.raises(OSError):
            fcntl.lockf(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(first, fcntl.LOCK_UN)
        fcntl.lockf(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(second, fcntl.LOCK_UN)


def test_lock_auto_detects_glusterfs_and_not_a_local_disk(gluster_bed, tmp_path):
    """redirect(lock="auto") locks on the GlusterFS FUSE mount (Redirection.locked is True) and
    not on the local ext4 disk; "never" and "always" override the detection."""
    mount1, _ = gluster_bed.mounts
    result = run_python(f"""
        import skyrl_fdlog
        modes = []
        for path, lock in (({str(mount1 / "detect.log")!r}, "auto"),
                           ({str(tmp_path / "local.log")!r}, "auto"),
                           ({str(mount1 / "never.log")!r}, "never"),
                           ({str(tmp_path / "always.log")!r}, "always")):
            r = skyrl_fdlog.redirect(path, lock=lock)
            modes.append(r.locked)
            skyrl_fdlog.restore()
        print(modes)
    """)
    assert result.stdout.decode().strip() == "[True, False, False, True]"


def test_two_mounts_lock_auto_every_line_once_intact_in_order(gluster_bed, tmp_path):
    """With lock="auto" on default volume options (write-behind on), writers on both mounts
    appending to one file: every line arrives exactly once, whole (checksum), in per-writer
    order and attributed to its pid, as read through a mount and as stored on the brick.
    Each append batch is written under a whole-file fcntl lock and fdatasync'd before unlock."""
    run, found, data = shared_run(gluster_bed, tmp_path, "auto")
    assert all(run["locked"]), run
    assert check_log(data, WRITERS, COUNT) == []
    assert (found["lost"], found["torn"], found["duplicated"]) == (0, 0, 0), found
    assert (found["brick"]["lost"], found["brick"]["torn"]) == (0, 0), found


def test_two_mounts_lock_never_loses_or_tears_lines(gluster_bed, tmp_path):
    """The same load with lock="never" (plain O_APPEND from two clients) damages the file:
    each client appends at the end of file it has cached, so one machine's records overwrite
    the other's. This is why lock="auto" locks on FUSE and network filesystems."""
    run, found, _ = shared_run(gluster_bed, tmp_path, "never")
    assert not any(run["locked"]), run
    assert found["lost"] > 0 or found["torn"] > 0, found
    assert found["brick"]["lost"] > 0 or found["brick"]["torn"] > 0, found


def test_bed_script_is_idempotent_and_cleans_up_by_pid(tmp_path):
    """A second, independent bed (its own directory, 127.0.0.3): `up` twice keeps
    the same processes, `down` leaves no mount and no process that mentions the bed, and a
    second `down` does nothing."""
    from _gluster import SCRIPT, fuse_unavailable_reason, parse_env

    reason = fuse_unavailable_reason()
    if reason is not None:
        pytest.skip(f"GLUSTERFS TEST BED CANNOT RUN ON THIS MACHINE: {reason}")
    bed_dir = tmp_path / "bed"
    env = {
        **os.environ,
        "GLUSTER_BED_DIR": str(bed_dir),
        "GLUSTER_BED_HOST": "127.0.0.3",
        "GLUSTER_BED_VOLUME": "fdlogidem",
    }

    def bed(command: str):
        return subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=300
        )

    def bed_processes() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(bed_dir).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
        return found

    try:
        first = bed("up")
        assert first.returncode == 0, first.stderr
        second = bed("up")
        assert second.returncode == 0, second.stderr
        pids = ("GLUSTERD_PID", "BRICK_PID", "CLIENT1_PID", "CLIENT2_PID")
        assert [parse_env(first.stdout)[k] for k in pids] == [parse_env(second.stdout)[k] for k in pids]
        mount1 = Path(parse_env(first.stdout)["MOUNT1"])
        (mount1 / "probe").write_bytes(b"ok")
        assert bed_processes()
    finally:
        down = bed("down")
    assert down.returncode == 0, down.stderr
    assert bed_processes() == []
    assert str(bed_dir) not in Path("/proc/mounts").read_text()
    assert not bed_dir.exists()
    assert bed("down").returncode == 0
