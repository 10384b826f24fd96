"""Error lines to the terminal: the helper copies records of level error or graver (one
table, skyrl_fdlog/levels.json; a traceback whole) to the process's original stderr,
attributed NAME[PID] and rate limited, and nothing else.  Real processes, real fds."""

from __future__ import annotations

import pytest

from conftest import run_python


def _run(log, body: str, env: dict | None = None, surface_argument: str = ""):
    return run_python(
        f"""
import os, subprocess, sys, traceback
import skyrl_fdlog
r = skyrl_fdlog.redirect({str(log)!r}, name="Engine"{surface_argument})
{body}
skyrl_fdlog.restore()
""",
        env=env,
    )


CAUSE = """
for i in range(50):
    print(f"INFO 11-27 02:47:06 [loader.py:1] loading /data/error_cases_{i}.parquet", flush=True)
    print(f"WARNING 11-27 02:47:06 [config.py:1] casting {i}", flush=True)
child = subprocess.run([sys.executable, "-c",
    "import os; os.write(2, b'EngineCore: CUDA out of memory. Tried to allocate 2 GiB\\\\n')"])
os.write(1, b"node-1:1:2 [0] NCCL WARN Cuda failure 'out of memory'\\n")
try:
    raise RuntimeError("Engine core initialization failed")
except RuntimeError:
    traceback.print_exc()
print("step 1 loss 0.5", flush=True)
print("child", child.returncode, file=sys.__stdout__ if False else sys.stdout)
"""


def test_error_lines_reach_the_original_stderr_attributed_and_nothing_else(tmp_path):
    """100 INFO and WARNING lines leave nothing on the terminal; the child's CUDA line, the
    NCCL WARN and the whole traceback come out on the original stderr, each as NAME[PID],
    after one line naming the log."""
    log = tmp_path / "infra.log"
    result = _run(log, CAUSE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    shown = result.stderr.decode().splitlines()
    assert shown[0] == f"skyrl_fdlog: error lines of Engine follow; all its output is in {log}"
    body = [line.split("] ", 1) for line in shown[1:]]
    assert all(prefix.startswith("Engine[") for prefix, _ in body), shown
    texts = [text for _, text in body]
    # Order holds per channel only: the child's line came on fd 2, the NCCL line on fd 1, and
    # Python's own output through a pipe of its own, so neither pair is ordered.
    fd_level = [
        "EngineCore: CUDA out of memory. Tried to allocate 2 GiB",
        "node-1:1:2 [0] NCCL WARN Cuda failure 'out of memory'",
    ]
    assert sorted(text for text in texts if text in fd_level) == sorted(fd_level)
    python = [text for text in texts if text not in fd_level]
    assert python[0] == "Traceback (most recent call last):"
    assert python[1].startswith('  File "<string>", line ')
    assert python[-1] == "RuntimeError: Engine core initialization failed"
    # Python 3.13 also shows the source line of code run with -c; earlier versions do not.
    assert len(python) in (3, 4) and all(text.startswith("  ") for text in python[1:-1]), python
    pids = {prefix for prefix, _ in body}
    assert len(pids) == 2  # the child's own pid, and the process's for the rest
    assert "INFO" not in result.stderr.decode() and b"casting" not in result.stderr
    assert log.read_bytes().count(b"casting") == 50  # the log has everything


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_surface_off_leaves_the_terminal_clean(tmp_path, how):
    log = tmp_path / "infra.log"
    if how == "argument":
        result = _run(log, CAUSE, surface_argument=', surface="off"')
    else:
        result = _run(log, CAUSE, env={"SKYRL_FDLOG_SURFACE": "off"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"" and result.stdout == b""
    assert b"CUDA out of memory" in log.read_bytes()


def test_a_flood_of_errors_prints_a_count_not_a_flood(tmp_path):
    log = tmp_path / "infra.log"
    result = _run(
        log,
        """
for i in range(5000):
    os.write(2, f"ERROR:root:failure {i}\\n".encode())
""",
    )
    assert result.returncode == 0, result.stderr
    shown = result.stderr.decode().splitlines()
    assert len(shown) == 1 + 40 + 1, shown[:3]
    assert shown[-1] == (
        f"skyrl_fdlog: Engine: 4960 more error lines not shown here (at most 40 "
        f"per 10 s); every line is in {log}"
    )
    assert log.read_bytes().count(b"ERROR:root:failure") == 5000


def test_a_bad_surface_value_is_refused_naming_it(tmp_path):
    result = run_python(f"""
import skyrl_fdlog
for how in ("argument", "environment"):
    try:
        if how == "argument":
            skyrl_fdlog.redirect({str(tmp_path / "a.log")!r}, surface="errors")
        else:
            import os; os.environ["SKYRL_FDLOG_SURFACE"] = "loud"
            skyrl_fdlog.redirect({str(tmp_path / "a.log")!r})
    except ValueError as exc:
        print(exc)
""")
    assert result.stdout.decode().splitlines() == [
        "surface must be one of 'error', 'off', got 'errors'",
        "SKYRL_FDLOG_SURFACE must be one of error, off, got 'loud'; unset it for the default (error)",
    ]


def test_a_stalled_terminal_does_not_stall_the_log(tmp_path):
    """The original stderr is a pipe that nobody reads, already full: error lines cannot be
    copied there, and the log still gets every line at once (the helper never blocks on
    it)."""
    log = tmp_path / "infra.log"
    result = run_python(f"""
import fcntl, os, time
import skyrl_fdlog
read, write = os.pipe()
flags = fcntl.fcntl(write, fcntl.F_GETFL)
fcntl.fcntl(write, fcntl.F_SETFL, flags | os.O_NONBLOCK)
try:
    while True:
        os.write(write, b"x" * 4096)
except BlockingIOError:
    pass
fcntl.fcntl(write, fcntl.F_SETFL, flags)
os.dup2(write, 2)
skyrl_fdlog.redirect({str(log)!r}, name="Engine")
for i in range(100):
    os.write(1, f"ERROR:root:failure {{i}}\\n".encode())
start = time.monotonic()
ok = skyrl_fdlog.flush(timeout=5)
print(ok, time.monotonic() - start < 4, file=open({str(tmp_path / "out")!r}, "w"))
skyrl_fdlog.restore()
""")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out").read_text().split() == ["True", "True"]
    assert log.read_bytes().count(b"ERROR:root:failure") == 100
