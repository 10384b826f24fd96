"""The one level table (skyrl_fdlog/levels.json): real lines of the tools of a training run,
lines that must not count, tracebacks as blocks, and proof that the reader and the log
helper's C classifier read the same table."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyrl_fdlog import _levels
from skyrl_fdlog.reader._message import LevelTracker, level_of

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = [
    # vLLM
    ("INFO 11-27 02:47:06 [core.py:100] model loaded", "info"),
    ("(EngineCore_DP0 pid=4388) ERROR 11-27 02:47:07 [core.py:708] EngineCore failed to start.", "error"),
    ("\x1b[1;36m(EngineCore pid=7)\x1b[0;0m \x1b[31mERROR\x1b[0m 11-27 02:47:06 [core.py:1] x", "error"),
    ("WARNING 11-27 02:47:06 [config.py:1] Casting torch.bfloat16 to torch.float16.", "warning"),
    # Ray, Python and C++
    ("2026-11-27 02:47:06,123\tERROR worker.py:409 -- Unhandled error (suppress with ...)", "error"),
    ("2026-11-27 02:47:06,123\tWARNING utils.py:1 -- x", "warning"),
    ("[2026-11-27 02:47:06,123 E 4121 4130] core_worker.cc:512: lost", "error"),
    ("[2026-11-27 02:47:06,123 C 4121 4130] x", None),
    # glog and torch's C++ logs
    ("E1127 02:47:06.123456  4121 ProcessGroupNCCL.cpp:1] Watchdog caught collective timeout", "error"),
    ("[rank0]:[E1127 02:47:06.123456789 ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught", "error"),
    ("F1127 02:47:06.123456  4121 file.cc:12] Check failed: x", "critical"),
    # NCCL
    ("node-1:4121:4130 [0] NCCL WARN Cuda failure 'out of memory'", "error"),
    ("node-1:4121:4130 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>", None),
    # Python logging
    ("ERROR:root:the reward server refused", "error"),
    ("CRITICAL:vllm:x", "critical"),
    ("WARNING:root:disk almost full", "warning"),
    # crashes
    ("Fatal Python error: Segmentation fault", "critical"),
    ("Segmentation fault (core dumped)", "error"),
    ("Aborted (core dumped)", "error"),
    ("*** SIGSEGV (@0x0) received by PID 4121 (TID 0x7f) from PID 0; stack trace: ***", "error"),
    ("terminate called after throwing an instance of 'c10::Error'", "error"),
    ("EngineCore: CUDA out of memory. Tried to allocate 2.00 GiB", "error"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB", "error"),
    # must not count
    ("INFO 11-27 02:47:06 [loader.py:1] loading /data/error_cases.parquet", "info"),
    ("INFO 11-27 02:47:06 [x.py:1] saw Segmentation fault in a test name", "info"),
    ("2026-11-27 02:47:06,123\tINFO worker.py:1 -- wrote error.log", "info"),
    ("loading /data/error_cases.parquet", None),
    ("an ERROR somewhere in the middle", None),
    ("ERRORS: 0", None),
    ("step 1 loss 0.5", None),
    ("", None),
    # the edges of the helper's gates (levels.c: a line must start like one of a pattern's
    # shapes, or hold one of its literals, before the regex runs)
    ("ERROR 11-27 02:47:06", "error"),  # ([^A-Za-z0-9_]|$) by its $
    ("ERROR 11-27 02:47:06x", None),
    ("2026-11-27 02:47:06 WARN", "warning"),
    ("2026-11-27T02:47:06.5\tFATAL: x", "critical"),
    ("E1127 02:47:06.12345 x.cc:1] y", None),  # 6 to 9 digits
    ("E1127 02:47:06.123456] y", "error"),
    ("[E1127 02:47:06.123456789 x.cc:1] y", "error"),
    ("[rank12]:W1127 02:47:06.123456 x.cc:1] y", "warning"),
    ("E112 02:47:06.123456 x.cc:1] y", None),
    ("W000 S000000001 003.003.003. E000000001", None),  # the benchmarks' lines
    ("(Worker_1 pid=7) ERROR:root:x", "error"),
    ("(Worker_1 rank=2 pid=7) INFO 11-27 02:47:06 [x.py:1] y", "info"),
    ("(Worker_1 pid=7) step 1", None),
    ("error:root:x", None),  # the regexes are case-sensitive
    ("Error:root:x", None),
    ("Warning: x", None),
    ("cuda out of memory", None),
    ("segmentation fault (core dumped)", None),
    ("fatal Python error: x", None),
    ("x Segmentation fault", "error"),  # a literal at the end
    ("Segmentation faul", None),  # shorter than the literal
    ("CUDA error: ", "error"),
    ("NCCL WARN x", None),  # its leading space is part of it
    ("x NCCL WARN ", "error"),
    ("***SIGSEGV ", None),
    ("x *** SIGABRT received", "error"),
    ("x *** SIG received", None),
    ("x terminate called after throwing an instance of 'E'", None),  # '^': at the start only
    ("x Fatal Python error: y", None),
    ("Fatal Python error: ", "critical"),
    ("\x1b[31mERROR\x1b[0m:root:x", "error"),  # colours go before the gates
    ("CUDA \x1b[1mout of\x1b[0m memory", "error"),
    ("\x1b[1mFatal Python error: x", "critical"),
    ("E", None),
    ("(", None),
    ("[", None),
]


@pytest.mark.parametrize("text, level", SAMPLES)
def test_reader_levels_of_real_lines(text, level):
    assert level_of(text) == level


TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/engine.py", line 12, in start',
    "    raise RuntimeError('Engine core initialization failed')",
    "RuntimeError: Engine core initialization failed. See root cause above.",
    "step 2 loss 0.4",
]


def test_a_traceback_is_one_block_of_level_error_per_writer():
    tracker = LevelTracker()
    other = ("n", 2, "err")
    levels = []
    for text in TRACEBACK:
        levels.append(tracker.level(text, ("n", 1, "err")))
        assert tracker.level("    indented, but another writer's", other) is None
    assert levels == ["error", "error", "error", "error", None]


def _c_levels(lines: list[str]) -> list[str | None]:
    from skyrl_fdlog._fdlog import ffi, lib

    state = ffi.new("int *")
    names = (None, *_levels.ORDER)
    found = []
    for text in lines:
        data = text.encode()
        level = lib.fdl_level_of(data, len(data), state)
        assert level >= 0, "the helper's level table did not compile"
        found.append(names[level])
    return found


def test_the_helper_classifies_every_sample_as_the_reader_does():
    """Both sides use the one table: every sample gets the same level from the C code the
    helper runs (through the extension, which links the same levels.c) and from the reader."""
    texts = [text for text, _ in SAMPLES]
    assert _c_levels(texts) == [level for _, level in SAMPLES]
    tracker = LevelTracker()
    assert _c_levels(TRACEBACK) == [tracker.level(t, ("n", 1, "err")) for t in TRACEBACK]


TRACEBACK_EDGES = [
    "(Worker pid=3) Traceback (most recent call last):",
    '(Worker pid=3)   File "/app/x.py", line 1, in f',
    "\tindented by a tab",
    "\x1b[2m  coloured\x1b[0m",
    "ValueError: x",
    "Traceback (most recent call last)",
    "x Traceback (most recent call last):",
    "Traceback (most recent call last): ",
    "",
    "Traceback (most recent call last):",
    "",
]


def test_the_helper_follows_tracebacks_as_the_reader_does():
    tracker = LevelTracker()
    assert _c_levels(TRACEBACK_EDGES) == [tracker.level(t, ("n", 1, "err")) for t in TRACEBACK_EDGES]


# Pieces of the table's formats and literals, some cut short or in another case, so that
# random lines land on every side of the gates' shapes and literals.
_PIECES = [
    "ERROR",
    "ERROR:",
    "Error",
    "WARN",
    "WARNING",
    "FATAL",
    "CRITICAL",
    "INFO",
    "DEBUG",
    "E",
    "W",
    "F",
    "1127",
    "11-27",
    "2026-11-27",
    " 02:47:06",
    ".123456",
    ",5",
    "T",
    " ",
    "\t",
    ":",
    "[",
    "]",
    "(Worker pid=3) ",
    "(w rank=1 pid=2) ",
    "[rank0]:",
    "rank",
    " NCCL WARN ",
    "NCCL",
    "CUDA out of memory",
    "CUDA error: ",
    "cuda",
    "Segmentation",
    " fault",
    "Segmentation fault",
    "*** SIG",
    "SEGV ",
    "Aborted (core dumped)",
    "Bus error (core dumped)",
    "terminate called after throwing an instance of ",
    "Fatal Python error: ",
    "Traceback (most recent call last):",
    "x",
    "\x1b[31m",
    "\x1b[0m",
    "\x1b[",
    "\u00e9",
]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join), max_size=6))
def test_the_helper_agrees_with_the_reader_on_any_line(lines):
    """The gates may only skip a regex that would not match: on lines made of pieces of the
    table, C and Python give every line the same level, tracebacks included."""
    tracker = LevelTracker()
    assert _c_levels(lines) == [tracker.level(t, ("n", 1, "err")) for t in lines]


def test_the_helpers_header_is_generated_from_the_table():
    """csrc/shared/levels.h is what the build makes of levels.json now: no hand-edited copy."""
    build = runpy.run_path(str(ROOT / "skyrl_fdlog" / "_build.py"), run_name="levels_check")
    header = build["write_levels_header"]()
    assert header.read_text() == _levels.c_header()
    for pattern in (*_levels.AT_START.values(), *_levels.ANYWHERE.values()):
        assert _levels.c_header().count(json.dumps(pattern)) == 1


# --- the reader and the CLI -------------------------------------------------------------


def test_cli_level_selects_errors_and_whole_tracebacks_from_a_real_log(tmp_path):
    """Real processes write through the captured fds: ``cat --level error`` keeps the
    error lines (the child's CUDA line, the whole traceback, an NCCL WARN) and drops the
    INFO line that names an error file; ``--level warning`` adds the warning; the API
    gives the same levels."""
    from conftest import run_python
    from skyrl_fdlog.reader import iter_lines, with_levels
    from test_reader_helpers import cli

    log = tmp_path / "infra.log"
    result = run_python(f"""
import os, subprocess, sys, logging, traceback
import skyrl_fdlog
skyrl_fdlog.redirect({str(log)!r}, name="Engine")
print("INFO 11-27 02:47:06 [loader.py:1] loading /data/error_cases.parquet", flush=True)
print("WARNING 11-27 02:47:06 [config.py:1] casting", flush=True)
subprocess.run([sys.executable, "-c", "import os; os.write(2, b'EngineCore: CUDA out of memory\\\\n')"])
os.write(2, b"node-1:1:2 [0] NCCL WARN Cuda failure 'out of memory'\\n")
try:
    raise RuntimeError("Engine core initialization failed")
except RuntimeError:
    traceback.print_exc()
print("step 1 loss 0.5", flush=True)
skyrl_fdlog.restore()
""")
    assert result.returncode == 0, result.stderr
    errors = cli("cat", "--level", "error", "--no-prefix", log)
    assert errors.returncode == 0, errors.stderr
    shown = errors.stdout.decode().splitlines()
    # fd-level lines and Python's own (a pipe of its own) keep their order per channel only
    fd_level = ["EngineCore: CUDA out of memory", "node-1:1:2 [0] NCCL WARN Cuda failure 'out of memory'"]
    assert [text for text in shown if text in fd_level] == fd_level
    python = [text for text in shown if text not in fd_level]
    assert python[0] == "Traceback (most recent call last):"
    assert python[-1] == "RuntimeError: Engine core initialization failed"
    assert len(python) == 3, python
    assert not any("error_cases" in text or "loss" in text or "casting" in text for text in shown)
    warnings = cli("cat", "--level", "warning", "--no-prefix", log).stdout.decode().splitlines()
    assert warnings == ["WARNING 11-27 02:47:06 [config.py:1] casting", *shown]
    tail = cli("tail", "-n", "1", "--level", "error", "--no-prefix", log)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.decode().splitlines() == shown[-1:]
    levels = {line.payload: level for line, level in with_levels(iter_lines(log))}
    assert levels[b"RuntimeError: Engine core initialization failed"] == "error"
    assert levels[b"step 1 loss 0.5"] is None
    assert [line.level for line in iter_lines(log) if line.payload.startswith(b"INFO")] == ["info"]


def test_cli_refuses_an_unknown_level(tmp_path):
    from test_reader_helpers import cli

    log = tmp_path / "a.log"
    log.write_bytes(b"")
    result = cli("cat", "--level", "fatal", log)
    assert result.returncode == 2 and b"--level" in result.stderr and b"fatal" in result.stderr
