"""Many processes, each with a child sharing its fds, writing lines in pieces into one log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from records import parse
from stress_check import check_lines, check_log

pytestmark = pytest.mark.slow

WRITER = str(Path(__file__).with_name("writer_program.py"))
WRITERS = 12
LINES = 400  # per method per process: 12 actors + 12 children x 3 methods x 400 = 28,800 lines


def run_writers(log: Path, *extra: str, writers: int = WRITERS, count: int = LINES) -> bytes:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, WRITER, str(log), str(i), str(count), str(1000 * i), *extra], env=env
        )
        for i in range(writers)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    return log.read_bytes()


@pytest.fixture(scope="module")
def stress_log(tmp_path_factory) -> bytes:
    log = tmp_path_factory.mktemp("stress") / "infra.log"
    data = run_writers(log)
    # The helpers finish after their writers: wait until every line is in.
    import time

    deadline = time.monotonic() + 30
    while check_log(data, WRITERS, LINES) and time.monotonic() < deadline:
        time.sleep(0.2)
        data = log.read_bytes()
    return data


def test_every_line_once_whole_in_order_and_attributed(stress_log):
    """12 redirected processes, each with a child sharing its stream, write 1 B - 3 KB lines in
    several write(2) pieces (print with PYTHONUNBUFFERED=1, os.write in thirds, buffered C
    printf): every line arrives exactly once, intact, in per-writer order, from its own pid."""
    assert check_log(stress_log, WRITERS, LINES) == []


def test_each_actor_named_and_children_attributed_to_their_pid(stress_log):
    """Records carry the actor's name; a child's lines carry the child's pid, not the actor's."""
    records, _ = parse(stress_log)
    assert {r.name for r in records} == {f"actor{i}" for i in range(WRITERS)}
    pids_by_name = {}
    for r in records:
        pids_by_name.setdefault(r.name, set()).add(r.pid)
    assert all(len(pids) == 2 for pids in pids_by_name.values())


def test_no_record_exceeds_pipe_buf(stress_log):
    """Every record, newline included, fits one atomic write of PIPE_BUF (4096) bytes."""
    assert max(len(line) + 1 for line in stress_log.split(b"\n")) <= 4096


def test_checker_catches_deliberate_corruption(stress_log):
    """The checker is not vacuous: a torn, a lost, a duplicated, a reordered and a flipped line
    are each reported."""
    whole = stress_log.split(b"\n")
    # Two consecutive lines of one writer and method, to swap.
    tag = whole[10].split(b": ", 1)[1].split(b" ", 1)[0]
    later = next(i for i in range(11, len(whole)) if whole[i].split(b": ", 1)[-1].startswith(tag + b" "))
    swapped = list(whole)
    swapped[10], swapped[later] = swapped[later], swapped[10]
    damaged = {
        "torn": whole[:10] + [whole[10][: len(whole[10]) // 2]] + whole[11:],
        "lost": whole[:10] + whole[11:],
        "duplicated": whole[:10] + [whole[10]] + whole[10:],
        "reordered": swapped,
        "flipped": whole[:10] + [whole[10][:-3] + bytes([whole[10][-3] ^ 1]) + whole[10][-2:]] + whole[11:],
    }
    for kind, damaged_lines in damaged.items():
        assert check_log(b"\n".join(damaged_lines), WRITERS, LINES), f"{kind} went unnoticed"


def test_plain_dup2_of_an_append_file_tears_lines(tmp_path):
    """The approach skyrl_fdlog replaces (SkyRL's os.dup2 of an O_APPEND file) tears lines under
    the same load: the checker finds damage, so its silence above means something."""
    data = run_writers(tmp_path / "plain.log", "--plain-dup2", writers=4, count=300)
    problems = check_lines(data.split(b"\n")[:-1], 4, 300)
    assert any("torn" in problem for problem in problems)
