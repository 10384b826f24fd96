"""Issue 11, the helper's side: what the helper holds (fds, working directory, limits), how
it times, and how it keeps writers apart.  Each test says the case it covers.

Tests that need the helper without redirect() use _helper_alone.HelperAlone; the rest run a
real actor in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _faults import helpers_of
from _helper_alone import HelperAlone
from conftest import run_python, wait_for
from records import lines_by_writer, parse

pytestmark = pytest.mark.slow


def helper_state(log, tmp_path, pipes: str) -> dict:
    """Start redirect() in an actor whose fds 7, 8 and 9 hold inheritable files of its own
    and whose working directory is tmp_path; return what the helper holds."""
    result = run_python(
        f"""
        import json, os, skyrl_fdlog
        os.chdir({str(tmp_path)!r})
        read, write = os.pipe()
        os.dup2(read, 7)
        os.dup2(write, 8)
        os.dup2(os.open("planted", os.O_RDONLY | os.O_CREAT), 9)
        planted = {{n: os.readlink(f"/proc/self/fd/{{n}}") for n in (7, 8, 9)}}
        planted["stderr"] = os.readlink("/proc/self/fd/2")
        helper = skyrl_fdlog.redirect({str(log)!r}).helper_pid
        fds = {{int(n): os.readlink(f"/proc/{{helper}}/fd/{{n}}")
               for n in os.listdir(f"/proc/{{helper}}/fd")}}
        cwd = os.readlink(f"/proc/{{helper}}/cwd")
        skyrl_fdlog.restore()
        print(json.dumps({{"fds": fds, "cwd": cwd, "planted": planted}}))
    """,
        env={"SKYRL_FDLOG_PYTHON_PIPES": pipes},
    )
    state = json.loads(result.stdout)
    state["fds"] = {int(n): target for n, target in state["fds"].items()}
    return state


@pytest.mark.parametrize("pipes", ["0", "1"])
def test_helper_holds_its_own_descriptors_only_and_leaves_the_working_directory(log_file, tmp_path, pipes):
    """Case 7 and chdir: the actor holds inheritable files on fds 7, 8 and 9.  Without the
    Python pipes (SKYRL_FDLOG_PYTHON_PIPES=0, or a sys.stdout that cannot be replaced) the
    helper holds fds 0-6 only; with them 0-8, its 7 and 8 being the pipes, not the actor's
    files; and 9, the actor's original stderr (where error lines go), not the actor's file.
    Its working directory is "/", not the actor's."""
    state = helper_state(log_file, tmp_path, pipes)
    fds, planted = state["fds"], state["planted"]
    if fds.get(10) == "anon_inode:[pidfd]":  # its own: the actor's, for "The OOM killer" (helper.c)
        del fds[10]
    expected = (set(range(9)) if pipes == "1" else set(range(7))) | {9}
    assert set(fds) == expected, fds
    assert fds.pop(9) == planted.pop("stderr")
    assert [fds[n] for n in (0, 1, 2)] == ["/dev/null"] * 3
    assert fds[3] == str(log_file)
    assert all(fds[n].startswith("socket:") for n in (4, 5)) and fds[6].startswith("pipe:")
    assert not set(planted.values()) & set(fds.values()), (planted, fds)
    assert state["cwd"] == "/"


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def faked_wall_clock(tmp_path, offset: str) -> dict:
    """Environment for a helper whose wall clock (only) is moved by writing to the file."""
    if not os.path.exists(FAKETIME):
        pytest.fail(f"{FAKETIME} is missing: apt-get install faketime")
    control = tmp_path / "faketime"
    control.write_text(offset)
    return {
        "LD_PRELOAD": FAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def test_a_wall_clock_step_back_does_not_stall_idle_flushes(tmp_path):
    """Clocks: the helper times idle lines on the monotonic clock.  Its wall clock (faked by
    libfaketime) steps back an hour while a partial line waits: the line is still flushed
    after the idle time (200 ms here), stamped with the stepped wall time.  Timed with the
    wall clock, it waited an hour."""
    log = tmp_path / "clock.log"
    env = faked_wall_clock(tmp_path, "+0")
    helper = HelperAlone(log, env=env)
    helper.out.send(b"whole\n")
    wait_for(lambda: b"whole" in log.read_bytes())
    (tmp_path / "faketime").write_text("-1h")
    time.sleep(0.3)  # the helper's next tick is due by now, timed either way
    helper.out.send(b"partial")
    try:
        wait_for(lambda: b"partial" in log.read_bytes(), timeout=5)
        records, bad = parse(log.read_bytes())
    finally:
        said = helper.close()
    assert bad == [] and b"EXIT eof" in said
    stamps = {
        r.payload: time.mktime(time.strptime(r.time[:19].decode(), "%Y-%m-%dT%H:%M:%S")) for r in records
    }
    assert 3500 < stamps[b"whole"] - stamps[b"partial"] < 3700, stamps


def test_file_size_limit_counts_drops_without_killing_the_helper(tmp_path):
    """Case 2: the actor runs under RLIMIT_FSIZE of 64 KiB (ulimit -f 64) and prints 1,500
    lines of 70 bytes (105 kB) with a 16 KiB queue.  The helper is not killed by SIGXFSZ (no
    restart note, one helper throughout): it fills the file up to the limit, less one record
    for a note saying so, and counts what does not fit; after logrotate the count is written
    in the new file, every line is in one of the files or counted, and the lines printed
    after that all land."""
    log = tmp_path / "fsize.log"
    rotated = tmp_path / "fsize.log.1"
    result = run_python(f"""
        import os, resource, time, skyrl_fdlog
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        helper = skyrl_fdlog.redirect({str(log)!r}, buffer_bytes=16 << 10).helper_pid
        for i in range(1500):
            print(f"before {{i}} " + "x" * 60)
        time.sleep(1)
        os.rename({str(log)!r}, {str(rotated)!r})

        def wait_in_log(needle):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if needle in open({str(log)!r}, "rb").read():
                        return
                except FileNotFoundError:
                    pass
                time.sleep(0.05)

        wait_in_log(b"dropped")  # the helper retries the log at most every 2 s
        for i in range(100):
            print(f"after {{i}}")
        wait_in_log(b"after 99")
        still = skyrl_fdlog.active().helper_pid
        skyrl_fdlog.restore()
        print(helper, still)
    """)
    first, last = map(int, result.stdout.split())
    old, bad_old = parse(rotated.read_bytes())
    new, bad_new = parse(log.read_bytes())
    notes = [r.payload for r in old + new if r.stream == "fdlog"]
    dropped = [int(n.split()[1]) for n in notes if n.startswith(b"dropped ")]
    kept = [r for r in old + new if r.payload.startswith(b"before ")]
    print(
        f"\nMEASURED RLIMIT_FSIZE 64 KiB: {rotated.stat().st_size} B in the rotated file, "
        f"{len(kept)} of 1500 lines kept, dropped {dropped}"
    )
    assert first == last and not any(b"ended unexpectedly" in n for n in notes), notes
    assert bad_old == [] and bad_new == [] and rotated.stat().st_size <= 65536
    assert any(b"reached the file size limit" in n for n in notes), notes
    assert len(kept) + sum(dropped) == 1500 and dropped, (len(kept), dropped)
    assert [r.payload for r in new if r.payload.startswith(b"after ")] == [
        b"after %d" % i for i in range(100)
    ]


def test_a_failing_poll_is_not_taken_for_the_end(tmp_path):
    """poll: strace makes the helper's 2nd and 3rd poll(2) fail with ENOMEM (the one error
    poll can meet here).  The helper used to leave as if every writer had gone ("EXIT eof"):
    the next write got EPIPE and nothing more was read.  It now tries again shortly."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing: apt-get install strace")
    log = tmp_path / "poll.log"
    helper = HelperAlone(
        log,
        wrapper=[
            "strace",
            "-D",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=poll",
            "-e",
            "inject=poll:error=ENOMEM:when=2..3",
        ],
    )
    helper.out.send(b"first\n")
    time.sleep(0.3)
    helper.err.send(b"after the failed polls\n")
    said = helper.close()
    records, bad = parse(log.read_bytes())
    assert b"EXIT eof" in said and bad == []
    assert [r.payload for r in records] == [b"first", b"after the failed polls"]


def test_reopen_note_waits_for_the_lock(tmp_path):
    """Suspected: on a network filesystem (lock=1) the note "was moved or removed; reopened
    it" was written without the lock (and without fdatasync) that every batch takes, so it
    could land on top of another machine's append.  Here another process holds the lock on
    the new file when the helper reopens it: nothing is written until it lets go."""
    import fcntl

    log = tmp_path / "locked.log"
    helper = HelperAlone(log, settings={"lock": 1})
    helper.out.send(b"first\n")
    wait_for(lambda: b"first" in log.read_bytes())
    os.rename(log, tmp_path / "locked.log.1")
    holder = os.open(log, os.O_WRONLY | os.O_CREAT, 0o640)
    fcntl.lockf(holder, fcntl.LOCK_EX)
    time.sleep(1.1)  # the helper checks the path at most once a second, when it writes
    helper.out.send(b"second\n")
    time.sleep(1)
    while_locked = log.read_bytes()
    fcntl.lockf(holder, fcntl.LOCK_UN)
    os.close(holder)
    said = helper.close()
    records, _ = parse(log.read_bytes())
    assert while_locked == b"", while_locked
    assert b"EXIT eof" in said
    assert [r.payload for r in records][-1] == b"second"
    assert b"reopened it" in records[0].payload


def test_a_helper_restarted_after_logrotate_writes_to_the_path(tmp_path):
    """Case 8: logrotate moves the log away, then the helper dies (SIGKILL) before it checked
    the path.  The restarted helper, handed the actor's fd of the moved file, used to write
    its restart note and the next lines there; it now checks the path at start and opens it
    anew, saying so."""
    log = tmp_path / "rotate.log"
    rotated = tmp_path / "rotate.log.1"
    run_python(f"""
        import os, signal, time, skyrl_fdlog
        redirection = skyrl_fdlog.redirect({str(log)!r})
        print("before", flush=True)
        while b"before" not in open({str(log)!r}, "rb").read():
            time.sleep(0.01)
        os.rename({str(log)!r}, {str(rotated)!r})
        dead = redirection.helper_pid
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while redirection.helper_pid == dead and time.monotonic() < deadline:
            time.sleep(0.01)
        print("after", flush=True)
        while time.monotonic() < deadline:
            if any(os.path.exists(p) and b"after" in open(p, "rb").read()
                   for p in ({str(log)!r}, {str(rotated)!r})):
                break
            time.sleep(0.01)
        skyrl_fdlog.restore()
    """)
    old, _ = parse(rotated.read_bytes())
    new, bad = parse(log.read_bytes())
    assert [r.payload for r in old] == [b"before"]
    assert bad == [] and [r.payload for r in new if r.stream == "out"] == [b"after"]
    notes = [r.payload for r in new if r.stream == "fdlog"]
    assert any(b"moved or removed; reopened it" in n for n in notes), notes
    assert any(b"ended unexpectedly" in n for n in notes), notes


def wait_read(sock) -> None:
    """Until the helper has read everything written on sock (SIOCOUTQ: bytes not yet read)."""
    import array
    import fcntl
    import termios

    queued = array.array("i", [0])
    deadline = time.monotonic() + 10
    while True:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)
        if queued[0] == 0:
            return
        assert time.monotonic() < deadline, "the helper did not read"
        time.sleep(0.01)


PID_REUSE = """
import os, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from _helper_alone import HelperAlone
from test_reliability_helper_cases import wait_read

helper = HelperAlone(Path({log!r}))
go_read, go_write = os.pipe()
old = os.fork()
if old == 0:
    helper.out.send(b"old partial")
    os.read(go_read, 1)  # exit only once the helper has read the partial line
    os._exit(0)
wait_read(helper.out)
os.write(go_write, b"x")
os.waitpid(old, 0)
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(old - 1))
new = os.fork()
if new == 0:
    assert os.getpid() == old, (os.getpid(), old)
    helper.out.send(b"new line\\n")
    os._exit(0)
os.waitpid(new, 0)
helper.close()
print(old)
"""


def test_pid_reuse_keeps_a_dead_writers_line_apart(tmp_path):
    """Case 9: in a pid namespace (unshare --pid), a writer leaves "old partial" unfinished
    and exits; ns_last_pid gives the next process its pid, which writes "new line".  The two
    used to be glued ("old partialnew line"); now the dead writer's line is ended first."""
    log = tmp_path / "reuse.log"
    script = PID_REUSE.format(tests=str(Path(__file__).parent), log=str(log))
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pid = int(result.stdout)
    records, bad = parse(log.read_bytes())
    assert bad == []
    assert [text for text, _ in lines_by_writer(records)[(pid, "out")]] == [b"old partial", b"new line"]


def test_a_writer_outside_the_pid_namespace_is_kept_apart(tmp_path):
    """Case 10: the helper runs in a pid namespace of its own; this test process, outside it,
    has no pid there (the kernel says 0, which was also the free-slot mark).  Its unfinished
    line used to be taken over by the next writer, an insider, and glued to its line under
    the insider's pid.  Now the outsider's bytes stay under pid 0, whole, and one note says
    what pid 0 means."""
    log = tmp_path / "outsider.log"
    wrapper = [
        "unshare",
        "--pid",
        "--fork",
        "sh",
        "-c",
        '"$@" & wait; exec sleep 1000 3>&- 4>&- 5>&- 6>&-',
        "sh",
    ]
    helper = HelperAlone(log, wrapper=wrapper, launcher_exits=False)
    try:
        helper.out.send(b"outsider partial")
        wait_read(helper.out)
        [outer_pid] = helpers_of(log)  # helper.pid is its pid inside the namespace
        subprocess.run(
            [
                "nsenter",
                "-t",
                str(outer_pid),
                "--pid",
                "--",
                sys.executable,
                "-c",
                f"import socket; socket.socket(fileno={helper.out.fileno()}).send(b'insider line\\n')",
            ],
            pass_fds=[helper.out.fileno()],
            capture_output=True,
            timeout=30,
            check=True,
        )
        helper.out.send(b" end\n")
        said = helper.close()
    finally:
        helper.launcher.kill()
        helper.launcher.wait()
    records, bad = parse(log.read_bytes())
    lines = lines_by_writer(records)
    insider_pid = [pid for pid, stream in lines if stream == "out" and pid != 0]
    assert b"EXIT eof" in said and bad == []
    assert [text for text, _ in lines[(0, "out")]] == [b"outsider partial end"], lines
    assert [text for text, _ in lines[(insider_pid[0], "out")]] == [b"insider line"], lines
    assert any(b"outside this helper's pid namespace" in r.payload for r in records)


def test_lines_up_to_32_kib_from_racing_threads_stay_whole(tmp_path):
    """Case 6: one write(2) into the socket is queued as buffers of at most 36,544 bytes here
    (3,776 in the buffer's head plus 32 KiB of pages, on 4 KiB pages; measured by racing a
    thread's small writes against growing writes: 36,544 always whole, 36,545 torn in a few
    of 200 with the stock SO_SNDBUF of 212992 and with 4 MiB) and a racing thread's write can
    land between two buffers.  Both carry the same pid, so the helper cannot tell them apart.
    Up to 32 KiB per write(2) is promised: two threads of one process write 100 lines of
    32,768 bytes each through fd 1 with a stock socket buffer, a third writes short lines
    meanwhile; every line arrives whole."""
    log = tmp_path / "threads.log"
    run_python(f"""
        import os, socket, threading, skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        channel = socket.socket(fileno=os.dup(1))
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 212992 // 2)  # the kernel doubles it
        assert channel.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 212992
        done = threading.Event()

        def big(letter):
            line = letter * 32767 + b"\\n"
            for _ in range(100):
                assert os.write(1, line) == len(line)

        def small():
            while not done.is_set():
                os.write(1, b"short\\n")

        threads = [threading.Thread(target=big, args=(c,)) for c in (b"a", b"b")]
        chatter = threading.Thread(target=small)
        chatter.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        chatter.join()
        skyrl_fdlog.restore()
    """)
    records, bad = parse(log.read_bytes())
    [lines] = [texts for (_, stream), texts in lines_by_writer(records).items() if stream == "out"]
    texts = [text for text, _ in lines]
    assert bad == []
    assert texts.count(b"a" * 32767) == 100 and texts.count(b"b" * 32767) == 100
    assert set(texts) == {b"a" * 32767, b"b" * 32767, b"short"}


def test_o_nonblock_set_by_one_child_fails_no_other_writer(tmp_path):
    """Case 1: with the stock socket buffer (SO_SNDBUF 212992) the helper is held up (SIGSTOP)
    while `seq 1 200000` and a Python child writing 100,000 lines through sys.stdout.buffer
    burst into the channel and block on it; meanwhile a third child sets O_NONBLOCK on fd 1
    (os.set_blocking(1, False)) and exits.  When the helper goes on, the writers used to get
    EAGAIN once the buffer filled again (seq died of "write error", Python lost lines).  The
    actor's guard clears the flag within 10 ms and says so in the log: both writers exit 0 and
    every line is in the log."""
    log = tmp_path / "nonblock.log"
    python_writer = "import sys\nfor i in range(100000):\n    sys.stdout.buffer.write(b'py %d\\n' % i)\n"
    result = run_python(
        f"""
        import json, os, signal, socket, subprocess, sys, time, skyrl_fdlog
        helper = skyrl_fdlog.redirect({str(log)!r}).helper_pid
        for fd in (1, 2):
            channel = socket.socket(fileno=os.dup(fd))
            channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 212992 // 2)
            channel.close()
        os.kill(helper, signal.SIGSTOP)
        writers = [subprocess.Popen(["seq", "1", "200000"], stderr=open("seq.err", "wb")),
                   subprocess.Popen([sys.executable, "-c", {python_writer!r}],
                                    stderr=open("py.err", "wb"))]
        time.sleep(0.5)  # both blocked on the full channel
        subprocess.run([sys.executable, "-c", "import os; os.set_blocking(1, False)"], check=True)
        time.sleep(0.3)
        os.kill(helper, signal.SIGCONT)
        codes = [writer.wait(timeout=120) for writer in writers]
        skyrl_fdlog.restore()
        print(json.dumps(codes))
    """.replace('"seq.err"', repr(str(tmp_path / "seq.err"))).replace(
            '"py.err"', repr(str(tmp_path / "py.err"))
        )
    )
    codes = json.loads(result.stdout)
    records, bad = parse(log.read_bytes())
    out = [r.payload for r in records if r.stream == "out"]
    seq = [line for line in out if line.isdigit()]
    py = [line for line in out if line.startswith(b"py ")]
    notes = [r.payload for r in records if b"O_NONBLOCK" in r.payload]
    print(
        f"\nMEASURED O_NONBLOCK: exit codes {codes}, seq {len(seq)} of 200000, python "
        f"{len(py)} of 100000; {(tmp_path / 'seq.err').read_bytes()[:200]!r}"
    )
    assert codes == [0, 0] and bad == []
    assert seq == [b"%d" % i for i in range(1, 200001)]
    assert py == [b"py %d" % i for i in range(100000)]
    assert notes, "the guard did not say it cleared the flag"


def test_a_helper_adopted_by_a_ray_subreaper_says_so(tmp_path):
    """Suspected, Ray: with RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper=true
    the raylet is a child subreaper that kills, about every 10 s, the children it did not
    start (Ray 2.60's raylet: "Set this process as subreaper. Will kill unknown children every
    10 seconds."); the helper, orphaned on purpose, is one.  It cannot avoid that, so it says
    so in a note.  Here a plain process stands in for the raylet: it makes itself a child
    subreaper (prctl) and runs the actor with the variable set."""
    log = tmp_path / "subreaper.log"
    actor = f"import skyrl_fdlog; skyrl_fdlog.redirect({str(log)!r}); print('hello')"
    run_python(f"""
        import ctypes, os, subprocess, sys
        assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
        env = dict(os.environ, RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper="true")
        subprocess.run([sys.executable, "-c", {actor!r}], env=env, check=True)
        while True:  # reap the adopted helper once it is done
            try:
                os.wait()
            except ChildProcessError:
                break
        print(os.getpid())
    """)
    records, bad = parse(log.read_bytes())
    notes = [r.payload for r in records if r.stream == "fdlog"]
    assert bad == [] and [r.payload for r in records if r.stream == "out"] == [b"hello"]
    assert any(b"a child subreaper" in n and b"RAY_kill_child_processes" in n for n in notes), notes
