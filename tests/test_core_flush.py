"""skyrl_fdlog.flush(): a barrier for everything written before it, by every process."""

from __future__ import annotations

from conftest import run_python
from records import parse


def test_after_flush_every_writer_is_in_the_file(log_file):
    """The actor's print and os.write, a child that is still running, C stdio and an unfinished
    line: 200 rounds, each read back right after flush() returns."""
    result = run_python(
        f"""
        import ctypes, os, subprocess, sys, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, name="Engine")
        libc = ctypes.CDLL(None)
        child = subprocess.Popen([sys.executable, "-c",
            "import sys\\nfor line in sys.stdin: print('child', line.strip(), flush=True)"],
            stdin=subprocess.PIPE, text=True)
        missing = []
        for i in range(200):
            print(f"print {{i}}")
            os.write(2, f"fd2 {{i}}\\n".encode())
            libc.printf(f"c {{i}}\\n".encode()); libc.fflush(None)
            child.stdin.write(f"{{i}}\\n"); child.stdin.flush()
            print(f"partial {{i}}", end="")
            # the child writes after reading: wait until it has (its reply is a write that
            # returned before flush() is called, like any writer's)
            while f"child {{i}}".encode() not in open({str(log_file)!r}, "rb").read():
                pass
            assert skyrl_fdlog.flush(timeout=10)
            text = open({str(log_file)!r}, "rb").read()
            for expected in (f"print {{i}}", f"fd2 {{i}}", f"c {{i}}", f"partial {{i}}"):
                if expected.encode() not in text:
                    missing.append(expected)
            print()
        child.stdin.close(); child.wait()
        skyrl_fdlog.restore()
        os.write(1, repr(missing).encode())
    """,
        timeout=300,
    )
    assert result.stdout == b"[]"
    records, bad = parse(log_file.read_bytes())
    assert bad == []


def test_flush_is_true_without_a_redirection_and_false_when_the_log_cannot_keep_up(log_file):
    result = run_python(f"""
        import os, signal, time, skyrl_fdlog
        assert skyrl_fdlog.flush() is True            # nothing redirected
        r = skyrl_fdlog.redirect({str(log_file)!r})
        os.kill(r.helper_pid, signal.SIGSTOP)         # a helper that does not answer
        print("held")
        started = time.monotonic()
        answered = skyrl_fdlog.flush(timeout=0.5)
        took = time.monotonic() - started
        os.kill(r.helper_pid, signal.SIGCONT)
        assert skyrl_fdlog.flush(timeout=10) is True
        text = open({str(log_file)!r}, "rb").read()
        skyrl_fdlog.restore()
        os.write(1, f"{{answered}} {{took:.2f}} {{b'held' in text}}".encode())
    """)
    answered, took, landed = result.stdout.decode().split()
    assert answered == "False" and 0.5 <= float(took) < 3 and landed == "True"
