"""Crashes and a dying helper: nothing written before is lost, later output still lands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import pid_alive, run_python, wait_for
from records import lines_by_writer, parse


def payloads(path: Path) -> list[bytes]:
    records, bad = parse(path.read_bytes())
    assert bad == [], bad[:3]
    return [r.payload for r in records]


@pytest.mark.parametrize("death", ["segfault", "abort", "sigkill"])
def test_lines_before_a_crash_land_and_an_orphan_keeps_writing(log_file, death):
    """The actor writes 2,000 lines, starts a child that outlives it, and dies (SIGSEGV, abort or
    SIGKILL): every line written before is in the log, and the orphan's later lines land too."""
    kill = {
        "segfault": "import ctypes; ctypes.string_at(0)",
        "abort": "os.abort()",
        "sigkill": "os.kill(os.getpid(), 9)",
    }[death]
    result = run_python(
        f"""
        import os, subprocess, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        for i in range(2000):
            print("before crash", i)
        subprocess.Popen(["sh", "-c", "sleep 0.5; echo orphan after crash"])
        {kill}
    """,
        check=False,
    )
    assert result.returncode != 0
    wait_for(lambda: b"orphan after crash" in log_file.read_bytes())
    got = payloads(log_file)
    assert got[:2000] == [f"before crash {i}".encode() for i in range(2000)]


def test_helper_killed_output_continues_without_broken_pipe(log_file):
    """SIGKILL of the helper: the actor never sees BrokenPipeError, a new helper takes over,
    says so in a 'fdlog' record, and every line is in the log: those written while no helper
    ran waited in the channel.  (Only what a helper had read but not yet written dies with it;
    the test lets the first helper finish its lines before killing it.)"""
    run_python(f"""
        import os, signal, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        for i in range(500):
            print("line", i)
        deadline = time.time() + 10
        while b"line 499\\n" not in open({str(log_file)!r}, "rb").read() and time.time() < deadline:
            time.sleep(0.01)
        first = r.helper_pid
        os.kill(first, signal.SIGKILL)
        for i in range(500, 1000):
            print("line", i)
        deadline = time.time() + 10
        while r.helper_pid == first and time.time() < deadline:
            time.sleep(0.01)
        assert r.helper_pid != first
        for i in range(1000, 1500):
            print("line", i)
        skyrl_fdlog.restore()
    """)
    records, _ = parse(log_file.read_bytes())
    lines = [r.payload for r in records if r.stream == "out"]
    assert lines == [f"line {i}".encode() for i in range(1500)]
    notes = [r.payload for r in records if r.stream == "fdlog"]
    assert len(notes) == 2 and b"restart 1 of this redirection" in notes[0], notes
    assert b"ended unexpectedly; restarted as" in notes[1]


def test_helper_sigterm_drains_then_a_new_helper_continues(log_file):
    """SIGTERM makes the helper write what it has and exit; the actor's later output still lands
    (fd 1 before the restart, Python's pipe after it)."""
    run_python(f"""
        import os, signal, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        os.write(1, b"unfinished ")
        os.write(1, b"whole line\\n")
        first = r.helper_pid
        os.kill(first, signal.SIGTERM)
        deadline = time.time() + 10
        while r.helper_pid == first and time.time() < deadline:
            time.sleep(0.01)
        print("after restart")
        skyrl_fdlog.restore()
    """)
    records, _ = parse(log_file.read_bytes())
    joined = [text for lines in lines_by_writer(records).values() for text, _ in lines]
    assert b"unfinished whole line" in joined and b"after restart" in joined


def test_actor_sigkilled_while_child_keeps_writing(log_file, tmp_path):
    """The actor is SIGKILLed while its child writes 3,000 lines: the child's lines all land, in
    order, and the helper exits once the child is done."""
    go = tmp_path / "go"
    child = tmp_path / "child.py"
    child.write_text(
        textwrap.dedent(f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for i in range(3000):
            print("child line", i, flush=True)
    """)
    )
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        subprocess.Popen([sys.executable, {str(child)!r}])
        os.write(r._saved_fds[0], f"{{r.helper_pid}}\\n".encode())
        time.sleep(60)
    """)
    actor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    helper = int(actor.stdout.readline())
    actor.kill()
    actor.wait()
    go.touch()
    wait_for(lambda: not pid_alive(helper), timeout=30)
    assert payloads(log_file) == [f"child line {i}".encode() for i in range(3000)]
