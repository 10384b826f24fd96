"""Fuzzing the reader's parser (skyrl_fdlog/reader/) and terminal escaping.

The properties live in tests/_fuzz_reader.py.  atheris (coverage-guided, libFuzzer) runs them
for SKYRL_FDLOG_FUZZ_SECONDS (20 s; 300 s with SKYRL_FDLOG_LONG=1) from a seed corpus of real
records; hypothesis runs the same properties on every test run, atheris or not.  The assembler
(the writer side) is fuzzed with hypothesis in tests/test_core_assembler.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _faults import LONG, TESTS
from _fuzz_reader import check

pytestmark = pytest.mark.slow

FUZZ_SECONDS = int(os.environ.get("SKYRL_FDLOG_FUZZ_SECONDS", 300 if LONG else 20))

SEEDS = [
    b"2026-11-27T02:47:06.123Z node-1 VLLMEngine[12345] out: INFO model loaded\n",
    b"2026-11-27T02:47:06.123Z n Engine[1] err+ first half\n"
    b"2026-11-27T02:47:06.124Z n Other[2] out: between\n"
    b"2026-11-27T02:47:06.125Z n Engine[1] err: second half\n",
    b"2026-11-27T02:47:06.123Z n A[3] out~ Loading:  50%|#####     |\n",
    b"2026-11-27T02:47:06.123Z n A[3] fdlog: dropped 12 records (3456 bytes)\n",
    b"2026-11-27T02:47:06.123Z n A[3] out: 2026-11-27T02:47:06.123Z n B[4] out: forged\n",
    b"not a record at all\n\x1b[31mred\x1b]0;title\x07\xff\xfe\n",
    b"2026-11-27T02:47:06.123Z n A[3] out+ cut without newline",
]
DICTIONARY = [
    '"out: "',
    '"err: "',
    '"fdlog: "',
    '"out+ "',
    '"out~ "',
    '"["',
    '"] "',
    '"2026-11-27T02:47:06.123Z "',
    '"\\x1b["',
    '"\\x1b]"',
    '"\\x07"',
    '"\\xc2\\x9b"',
    '"\\xe2\\x80\\xae"',
    '"\\xed\\xa0\\x80"',
]


def run_atheris(tmp_path: Path, seconds: int, plant_bug: bool = False):
    atheris = pytest.importorskip(
        "atheris",
        reason="ATHERIS NOT INSTALLED: pip install atheris (3.0.0 has a wheel for "
        "CPython 3.11); the hypothesis test below still runs the properties",
    )
    del atheris
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        (corpus / f"seed{index}").write_bytes(seed)
    dictionary = tmp_path / "records.dict"
    dictionary.write_text("\n".join(DICTIONARY) + "\n")
    env = {**os.environ, "FDLOG_FUZZ_PLANT_BUG": "1" if plant_bug else "0"}
    result = subprocess.run(
        [
            sys.executable,
            str(TESTS / "_fuzz_reader.py"),
            f"-max_total_time={seconds}",
            "-max_len=4096",
            f"-dict={dictionary}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(corpus),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    crashes = sorted(tmp_path.glob("crash-*"))
    return result, crashes


def test_reader_properties_hold_under_atheris(tmp_path):
    """Coverage-guided fuzzing for FUZZ_SECONDS finds no input that breaks a property of
    tests/_fuzz_reader.py (exact parsing, no impersonation, exact rejoining, safe escaping)."""
    result, crashes = run_atheris(tmp_path, FUZZ_SECONDS)
    runs = re.search(r"Done (\d+) runs", result.stderr)
    print(f"\nMEASURED atheris: {runs.group(1) if runs else '?'} inputs in {FUZZ_SECONDS} s")
    assert result.returncode == 0 and crashes == [], (result.stdout + result.stderr)[-4000:]
    assert runs is not None and int(runs.group(1)) > 1000


def test_atheris_harness_catches_a_planted_parser_bug(tmp_path):
    """The same harness against a parser that drops the last byte of any payload holding a
    tab: atheris reports the property violation and saves the input, so a pass above means
    something."""
    result, crashes = run_atheris(tmp_path, 60, plant_bug=True)
    output = result.stdout + result.stderr  # atheris prints the Python traceback on stdout
    found = output[output.find("=== Uncaught Python exception") :][:3000]
    assert result.returncode != 0
    assert "AssertionError" in found, found
    assert crashes, found


records = st.builds(
    lambda node, name, pid, stream, mark, payload: (
        f"2026-11-27T02:47:06.123Z {node} {name}[{pid}] {stream}{mark} ".encode() + payload
    ),
    st.sampled_from(["n", "node-1", "a.b_c"]),
    st.sampled_from(["A", "Engine:1", "x.y-z"]),
    st.integers(0, 99999),
    st.sampled_from(["out", "err", "fdlog"]),
    st.sampled_from(":+~"),
    st.binary(max_size=64).map(lambda b: b.replace(b"\n", b"")),
)
logs = st.lists(
    st.one_of(records, st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))), max_size=12
).map(lambda lines: b"\n".join(lines)) | st.binary(max_size=512)


@settings(max_examples=400 if not LONG else 5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs, st.booleans())
def test_reader_properties_hold_under_hypothesis(data, newline_at_end):
    """The properties of tests/_fuzz_reader.py on logs made of real-looking records, forged
    prefixes and arbitrary bytes, with and without a final newline."""
    check(data + (b"\n" if newline_at_end else b""))
