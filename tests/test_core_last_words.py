"""Last words: a redirected process that dies of a fatal signal gets its last 20 lines, of
all its processes, printed once to its original stderr with the log's path; an orderly end
prints none.  Real processes, real signals."""

from __future__ import annotations

import pytest

from conftest import run_python

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


@pytest.mark.parametrize("death, signal_name", [
    ("os.abort()", "Aborted"),
    ("ctypes.string_at(0)", "Segmentation fault"),
])
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
    last = lines[start + 1:]
    assert all(line.startswith("Engine[") for line in last), last
    texts = [line.split("] ", 1)[1] for line in last]
    assert "NCCL communicator for rank 3 was aborted" in texts  # the child's line
    assert "step 29 loss 0.5" in texts
    assert f"Fatal Python error: {signal_name}" in texts  # faulthandler still reports
    assert len(texts) == len(lines) - start - 1 <= 40  # 20 before the signal, 20 after
    assert f"Fatal Python error: {signal_name}".encode() in log.read_bytes()


@pytest.mark.parametrize("end", ["skyrl_fdlog.restore()", "sys.exit(0)", "os._exit(0)",
                                 "os.kill(os.getpid(), 9)"])
def test_an_orderly_end_or_a_kill_prints_no_last_words(tmp_path, end):
    """restore(), exit and a SIGKILL (Ray's kill, the OOM killer: the process cannot tell
    them apart, and Ray's ray.kill is an orderly end) print nothing."""
    log = tmp_path / "infra.log"
    result = run_python(CAUSE.format(log=str(log), death=end), check=False)
    assert result.stderr == b"", result.stderr
    assert b"step 29 loss 0.5" in log.read_bytes()


def test_surface_off_prints_no_last_words(tmp_path):
    log = tmp_path / "infra.log"
    result = run_python(CAUSE.format(log=str(log), death="os.abort()"), check=False,
                        env={"SKYRL_FDLOG_SURFACE": "off"})
    assert result.returncode < 0 and result.stderr == b""
