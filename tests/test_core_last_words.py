"""Last words: a redirected process that dies of a fatal signal gets its last 20 lines, of
all its processes, printed once to its original stderr with the log's path; an orderly end
prints none.  Real processes, real signals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_python, wait_for

CAUSE = """
import faulthandler, os, subprocess, sys, ctypes
import skyrl_fdlog
faulthandler.enable()  # as in a Ray worker: its report must still come, into the log
skyrl_fdlog.redirect({log!r}, name="Engine")
for i in range(30):
    print(f"step {{i}} loss 0.5", flush=True)
subprocess.run([sys.executable, "-c", "print('NCCL communicator for rank 3 was aborted')"])
{death}
"""


@pytest.mark.parametrize(
    "death, signal_name",
    [
        ("os.abort()", "Aborted"),
        ("ctypes.string_at(0)", "Segmentation fault"),
    ],
)
def test_a_fatal_signal_prints_the_last_lines_of_all_processes_once(tmp_path, death, signal_name):
    log = tmp_path / "infra.log"
    result = run_python(CAUSE.format(log=str(log), death=death), check=False)
    assert result.returncode < 0
    lines = result.stderr.decode().splitlines()
    words = [i for i, line in enumerate(lines) if "died of a fatal signal" in line]
    assert len(words) == 1, lines
    start = words[0]
    assert lines[start].startswith("skyrl_fdlog: Engine: process ")
    assert lines[start].endswith(f"(every line is in {log}):")
    last = lines[start + 1 :]
    assert all(line.startswith("Engine[") for line in last), last
    texts = [line.split("] ", 1)[1] for line in last]
    assert "NCCL communicator for rank 3 was aborted" in texts  # the child's line
    assert "step 29 loss 0.5" in texts
    assert f"Fatal Python error: {signal_name}" in texts  # faulthandler still reports
    assert len(texts) == len(lines) - start - 1 <= 40  # 20 before the signal, 20 after
    assert f"Fatal Python error: {signal_name}".encode() in log.read_bytes()


@pytest.mark.parametrize(
    "end", ["skyrl_fdlog.restore()", "sys.exit(0)", "os._exit(0)", "os.kill(os.getpid(), 9)"]
)
def test_an_orderly_end_or_a_kill_prints_no_last_words(tmp_path, end):
    """restore(), exit and a SIGKILL (Ray's kill, the OOM killer: the process cannot tell
    them apart, and Ray's ray.kill is an orderly end) print nothing."""
    log = tmp_path / "infra.log"
    result = run_python(CAUSE.format(log=str(log), death=end), check=False)
    assert result.stderr == b"", result.stderr
    assert b"step 29 loss 0.5" in log.read_bytes()


def test_surface_off_prints_no_last_words(tmp_path):
    log = tmp_path / "infra.log"
    result = run_python(
        CAUSE.format(log=str(log), death="os.abort()"), check=False, env={"SKYRL_FDLOG_SURFACE": "off"}
    )
    assert result.returncode < 0 and result.stderr == b""


def _memory_cgroup() -> Path:
    """This process's memory cgroup directory (cgroup v1's memory hierarchy, else v2)."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory" + path)
    path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    return Path("/sys/fs/cgroup" + path)


@pytest.fixture
def small_memory_cgroup():
    """A child memory cgroup of this process's own, limited to 128 MiB, so that the kernel's
    OOM killer strikes inside it and never machine-wide.  Needs root and a memory cgroup."""
    parent = _memory_cgroup()
    group = parent / f"skyrl-fdlog-oom-{os.getpid()}"
    try:
        group.mkdir()
        limit = group / "memory.limit_in_bytes"  # v1
        if limit.exists():
            limit.write_text(str(128 << 20))
        else:
            (group / "memory.max").write_text(str(128 << 20))
            (group / "memory.swap.max").write_text("0")
    except OSError as error:
        if group.exists():
            group.rmdir()
        pytest.skip(
            f"cannot make a memory cgroup under {parent} ({error}): needs root and the memory controller"
        )
    yield group
    wait_for(lambda: not (group / "cgroup.procs").read_text().strip(), timeout=30)
    group.rmdir()


OOM = """
import os, pathlib, subprocess, sys
pathlib.Path({procs!r}).write_text(str(os.getpid()))  # the helper starts inside it too
import skyrl_fdlog
skyrl_fdlog.redirect({log!r}, name="Engine")
for i in range(30):
    print(f"step {{i}} loss 0.5", flush=True)
subprocess.run([sys.executable, "-c", "print('loading 70B weights onto the host')"])
# the victim: not the helper, which was started before this
pathlib.Path("/proc/self/oom_score_adj").write_text("1000")
hog = []
while True:
    hog.append(b"x" * (8 << 20))  # written, so resident
"""


def test_a_kernel_oom_kill_prints_the_last_lines(tmp_path, small_memory_cgroup):
    """Issue 13, item 2: SIGKILL by the kernel's OOM killer leaves the process no time to say
    anything; the helper sees the OOM kill counter of its memory cgroup rise."""
    log = tmp_path / "infra.log"
    result = run_python(
        OOM.format(procs=str(small_memory_cgroup / "cgroup.procs"), log=str(log)), check=False
    )
    assert result.returncode == -9, result
    lines = result.stderr.decode().splitlines()
    words = [i for i, line in enumerate(lines) if "OOM killer" in line]
    assert len(words) == 1, lines
    assert lines[words[0]].startswith("skyrl_fdlog: Engine: process ")
    assert lines[words[0]].endswith(f"(every line is in {log}):")
    texts = [line.split("] ", 1)[1] for line in lines[words[0] + 1 :]]
    assert "loading 70B weights onto the host" in texts and "step 29 loss 0.5" in texts
    print("\n".join(lines))  # the closing note quotes what the user sees (pytest -s)


@pytest.mark.parametrize("gather_us", ["300", "200000"])
def test_the_last_error_line_of_each_process_leads_when_the_window_misses_it(tmp_path, gather_us):
    """A child's cause followed by more than 20 lines of its parent: the cause still comes,
    first, marked as that process's last error line; a line inside the window is not
    repeated.  (flush() makes the helper read the child's line before the parent's: lines
    of different channels are read in the order the helper gets to them.)

    With a long gather, the helper wakes on the parent's fd-level line, then sleeps while
    the parent prints through its Python pipe and dies: the mark and the lines come into
    one round of reads, in which the pipe was not seen ready.  The lines were written before
    the mark and must count as before it (they once counted as after it, which pushed the
    crash report out of the first 20)."""
    log = tmp_path / "infra.log"
    death = (
        "subprocess.run([sys.executable, '-c', \"import sys; print('ERROR 12-02 07:53:52 "
        "SafetensorError: Error while deserializing header', file=sys.stderr)\"])\n"
        "skyrl_fdlog.flush()\n"
        "os.write(2, b'loading the weights\\n')\n"
        "for i in range(30):\n    print(f'  File \"x.py\", line {i}', flush=True)\n"
        "print('ERROR 12-02 07:53:53 engine core failed', flush=True)\nos.abort()"
    )
    result = run_python(
        CAUSE.format(log=str(log), death=death), env={"SKYRL_FDLOG_GATHER_US": gather_us}, check=False
    )
    lines = result.stderr.decode().splitlines()
    start = next(i for i, line in enumerate(lines) if "died of a fatal signal" in line)
    assert "led by the last error line of each process that they miss" in lines[start]
    assert lines[start + 1].startswith("Engine[")
    assert lines[start + 1].endswith(
        "] (its last error line) ERROR 12-02 07:53:52 SafetensorError: Error while deserializing header"
    )
    # the parent's last error line is in the window: not repeated before it
    assert not any("(its last error line) ERROR 12-02 07:53:53" in line for line in lines)
    # before the mark: the parent's last lines ("loading the weights" came through another
    # channel, so where it sits among them depends on when the helper read it)
    window = [line.split("] ", 1)[1] for line in lines[start + 2 : start + 22]]
    printed = [text for text in window if text != "loading the weights"]
    assert printed == [f'  File "x.py", line {i}' for i in range(31 - len(printed), 30)] + [
        "ERROR 12-02 07:53:53 engine core failed"
    ]
    assert lines[start + 22].endswith("] Fatal Python error: Aborted")  # the first after it
