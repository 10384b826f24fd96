"""Micro-benchmarks of the helper's parts, with pytest-benchmark (`make bench-micro`).

    make bench-micro                  # compare with the saved baseline, margin MICRO_MARGIN (%)
    make bench-micro MICRO_SAVE=1     # measure and save a new baseline in benchmarks/micro/baseline

Measurements, not tests: kept out of `make test` and CI (the file names do not match
test_*.py, and tests/ is the only test path).  The assembler, record formatting and level
classification run the helper's own C (csrc/shared) through driver.c in loops of thousands
of lines; the writer path runs the real helper program with a pipe as the actor's Python
channel and a file as the log, from the first byte written to the helper's exit.
Per-line costs are in each benchmark's extra_info (and in the saved JSON).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

LINE_COUNT = 8192  # lines per timed call of the C loops
PR_SET_CHILD_SUBREAPER = 36


def lines(size: int, count: int) -> bytes:
    """`count` lines of `size` bytes, newline included, as a print() loop writes them."""
    return b"".join(f"{i:09d} ".encode().ljust(size - 1, b"x") + b"\n" for i in range(count))


def per_line(benchmark: Any, count: int) -> None:
    benchmark.extra_info["lines_per_call"] = count
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["ns_per_line_median"] = stats.stats.median / count * 1e9


# ---------------------------------------------------------------- the assembler


@pytest.mark.parametrize(
    ("size", "lines_per_read", "writers"),
    [(120, 1, 1), (120, 32, 1), (120, 1, 16), (8192, 1, 1)],
    ids=["120B-1line-per-read", "120B-32lines-per-read", "120B-16writers-interleaved", "8KiB-1line-per-read"],
)
def test_assembler_feed(
    benchmark: Any, micro_lib: ctypes.CDLL, size: int, lines_per_read: int, writers: int
) -> None:
    """fdl_assembler_feed: lines into records of at most PIPE_BUF (an 8 KiB line is three)."""
    count = LINE_COUNT if size < 1024 else LINE_COUNT // 16
    data = lines(size, count)
    benchmark.group = "assembler feed"
    made = benchmark(micro_lib.micro_assemble, data, len(data), size * lines_per_read, writers, 1)
    assert made > len(data), "every byte comes out in a record, with its prefix"
    per_line(benchmark, count)


# ---------------------------------------------------------------- record formatting


@pytest.mark.parametrize("payload", [119, 3840], ids=["120B", "3840B"])
def test_record_format(benchmark: Any, micro_lib: ctypes.CDLL, payload: int) -> None:
    """fdl_format_record: prefix (time, cached label) and payload into one record."""
    benchmark.group = "record format"
    made = benchmark(micro_lib.micro_format, LINE_COUNT, payload)
    assert made > LINE_COUNT * payload
    per_line(benchmark, LINE_COUNT)


# ---------------------------------------------------------------- level classification

LEVEL_SAMPLE = b"".join(
    [
        b"step 1200 loss 0.731 reward 0.42 kl 0.013\n",
        b"INFO 11-27 02:47:06 [engine.py:312] Added request chatcmpl-1234.\n",
        b"\x1b[33mWARNING\x1b[0m 11-27 02:47:06 [config.py:88] Casting torch.bfloat16 to float16.\n",
        b"2026-11-27 02:47:06,123 ERROR worker.py:77 -- Task failed\n",
        b"Traceback (most recent call last):\n",
        b'  File "/app/train.py", line 10, in <module>\n',
        b"ValueError: bad shape (3, 4)\n",
        b"(RayTrainWorker pid=4242) Epoch 3: 100%|##########| 200/200 [00:31<00:00]\n",
    ]
)


def test_level_of(benchmark: Any, micro_lib: ctypes.CDLL) -> None:
    """fdl_level_of over a mix of plain, vLLM, logging and traceback lines."""
    data = LEVEL_SAMPLE * (LINE_COUNT // 8)
    benchmark.group = "level classification"
    total = benchmark(micro_lib.micro_levels, data, len(data), 1)
    assert total > 0, "the level table compiled and found levels"
    per_line(benchmark, LINE_COUNT)


# ---------------------------------------------------------------- the writer path


class Helper:
    """The helper program with a pipe as the owner's stdout channel and `log` as the log.

    The fds are the helper's calling convention (csrc/helper/helper.c): 3 the log, 4 and 5
    the socket channels (closed at once here), 6 the status pipe, 7 and 8 the owner's pipes."""

    def __init__(self, program: str, log: Path, lock: bool = False) -> None:
        log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        for _, writing in pairs:
            writing.close()  # EOF on the socket channels: only the pipe carries lines
        handed = [log_fd, pairs[0][0].fileno(), pairs[1][0].fileno(), status_w, out_r, err_r]
        # above every target number first, so no dup2 overwrites a source still to be copied
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in handed]
        actions = [(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, fd in enumerate(high)]
        args = [
            "skyrl-fdlog-helper",
            "name=bench",
            "node=node-0",
            f"path={log}",
            "raw=0",
            f"lock={int(lock)}",
            "idle_ms=1000",
            "snapshot_ms=5000",
            "gather_us=300",
            f"buffer_bytes={4 << 20}",
            "max_bytes=0",
            "restarted_after=0",
            f"owner={os.getpid()}",
            "surface=0",
        ]
        # The helper detaches (the spawned process forks it and exits); as our subreaper
        # adoptee it can still be waited for, which gives its CPU time.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        os.waitpid(os.posix_spawn(program, args, dict(os.environ), file_actions=actions), 0)
        for fd in [log_fd, status_w, out_r, err_r, err_w] + high:
            os.close(fd)
        for reading, _ in pairs:
            reading.close()
        self.status, self.out = status_r, out_w
        self.pid = int(self.read_until(b"\n").split()[1])  # "READY <pid>"
        self.cpu_seconds = 0.0

    def read_until(self, word: bytes, timeout: float = 60.0) -> bytes:
        text = b""
        deadline = time.monotonic() + timeout
        while word not in text:
            if not select.select([self.status], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"the helper did not say {word!r} in {timeout} s: {text!r}")
            chunk = os.read(self.status, 4096)
            if not chunk:
                raise RuntimeError(f"the helper exited before saying {word!r}: {text!r}")
            text += chunk
        return text

    def write_all_and_wait(self, data: bytes, block: int) -> None:
        """Write data in pieces of `block` bytes, close the pipe, wait for the helper's exit."""
        view = memoryview(data)
        for at in range(0, len(view), block):
            piece = view[at : at + block]
            while piece:
                piece = piece[os.write(self.out, piece) :]
        os.close(self.out)
        self.read_until(b"EXIT")
        while os.read(self.status, 4096):  # EOF: the helper is gone, the log complete
            pass
        os.close(self.status)
        _, _, usage = os.wait4(self.pid, 0)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("size", [120, 8192], ids=["120B", "8KiB"])
def test_writer_path(benchmark: Any, helper_program: str, tmp_path: Path, size: int) -> None:
    """Pipe -> helper (read, assemble, format, batch) -> O_APPEND file, drain included; the
    actor's side writes one line per write(2), as line-buffered print() does."""
    count = 100_000 if size < 1024 else 4_000
    data = lines(size, count)
    log = tmp_path / "micro.log"
    benchmark.group = "writer path (helper program, pipe to file)"

    helpers: list[Helper] = []

    def start() -> tuple[tuple[Helper], dict]:
        helpers.append(Helper(helper_program, log))
        return (helpers[-1],), {}

    benchmark.pedantic(
        lambda helper: helper.write_all_and_wait(data, size), setup=start, rounds=10, iterations=1
    )
    text = log.read_bytes()
    assert text.count(b"\n") == count * (1 if size < 1024 else 3), "every line, no note"
    per_line(benchmark, count)
    # CPU time moves far less than wall time when other work shares the machine
    cpu = sorted(h.cpu_seconds / count * 1e9 for h in helpers)
    benchmark.extra_info["helper_cpu_ns_per_line_min"] = cpu[0]
    benchmark.extra_info["helper_cpu_ns_per_line_median"] = cpu[len(cpu) // 2]
