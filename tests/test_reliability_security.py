"""Hostile neighbours: never write where we should not, create nothing others can read or
write, leak no descriptor.  Extends tests/test_core_api.py (planted symlink, hard link, bad
parent, foreign directory and foreign symlinked directory in a sticky directory, modes of
infra_log_path), without repeating it.  A temporary sticky world-writable directory stands
for /tmp; uid 4242 stands for another user.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from _faults import actor_around_a_fault, fault_done, finish
from conftest import refusal, run_python
from records import parse

pytestmark = pytest.mark.slow

OTHER_UID = 4242


@pytest.fixture
def sticky(tmp_path: Path) -> Path:
    """A world-writable sticky directory like /tmp."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def test_refuses_a_log_file_planted_by_another_user_in_a_sticky_directory(sticky):
    """A log file that another user created in a sticky world-writable directory (so that we
    would fill a file they own and read) is refused, naming its owner; it stays empty."""
    planted = sticky / "infra.log"
    planted.write_bytes(b"")
    os.chown(planted, OTHER_UID, OTHER_UID)
    message = refusal(planted)
    assert str(planted) in message and f"uid {OTHER_UID}" in message
    assert planted.read_bytes() == b""


def test_refuses_a_hard_link_to_another_users_file_in_a_sticky_directory(sticky):
    """A hard link planted by another user at the log path, pointing at a file of theirs
    elsewhere, is refused and the target keeps its content."""
    target = sticky / "their-file"
    target.write_bytes(b"theirs\n")
    os.chown(target, OTHER_UID, OTHER_UID)
    os.link(target, sticky / "infra.log")
    message = refusal(sticky / "infra.log")
    assert str(sticky / "infra.log") in message
    assert target.read_bytes() == b"theirs\n"


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket"])
def test_refuses_what_is_not_a_regular_file_without_hanging(tmp_path, kind):
    """A FIFO (whose open would block until a reader comes), a directory or a socket at the
    log path is refused within seconds, naming the path."""
    path = tmp_path / "infra.log"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    start = time.monotonic()
    message = refusal(path)
    assert time.monotonic() - start < 20
    assert str(path) in message


def test_infra_log_path_refuses_a_foreign_directory_in_a_sticky_directory(sticky):
    """infra_log_path (the driver's call) applies the same rule as redirect(): a skyrl-logs
    directory pre-created by another user in /tmp is refused, and nothing is created in it."""
    planted = sticky / "skyrl-logs"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, OTHER_UID, OTHER_UID)
    message = refusal(planted, call="infra_log_path")
    assert str(planted) in message and f"uid {OTHER_UID}" in message
    assert list(planted.iterdir()) == []


def test_own_symlinked_directory_in_a_sticky_directory_is_followed(sticky, tmp_path):
    """Only another user's symlink is distrusted: a symlink we own in /tmp pointing at our own
    directory is followed and the log is created there."""
    ours = tmp_path / "ours"
    ours.mkdir()
    (sticky / "skyrl-logs").symlink_to(ours)
    run_python(f"""
        import skyrl_fdlog
        skyrl_fdlog.redirect({str(sticky / "skyrl-logs" / "infra.log")!r})
        print("through our link")
        skyrl_fdlog.restore()
    """)
    assert b"out: through our link\n" in (ours / "infra.log").read_bytes()


@pytest.mark.parametrize(
    "umask, directory_mode, file_mode",
    [(0o022, 0o750, 0o640), (0o077, 0o700, 0o600), (0o000, 0o750, 0o640), (0o027, 0o750, 0o640)],
)
def test_redirect_creates_directories_and_file_with_safe_modes(tmp_path, umask, directory_mode, file_mode):
    """Directories and the log file that redirect() creates are 0750 and 0640, narrowed by the
    umask; even with umask 0 nothing is writable by others or readable by the world."""
    log = tmp_path / "a" / "b" / "infra.log"
    run_python(f"""
        import os, skyrl_fdlog
        os.umask({umask})
        skyrl_fdlog.redirect({str(log)!r})
        skyrl_fdlog.restore()
    """)
    assert stat.S_IMODE(log.stat().st_mode) == file_mode
    assert stat.S_IMODE(log.parent.stat().st_mode) == directory_mode
    assert stat.S_IMODE(log.parent.parent.stat().st_mode) == directory_mode


def test_existing_file_keeps_its_mode(tmp_path):
    """An existing log keeps the mode its owner chose (here 0604); redirect() never chmods."""
    log = tmp_path / "infra.log"
    log.write_bytes(b"")
    log.chmod(0o604)
    run_python(f"""
        import skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        print("x")
        skyrl_fdlog.restore()
    """)
    assert stat.S_IMODE(log.stat().st_mode) == 0o604


def test_symlink_planted_after_rotation_is_not_followed(tmp_path):
    """After the log is renamed (logrotate) someone plants a symlink at the log path pointing
    at a victim file.  The helper's reopen refuses it: the victim is untouched, no file of
    another name is written, and the actor's lines keep going to the file it already has open.
    The reopened-file mode test rides along: a file the helper re-creates would be 0640."""
    log = tmp_path / "logs" / "infra.log"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    actor = actor_around_a_fault(
        tmp_path, log, 100, 'lines("b", 300, per_second=100)', redirect_args=', name="planted"'
    )
    rotated = log.with_name("infra.log.1")
    os.rename(log, rotated)
    log.symlink_to(victim)
    fault_done(tmp_path)
    finish(actor, tmp_path)
    assert victim.read_bytes() == b"precious\n"
    assert log.is_symlink()
    records, bad = parse(rotated.read_bytes())
    assert bad == []
    payloads = [r.payload for r in records if r.stream == "out"]
    assert payloads == [f"a {i}".encode() for i in range(100)] + [f"b {i}".encode() for i in range(300)]
    assert sorted(p.name for p in log.parent.iterdir()) == ["infra.log", "infra.log.1"]


def test_reopened_file_after_rotation_has_safe_mode(tmp_path):
    """The file the helper creates after logrotate moved the log away is 0640 under umask
    022, like the first one (it is opened with the same safe open)."""
    log = tmp_path / "infra.log"
    actor = actor_around_a_fault(
        tmp_path, log, 10, 'lines("b", 300, per_second=100)', setup="os.umask(0o022)"
    )
    os.rename(log, tmp_path / "infra.log.1")
    fault_done(tmp_path)
    finish(actor, tmp_path)
    assert log.exists(), "the helper did not reopen the log path"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640


def test_children_inherit_only_fds_0_1_2(log_file):
    """After redirect(), a child started with subprocess (close_fds=False), os.posix_spawn or
    fork+exec holds exactly fds 0, 1 and 2, also after the helper was killed and restarted;
    a forked child (no exec) holds no descriptor of skyrl_fdlog's (the log, the channels'
    reading ends, the saved fds, the status pipe, the Python pipes), only what the process had
    before plus two stand-ins for its own fds 1 and 2 under the Python pipes' numbers."""
    result = run_python(f"""
        import os, signal, subprocess, sys, time, skyrl_fdlog

        def fds(pid):
            return sorted(int(fd) for fd in os.listdir(f"/proc/{{pid}}/fd"))

        def exec_fds(pid):
            # The kernel wakes a vfork parent (posix_spawn) before it closes the close-on-exec
            # fds of the new program: look once the child runs sleep and has settled.
            deadline = time.time() + 5
            while open(f"/proc/{{pid}}/cmdline", "rb").read() != b"sleep\\x005\\x00":
                assert time.time() < deadline
                time.sleep(0.01)
            time.sleep(0.2)
            return fds(pid)

        def spawned_fds():
            found = []
            child = subprocess.Popen(["sleep", "5"], close_fds=False)
            found.append(exec_fds(child.pid)); child.kill(); child.wait()
            pid = os.posix_spawn("/bin/sleep", ["sleep", "5"], os.environ)
            found.append(exec_fds(pid)); os.kill(pid, 9); os.waitpid(pid, 0)
            pid = os.fork()
            if pid == 0:
                os.execv("/bin/sleep", ["sleep", "5"])
            found.append(exec_fds(pid)); os.kill(pid, 9); os.waitpid(pid, 0)
            return found

        before = fds(os.getpid())
        r = skyrl_fdlog.redirect({str(log_file)!r})
        during = fds(os.getpid())
        first = spawned_fds()
        helper = r.helper_pid
        os.kill(helper, signal.SIGKILL)
        deadline = time.time() + 10
        while r.helper_pid == helper and time.time() < deadline:
            time.sleep(0.01)
        assert r.helper_pid != helper
        time.sleep(0.2)
        after_restart = spawned_fds()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            held = sorted(set(fds(os.getpid())) - {{write}})
            target = lambda fd: os.readlink(f"/proc/self/fd/{{fd}}")
            stand_ins = sorted(target(fd) for fd in held if fd not in before)
            os.write(write, repr((held, stand_ins, sorted([target(1), target(2)]))).encode())
            os._exit(0)
        os.close(write)
        forked = eval(os.read(read, 1000))
        os.waitpid(pid, 0)
        skyrl_fdlog.restore()
        print(repr((before, during, first, after_restart, forked)), file=sys.__stdout__)
    """)
    before, during, first, after_restart, forked = eval(result.stdout.decode())
    assert len(during) > len(before), "redirect() holds descriptors of its own"
    assert first == [[0, 1, 2]] * 3
    assert after_restart == [[0, 1, 2]] * 3
    held, stand_ins, own_1_and_2 = forked
    assert [fd for fd in held if fd in before] == before
    assert stand_ins == own_1_and_2, "a forked child must hold nothing but its own fds 1 and 2"
