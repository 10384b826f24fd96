"""Issue 11, the actor's side: redirect(), restore(), the watchdog and the fallback.

Each case of docs/reliability.md ("Lost, torn or misattributed lines") that lives in the
Python layer has a test here, run in a child process as every fd-touching test is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import pid_alive, run_python, wait_for
from records import lines_by_writer, parse
from skyrl_fdlog._redirect import helper_executable

pytestmark = pytest.mark.slow


def out_lines(log: Path) -> list[bytes]:
    records, bad = parse(log.read_bytes())
    assert bad == [], bad[:3]
    return [
        text
        for (pid, stream), lines in lines_by_writer(records).items()
        if stream in ("out", "err")
        for text, _ in lines
    ]


def notes(log: Path) -> list[bytes]:
    return [r.payload for r in parse(log.read_bytes())[0] if r.stream == "fdlog"]


# Case 3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [(1, 2), (0, 1, 2), (2,)])
def test_closed_standard_fds_then_a_helper_restart_lines_land_once(tmp_path, closed):
    """Started with fds closed (`>&- 2>&-`, `<&-`): every fd skyrl_fdlog keeps is 3 or above,
    after a helper restart each line lands exactly once (no record read back by the helper),
    and restore() leaves the closed fds closed."""
    log, report = tmp_path / "infra.log", tmp_path / "report"
    run_python(f"""
        import os, signal, time, skyrl_fdlog
        for fd in {closed!r}:
            os.close(fd)
        r = skyrl_fdlog.redirect({str(log)!r})
        kept = [r._log_fd, r._status_fd, *r._channel_reads, *r._saved_fds]
        for i in range(100):
            os.write(1, b"first %d\\n" % i)
        deadline = time.time() + 10
        while b"first 99" not in open({str(log)!r}, "rb").read() and time.time() < deadline:
            time.sleep(0.01)
        first = r.helper_pid
        os.kill(first, signal.SIGKILL)
        while r.helper_pid == first and time.time() < deadline:
            time.sleep(0.01)
        kept += [r._status_fd]
        for i in range(100):
            os.write(1, b"second %d\\n" % i)
        time.sleep(1)
        skyrl_fdlog.restore()
        still_closed = []
        for fd in {closed!r}:
            try:
                os.fstat(fd)
            except OSError:
                still_closed.append(fd)
        open({str(report)!r}, "w").write(repr((kept, still_closed)))
    """)
    kept, still_closed = eval(report.read_text())
    assert min(kept) >= 3, kept
    assert still_closed == list(closed)
    assert log.stat().st_size < 100_000  # the helper never read its own records back
    got = out_lines(log)
    expected = [f"first {i}".encode() for i in range(100)] + [f"second {i}".encode() for i in range(100)]
    assert got == expected


# Fork: the state lock and descriptors made during redirect() -----------------------------


def test_fork_while_another_thread_holds_the_state_lock_child_can_redirect(tmp_path):
    """A child forked while another thread is inside redirect()/restore() (here: holds the
    state lock) can redirect() itself instead of deadlocking."""
    log = tmp_path / "child.log"
    result = run_python(
        f"""
        import os, threading, time, skyrl_fdlog
        from skyrl_fdlog import _redirect
        held, release = threading.Event(), threading.Event()
        def hold():
            with _redirect._state_lock:
                held.set()
                release.wait()
        threading.Thread(target=hold).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            __import__("signal").alarm(10)  # a deadlock ends the child with SIGALRM
            skyrl_fdlog.redirect({str(log)!r})
            print("child redirected")
            skyrl_fdlog.restore()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        release.set()
        print("child status", status)
    """,
        timeout=60,
    )
    assert b"child status 0" in result.stdout, result.stdout
    assert out_lines(log) == [b"child redirected"]


def test_fork_during_redirect_setup_leaks_no_descriptor_into_the_child(tmp_path):
    """A thread forks children while the main thread redirects and restores in a loop: no
    child holds a descriptor skyrl_fdlog made (a channel, a pipe, the log, a status pipe),
    whatever moment it was forked at; each child lists its fds above 2 and exits."""
    result = run_python(
        f"""
        import os, threading, time, skyrl_fdlog
        stop = threading.Event()
        leaks, children = [], []
        def forker():
            while not stop.is_set():
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(read)
                    fds = [fd for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
                    found = []
                    for fd in fds:
                        try:
                            found.append(os.readlink(f"/proc/self/fd/{{fd}}"))
                        except OSError:
                            pass  # the directory listdir had open
                    # the report pipe, and fds 1 and 2 (stand-ins follow them: not a leak)
                    ours = [os.readlink(f"/proc/self/fd/{{fd}}") for fd in (write, 1, 2)]
                    os.write(write, repr([t for t in found if t not in ours and (
                        t.startswith(("socket:", "pipe:")) or {str(tmp_path)!r} in t)]).encode())
                    os._exit(0)
                os.close(write)
                said = b""
                while chunk := os.read(read, 65536):
                    said += chunk
                os.close(read)
                os.waitpid(pid, 0)
                children.append(pid)
                if said != b"[]":
                    leaks.append(said)
        thread = threading.Thread(target=forker)
        thread.start()
        for i in range(40):
            skyrl_fdlog.redirect({str(tmp_path)!r} + f"/{{i}}.log")
            skyrl_fdlog.restore(timeout=3)
        stop.set()
        thread.join()
        print("children:", len(children), "with leaks:", len(leaks), leaks[:3])
    """,
        timeout=300,
    )
    assert b"with leaks: 0 " in result.stdout, result.stdout


# Case 2, the Python half: a helper that keeps dying -----------------------------------------


def test_a_helper_that_keeps_dying_is_restarted_with_backoff_and_a_reason(tmp_path):
    """A helper that dies at once, every time (here a program that says READY and exits, as a
    helper killed by SIGXFSZ does): after 3 restarts at once the watchdog waits longer before
    each (0.1 s, doubling) instead of restarting it thousands of times a second, and each
    restart note says why and which restart it is."""
    dying = tmp_path / "dying-helper"
    starts = tmp_path / "starts"
    dying.write_text(f"#!/bin/sh\necho start >> {starts}\necho READY $$ >&6\n")
    dying.chmod(0o755)
    log = tmp_path / "infra.log"
    run_python(
        f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        time.sleep(3)
    """,
        env={"SKYRL_FDLOG_HELPER": str(dying)},
        timeout=60,
    )
    started = len(starts.read_text().split())
    said = notes(log)
    print(f"\nMEASURED helpers started in 3 s by a helper that dies at once: {started}")
    assert started <= 10, started
    assert said and all(b"ended without saying why" in note for note in said), said
    assert b"restart 1 of this redirection, at once" in said[0]
    assert b"restart 6 of this redirection, after waiting 0.4 s" in said[5], said


def test_a_helper_killed_at_the_file_size_limit_is_explained_on_stderr(tmp_path):
    """A helper that dies as the log reaches RLIMIT_FSIZE (SIGXFSZ): the log cannot take the
    restart note, so it goes to the original stderr, naming the limit."""
    dying = tmp_path / "dying-helper"
    dying.write_text("#!/bin/sh\necho READY $$ >&6\n")
    dying.chmod(0o755)
    log = tmp_path / "infra.log"
    log.write_bytes(b"x" * 100000)
    result = run_python(
        f"""
        import resource, time, skyrl_fdlog
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, resource.RLIM_INFINITY))
        skyrl_fdlog.redirect({str(log)!r})
        time.sleep(0.5)
    """,
        env={"SKYRL_FDLOG_HELPER": str(dying)},
        timeout=60,
    )
    assert log.stat().st_size == 100000
    assert b"file size limit (ulimit -f) of 100000 bytes that the helper inherits" in result.stderr, (
        result.stderr
    )


# Case 12 --------------------------------------------------------------------------------


def test_helper_killed_after_restore_children_are_not_killed_by_sigpipe(tmp_path):
    """restore() returns while a child still writes; then the helper is SIGKILLed: the child
    is not killed by SIGPIPE, it finishes, and its lines are in the log."""
    log, report = tmp_path / "infra.log", tmp_path / "report"
    run_python(
        f"""
        import os, signal, subprocess, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log)!r})
        child = subprocess.Popen(["sh", "-c", "sleep 1; seq 1 200000"])
        skyrl_fdlog.restore(timeout=0.2)
        os.kill(r.helper_pid, signal.SIGKILL)
        status = child.wait(timeout=60)
        open({str(report)!r}, "w").write(str(status))
        time.sleep(2)
    """,
        timeout=120,
    )
    assert report.read_text() == "0"
    assert out_lines(log) == [str(i).encode() for i in range(1, 200001)]


# Case 4 ---------------------------------------------------------------------------------


def test_concurrent_redirects_during_a_path_switch_restore_puts_the_originals_back(tmp_path):
    """While redirect(p2) switches away from p1 (p1's helper waits for a lingering child),
    another thread calls redirect(p3): the calls serialize, restore() puts back the fd 1 and 2
    of before the first capture, nothing is active after it and every helper exits."""
    report = tmp_path / "report"
    run_python(
        f"""
        import os, subprocess, threading, time, skyrl_fdlog
        before = [os.fstat(fd) for fd in (1, 2)]
        a = skyrl_fdlog.redirect({str(tmp_path / "p1.log")!r})
        child = subprocess.Popen(["sleep", "3"])   # holds p1's channel
        switch = threading.Thread(target=skyrl_fdlog.redirect,
                                  args=({str(tmp_path / "p2.log")!r},))
        switch.start()
        time.sleep(0.5)
        c = skyrl_fdlog.redirect({str(tmp_path / "p3.log")!r})
        switch.join()
        b = skyrl_fdlog.active()
        skyrl_fdlog.restore()
        after = [os.fstat(fd) for fd in (1, 2)]
        same = [(x.st_dev, x.st_ino) == (y.st_dev, y.st_ino) for x, y in zip(before, after)]
        child.wait()
        helpers = [a.helper_pid, b.helper_pid, c.helper_pid]
        open({str(report)!r}, "w").write(repr((same, skyrl_fdlog.active() is None, helpers)))
    """,
        timeout=60,
    )
    same, nothing_active, helpers = eval(report.read_text())
    assert same == [True, True]
    assert nothing_active
    for helper in helpers:
        wait_for(lambda helper=helper: not pid_alive(helper), timeout=10)


# Case 5 ---------------------------------------------------------------------------------


def test_no_helper_can_start_older_children_finish_and_their_lines_land(tmp_path):
    """The helper is killed and none can be started again (its program is gone): a child
    started before writes 14 MB (more than the channel holds) and finishes; every one of its
    lines is in the log, whole."""
    helper = tmp_path / "helper"
    shutil.copy(helper_executable(), helper)
    log, report = tmp_path / "infra.log", tmp_path / "report"
    run_python(
        f"""
        import os, signal, subprocess, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log)!r})
        child = subprocess.Popen(["sh", "-c", "sleep 0.5; seq 1 2000000"])
        os.remove({str(helper)!r})
        os.kill(r.helper_pid, signal.SIGKILL)
        try:
            status = child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            status = "still blocked after 60 s"
            child.kill()
        print("after")
        skyrl_fdlog.restore()
        open({str(report)!r}, "w").write(str(status))
    """,
        env={"SKYRL_FDLOG_HELPER": str(helper)},
        timeout=180,
    )
    assert report.read_text() == "0"
    data = log.read_bytes()
    assert b"no log helper could be started" in data
    lines = [line for line in data.split(b"\n") if line.isdigit()]
    assert lines == [str(i).encode() for i in range(1, 2000001)]
    assert b"\nafter\n" in data


# Case 11 --------------------------------------------------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a pid namespace",
)
def test_pid_1_of_a_pid_namespace_keeps_every_line_written_before_exit(tmp_path):
    """As PID 1 of its pid namespace (a one-process container) the actor writes 40,001 lines
    from itself and a child, then exits at once: every line is in the log (as with a plain
    `>>` redirection), and one note says which mode was chosen and why."""
    log = tmp_path / "infra.log"
    code = textwrap.dedent(f"""
        import os, subprocess, skyrl_fdlog
        assert os.getpid() == 1
        skyrl_fdlog.redirect({str(log)!r})
        for i in range(20000):
            print("actor", i)
        subprocess.run(["sh", "-c", "seq 1 20000 | sed s/^/child\\\\ /"])
        print("last", flush=True)
        os._exit(0)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = log.read_bytes()
    lines = data.split(b"\n")
    assert [line for line in lines if line.startswith(b"actor ")] == [
        f"actor {i}".encode() for i in range(20000)
    ]
    assert [line for line in lines if line.startswith(b"child ")] == [
        f"child {i}".encode() for i in range(1, 20001)
    ]
    assert b"last" in lines
    said = notes(log)
    assert len(said) == 1 and b"PID 1 of its pid namespace" in said[0], said
