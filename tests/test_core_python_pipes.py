"""The actor's own Python output goes through pipes of its own (skyrl_fdlog/_python_pipes.py):
lines stay whole and attributed, children and forks still write under their own pid, and
nothing breaks for stream objects kept across restore()."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_python, wait_for
from records import lines_by_writer, parse
from skyrl_fdlog._redirect import helper_executable

# Prints half a line, sets `seen` to whether it reached the log before the rest follows.
PRINT_A_PARTIAL_LINE = """print("partial", end="")
        time.sleep(0.6)
        with open({log!r}, "rb") as log:
            seen = b"partial" in log.read()
        print(" rest")"""


def lines_of(log_file) -> dict[tuple[int, str], list[bytes]]:
    records, bad = parse(log_file.read_bytes())
    assert bad == []
    return {key: [text for text, _ in lines] for key, lines in lines_by_writer(records).items()}


def test_python_output_goes_through_the_pipes_under_the_actors_pid(log_file):
    """sys.stdout and sys.stderr are replaced while redirected, answer fileno() 1 and 2 (their
    buffer and raw file too), and their lines land whole under the actor's pid; restore()
    puts the originals back."""
    result = run_python(f"""
        import io, os, sys, skyrl_fdlog
        original = sys.stdout, sys.stderr
        skyrl_fdlog.redirect({str(log_file)!r})
        replaced = (type(sys.stdout).__name__, sys.stdout.fileno(), sys.stderr.fileno(),
                    sys.stdout.buffer.fileno() == 1 and
                    getattr(sys.stdout.buffer, "raw", sys.stdout.buffer).fileno() == 1)
        print("to out", os.getpid())
        print("to err", file=sys.stderr)
        skyrl_fdlog.restore()
        print(replaced, (sys.stdout, sys.stderr) == original)
    """)
    assert result.stdout.decode().strip() == "('PipedStream', 1, 2, True) True"
    pid = next(iter(lines_of(log_file)))[0]
    assert lines_of(log_file) == {(pid, "out"): [f"to out {pid}".encode()], (pid, "err"): [b"to err"]}


@pytest.mark.parametrize("value, replaced", [("0", False), ("no", False), ("1", True)])
def test_the_variable_turns_the_pipes_off(log_file, value, replaced):
    """SKYRL_FDLOG_PYTHON_PIPES=0 leaves sys.stdout as it is (one channel, exact order)."""
    result = run_python(
        f"""
        import sys, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        kind = type(sys.stdout).__name__
        print("a line")
        skyrl_fdlog.restore()
        print(kind)
    """,
        env={"SKYRL_FDLOG_PYTHON_PIPES": value},
    )
    assert result.stdout.decode().strip() == ("PipedStream" if replaced else "TextIOWrapper")
    assert [lines for lines in lines_of(log_file).values()] == [[b"a line"]]


def test_a_bad_value_of_the_variable_is_named(log_file):
    result = run_python(
        f"""
        import skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
    """,
        env={"SKYRL_FDLOG_PYTHON_PIPES": "maybe"},
        check=False,
    )
    assert result.returncode != 0
    assert b"SKYRL_FDLOG_PYTHON_PIPES must be 1 or 0" in result.stderr
    assert b"'maybe'" in result.stderr


def test_a_stream_replaced_by_someone_else_is_left_alone(log_file):
    """A sys.stdout that is not the plain stream on fd 1 (pytest's capture, a notebook) keeps
    going where it went; sys.stderr, still plain, is replaced."""
    result = run_python(f"""
        import io, sys, skyrl_fdlog
        mine = sys.stdout = io.StringIO()
        skyrl_fdlog.redirect({str(log_file)!r})
        print("kept in memory")
        kinds = type(sys.stdout).__name__, type(sys.stderr).__name__
        skyrl_fdlog.restore()
        sys.stdout = sys.__stdout__
        print(kinds, sys.stdout is sys.__stdout__, mine.getvalue().strip())
    """)
    assert result.stdout.decode().strip() == "('StringIO', 'PipedStream') True kept in memory"
    assert b"kept in memory" not in log_file.read_bytes()


def test_a_wrapper_around_sys_stdout_keeps_wrapping(log_file):
    """Ray's workers wrap sys.stdout in an object that flushes after every write: the stream
    inside is replaced, the wrapper stays (so a partial line still leaves at once), and
    restore() puts the inner stream back."""
    result = run_python(f"""
        import sys, time, skyrl_fdlog

        class Unbuffered:  # the shape of ray._private.utils.Unbuffered
            def __init__(self, stream):
                self.stream = stream
            def write(self, data):
                self.stream.write(data)
                self.stream.flush()
            def __getattr__(self, attr):
                return getattr(self.stream, attr)

        inner = sys.stdout
        sys.stdout = Unbuffered(inner)
        skyrl_fdlog.redirect({str(log_file)!r}, idle_flush=0.1)
        kinds = type(sys.stdout).__name__, type(sys.stdout.stream).__name__
        {PRINT_A_PARTIAL_LINE.format(log=str(log_file))}
        skyrl_fdlog.restore()
        print(kinds, seen, sys.stdout.stream is inner)
    """)
    assert result.stdout.decode().strip() == "('Unbuffered', 'PipedStream') True True"
    assert [lines for lines in lines_of(log_file).values()] == [[b"partial rest"]]


def test_forks_and_children_write_under_their_own_pid(log_file):
    """A forked child's inherited sys.stdout, multiprocessing's fork, and a subprocess given
    stdout=sys.stdout or sys.stdout.buffer all write through the socket: each line carries the
    writer's pid."""
    run_python(f"""
        import multiprocessing, os, subprocess, sys, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        print("actor", os.getpid())
        pid = os.fork()
        if pid == 0:
            print("forked", os.getpid())
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        def work():
            print("pool", os.getpid(), flush=True)
        process = multiprocessing.get_context("fork").Process(target=work)
        process.start(); process.join()
        subprocess.run([sys.executable, "-c", "import os; print('spawned', os.getpid())"],
                       stdout=sys.stdout, stderr=sys.stderr, check=True)
        subprocess.run([sys.executable, "-c", "import os; print('binary', os.getpid())"],
                       stdout=sys.stdout.buffer, check=True)
        skyrl_fdlog.restore()
    """)
    roles = {}
    for (pid, stream), lines in lines_of(log_file).items():
        if stream == "err":
            continue  # Python 3.12+ warns that fork() in a process with threads may deadlock
        for line in lines:
            role, claimed = line.split()
            assert int(claimed) == pid, f"{role} line of pid {claimed} attributed to {pid}"
            roles[role.decode()] = pid
    assert sorted(roles) == ["actor", "binary", "forked", "pool", "spawned"]
    assert len(set(roles.values())) == 5


def test_stream_objects_kept_across_restore_keep_working(log_file):
    """A logging handler made while redirected holds the replacement stream: after restore()
    it writes to the original stdout, and five redirect/restore cycles hold no more fds
    than one."""
    result = run_python(f"""
        import logging, os, sys, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        handler = logging.StreamHandler(sys.stdout)
        log = logging.getLogger("kept"); log.addHandler(handler); log.propagate = False
        log.warning("while redirected")
        skyrl_fdlog.restore()
        log.warning("after restore")
        after_one = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            skyrl_fdlog.redirect({str(log_file)!r})
            print("cycle")
            skyrl_fdlog.restore()
        log.warning("after the cycles")
        print(after_one, len(os.listdir("/proc/self/fd")))
    """)
    printed = result.stdout.decode().splitlines()
    assert printed[:2] == ["after restore", "after the cycles"] and result.stderr == b""
    after_one, after_six = printed[2].split()
    assert after_one == after_six, "fds grow with each redirect/restore cycle"
    texts = [line for lines in lines_of(log_file).values() for line in lines]
    assert texts == [b"while redirected"] + [b"cycle"] * 5


def test_stream_objects_follow_a_switch_to_another_path(tmp_path):
    """A handler made while the log was A writes into B after redirect(B), then to the original
    stdout after restore(); four switches hold no more fds than one."""
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    result = run_python(f"""
        import logging, os, sys, skyrl_fdlog
        skyrl_fdlog.redirect({str(first)!r})
        handler = logging.StreamHandler(sys.stderr)
        log = logging.getLogger("kept"); log.addHandler(handler); log.propagate = False
        log.warning("into a")
        skyrl_fdlog.redirect({str(second)!r})
        log.warning("into b")
        fds = [len(os.listdir("/proc/self/fd"))]
        for path in [{str(first)!r}, {str(second)!r}] * 2:
            skyrl_fdlog.redirect(path)
            fds.append(len(os.listdir("/proc/self/fd")))
        skyrl_fdlog.restore()
        log.warning("to the terminal")
        print(fds[0] == fds[-1], fds)
    """)
    assert result.stdout.decode().startswith("True"), result.stdout
    assert result.stderr.decode() == "to the terminal\n"

    def texts(path: Path) -> list[bytes]:
        return [line for lines in lines_of(path).values() for line in lines]

    assert texts(first) == [b"into a"]
    assert texts(second) == [b"into b"]


def test_a_failed_redirect_leaves_kept_streams_alone(tmp_path):
    """After restore(), a redirect() that fails (no helper can start) must not close the fd a
    kept handler writes to: its lines still reach the original stderr, never a file the user
    opens next."""
    result = run_python(f"""
        import logging, os, sys, skyrl_fdlog
        skyrl_fdlog.redirect({str(tmp_path / "a.log")!r})
        handler = logging.StreamHandler(sys.stderr)
        log = logging.getLogger("kept"); log.addHandler(handler); log.propagate = False
        skyrl_fdlog.restore()
        os.environ["SKYRL_FDLOG_HELPER"] = "/nonexistent/skyrl-fdlog-helper"
        try:
            skyrl_fdlog.redirect({str(tmp_path / "b.log")!r})
        except OSError as error:
            print("refused:", type(error).__name__)
        user = open({str(tmp_path / "user.txt")!r}, "w")
        log.warning("still to stderr")
        user.close()
    """)
    assert result.stdout.decode().strip() == "refused: FdlogError"
    assert result.stderr.decode() == "still to stderr\n"
    assert (tmp_path / "user.txt").read_text() == ""


def test_with_no_helper_left_what_was_queued_is_written_directly(tmp_path):
    """The helper is stopped while lines queue in the pipe and the socket, then killed, and no
    new helper can start: the watchdog appends what was queued, says so, and later lines go
    straight to the file."""
    helper = tmp_path / "helper"
    helper.write_bytes(Path(helper_executable()).read_bytes())
    helper.chmod(0o755)
    log = tmp_path / "infra.log"
    run_python(
        f"""
        import os, signal, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log)!r})
        os.kill(r.helper_pid, signal.SIGSTOP)
        print("python line while stopped")
        os.write(1, b"fd line while stopped\\n")
        os.remove({str(helper)!r})
        os.kill(r.helper_pid, signal.SIGKILL)
        deadline = time.time() + 10
        while b"directly" not in open({str(log)!r}, "rb").read():
            assert time.time() < deadline, "no fallback"
            time.sleep(0.05)
        print("python line after")
        os.write(1, b"fd line after\\n")
        skyrl_fdlog.restore()
    """,
        env={"SKYRL_FDLOG_HELPER": str(helper)},
    )
    text = log.read_bytes()
    for line in (
        b"python line while stopped\n",
        b"fd line while stopped\n",
        b"python line after\n",
        b"fd line after\n",
    ):
        assert line in text, (line, text)
    assert b"no log helper could be started" in text


def test_unbuffered_python_stays_unbuffered(log_file):
    """With PYTHONUNBUFFERED=1 a partial print reaches the helper at once (idle flush)."""
    run_python(
        f"""
        import sys, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, idle_flush=0.1)
        {PRINT_A_PARTIAL_LINE.format(log=str(log_file))}
        skyrl_fdlog.restore()
        assert seen, "the unbuffered partial line did not reach the helper"
    """,
        env={"PYTHONUNBUFFERED": "1"},
    )
    assert [lines for lines in lines_of(log_file).values()] == [[b"partial rest"]]


def test_python_and_c_output_of_one_actor_stay_whole_when_they_race(log_file):
    """Two threads of one actor write long lines at once, one through print (the pipe), one
    through os.write(1) in pieces (the socket): no line mixes bytes of both, none is lost."""
    run_python(f"""
        import os, threading, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        def python_lines():
            for i in range(300):
                print("P" * (1000 + 37 * i))
        def fd_lines():
            for i in range(300):
                data = b"F" * (1000 + 37 * i) + b"\\n"
                for start in range(0, len(data), 1500):
                    os.write(1, data[start:start + 1500])
        threads = [threading.Thread(target=python_lines), threading.Thread(target=fd_lines)]
        for t in threads: t.start()
        for t in threads: t.join()
        skyrl_fdlog.restore()
    """)
    (lines,) = lines_of(log_file).values()
    assert all(set(line) in ({ord("P")}, {ord("F")}, set()) for line in lines)
    expected = sum(1000 + 37 * i for i in range(300))
    assert sum(len(line) for line in lines if line[:1] == b"P") == expected
    assert sum(len(line) for line in lines if line[:1] == b"F") == expected


def test_a_crash_loses_no_python_line(log_file):
    """Lines printed before os.abort() are in the log: the pipe is the kernel's, not ours."""
    result = run_python(
        f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        for i in range(1000):
            print("line", i)
        os.abort()
    """,
        check=False,
    )
    assert result.returncode != 0
    wait_for(lambda: b"line 999\n" in log_file.read_bytes())
    (lines,) = lines_of(log_file).values()
    assert lines == [f"line {i}".encode() for i in range(1000)]
