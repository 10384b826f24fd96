"""The reader's output formats of issues 17 and 15: JSON lines (--json), the lnav format,
payload colours, and vLLM's own ``(Name pid=N)`` decoration.  The CLI runs as a real child
process; logs come from the real writer (redirect() in a child process) where the test is
about real output, and from records written to the letter of docs/format.md where it is
about exact cases.  jq and lnav are the Debian packages (.ci/run and the Makefile install
them): a missing tool fails the test, it is never skipped."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyrl_fdlog.cli import LNAV_FORMAT
from skyrl_fdlog.reader import _message, iter_records
from skyrl_fdlog.reader._message import COLOUR, level_of, undecorate
from skyrl_fdlog.reader._terminal import _UNSAFE, escape_keeping_colours
from test_cli import append, out_lines, run_on_pty
from test_reader_helpers import REPO, T0, cli, cli_env, line_records, record

CYAN, RESET = b"\x1b[0;36m", b"\x1b[0;0m"


def tool(name: str) -> str:
    """The path of a command-line tool the tests need; fails (never skips) without it."""
    path = shutil.which(name)
    assert path is not None, (
        f"{name} is not installed: apt-get install {name} (.ci/run and the Makefile install it)"
    )
    return path


def json_lines(*args: object, input: bytes | None = None) -> list[dict]:
    """Run the CLI with --json; every output line must be one JSON object."""
    return [json.loads(line) for line in out_lines(cli(*args, "--json", input=input))]


def write_real_log(log: Path, body: str, name: str = "Real", **env: str) -> None:
    """Run ``body`` in a child process redirected into ``log`` by skyrl_fdlog.redirect()."""
    script = (
        textwrap.dedent("""
        import os, sys
        import skyrl_fdlog
        skyrl_fdlog.redirect(sys.argv[1], name=sys.argv[2])
    """)
        + textwrap.dedent(body)
        + "\nskyrl_fdlog.restore()\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(log), name], env=cli_env(**env), capture_output=True, timeout=120
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")
    assert child.stdout == b"" and b"Traceback" not in child.stderr


# --- JSON lines ---------------------------------------------------------------------------


def test_json_gives_one_object_per_logical_line_with_the_documented_fields(tmp_path):
    """Every kind of line as one object: a line split over three records rejoined, a
    progress snapshot, a note of skyrl_fdlog's own, a partial line, an unparsable line;
    times as written (RFC 3339 UTC), levels where the format is known."""
    long_line = b"WARNING:root:" + b"x" * 9000
    log = tmp_path / "a.log"
    log.write_bytes(
        b"".join(
            [
                *line_records(long_line, name="Trainer", pid=10),
                record(b" 40%|####      |", time_ms=T0 + 5, name="Trainer", pid=10, stream="err", mark="~"),
                record(b"dropped 3 lines", time_ms=T0 + 6, name="Trainer", pid=10, stream="fdlog"),
                b"not a record\n",
                record(b"cut off", time_ms=T0 + 7, node="10.0.0.7", name="vllm-engine-0", pid=20, mark="+"),
            ]
        )
    )
    objects = json_lines("cat", log)
    writer = {"node": "node-1", "actor": "Trainer", "pid": 10, "role": None}
    assert objects == [
        {
            "time": "2026-11-27T02:47:06.000Z",
            **writer,
            "stream": "out",
            "kind": "line",
            "level": "warning",
            "message": long_line.decode(),
        },
        {
            "time": "2026-11-27T02:47:06.005Z",
            **writer,
            "stream": "err",
            "kind": "snapshot",
            "level": None,
            "message": " 40%|####      |",
        },
        {
            "time": "2026-11-27T02:47:06.006Z",
            **writer,
            "stream": "fdlog",
            "kind": "note",
            "level": None,
            "message": "dropped 3 lines",
        },
        {
            "time": None,
            "node": None,
            "actor": None,
            "pid": None,
            "role": None,
            "stream": None,
            "kind": "line",
            "level": None,
            "message": "not a record",
            "malformed": "unparsable",
        },
        {
            "time": "2026-11-27T02:47:06.007Z",
            "node": "10.0.0.7",
            "actor": "vllm-engine-0",
            "pid": 20,
            "role": None,
            "stream": "out",
            "kind": "partial",
            "level": None,
            "message": "cut off",
        },
    ]
    for obj in objects:
        if obj["time"] is not None:  # RFC 3339, UTC
            assert dt.datetime.fromisoformat(obj["time"].replace("Z", "+00:00")).utcoffset() == dt.timedelta(
                0
            )


def test_json_of_bytes_that_are_not_utf8_carries_them_exactly_in_base64(tmp_path):
    """A payload that is not UTF-8: message with U+FFFD for the bad bytes, message_b64 with
    the exact bytes, binary true; UTF-8 text (accents, control characters) is a plain
    message, and every object is one line of ASCII."""
    bad = b"weights \xff\xfe at \x00 \xc3("
    good = "caf\u00e9 \u202e tab\t bell\x07".encode()
    log = tmp_path / "a.log"
    log.write_bytes(record(bad) + record(good))
    raw = cli("cat", "--json", log).stdout
    assert raw.isascii() and raw.count(b"\n") == 2
    first, second = (json.loads(line) for line in raw.splitlines())
    assert first["message"] == bad.decode("utf-8", "replace")
    assert base64.b64decode(first["message_b64"]) == bad and first["binary"] is True
    assert second["message"] == good.decode() and "binary" not in second
    assert "message_b64" not in second


def test_json_through_jq_selects_and_reshapes_lines(tmp_path):
    """jq reads the output as a stream of objects: select the errors of one actor and show
    them with their role and time."""
    jq = tool("jq")
    log = tmp_path / "a.log"
    log.write_bytes(
        b"".join(
            [
                record(
                    b"(EngineCore pid=20) ERROR 11-27 02:47:06 [core.py:1] out of memory",
                    name="vllm-engine-0",
                    pid=20,
                    stream="err",
                ),
                record(
                    b"(EngineCore pid=20) INFO 11-27 02:47:06 [core.py:2] fine",
                    name="vllm-engine-0",
                    pid=20,
                    time_ms=T0 + 1,
                ),
                record(b"ERROR:root:step failed", name="Trainer", pid=10, time_ms=T0 + 2),
                record(b"\xff binary", name="Trainer", pid=10, time_ms=T0 + 3),
            ]
        )
    )
    produced = cli("cat", "--json", log)
    assert produced.returncode == 0
    program = 'select(.level == "error" and .actor == "vllm-engine-0") | "\\(.time) \\(.role) \\(.message)"'
    shown = subprocess.run([jq, "-r", program], input=produced.stdout, capture_output=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (
        b"2026-11-27T02:47:06.000Z EngineCore ERROR 11-27 02:47:06 [core.py:1] out of memory\n"
    )
    # jq -e fails on the first input that is not JSON or where the test is false.
    checked = subprocess.run(
        [jq, "-e", '.time and (.pid | type == "number")'],
        input=produced.stdout,
        capture_output=True,
        timeout=30,
    )
    assert checked.returncode == 0 and checked.stdout == b"true\n" * 4, checked


def test_json_of_a_real_log_holds_every_line_written(tmp_path):
    """A log written through redirect() (Python prints, fd-level writes on both streams, a
    line longer than a record, bytes that are not UTF-8) reads back through --json as the
    lines written, each attributed to the writing process."""
    log = tmp_path / "real.log"
    write_real_log(
        log,
        """
        print("step 1 loss 0.5", flush=True)
        os.write(2, b"WARNING:root:slow step\\n")
        os.write(1, b"long " + b"y" * 10000 + b"\\n")
        os.write(1, b"bad \\xff byte\\n")
    """,
    )
    objects = json_lines("cat", log)
    pids = {obj["pid"] for obj in objects}
    assert len(pids) == 1 and {obj["actor"] for obj in objects} == {"Real"}
    by_message = {obj["message"]: obj for obj in objects}
    assert by_message["WARNING:root:slow step"]["stream"] == "err"
    assert by_message["WARNING:root:slow step"]["level"] == "warning"
    assert "long " + "y" * 10000 in by_message
    (binary,) = [obj for obj in objects if obj.get("binary")]
    assert base64.b64decode(binary["message_b64"]) == b"bad \xff byte"
    assert sorted(by_message) == sorted(
        ["step 1 loss 0.5", "WARNING:root:slow step", "long " + "y" * 10000, "bad \ufffd byte"]
    )


def test_tail_follow_json_prints_each_object_as_it_comes(tmp_path, follow):
    """tail -f --json hands every object on as soon as its line is read, whole, so a log
    shipper reading the pipe sees it live."""
    log = tmp_path / "a.log"
    log.write_bytes(record(b"old"))
    reader = follow("--json", log)
    assert [json.loads(got)["message"] for got in reader.lines_until(lambda got: len(got) == 1)] == ["old"]
    for i in range(3):
        append(log, record(b"new %d" % i, time_ms=T0 + i))
        lines = reader.lines_until(lambda got, n=i + 2: len(got) == n)
        assert json.loads(lines[-1])["message"] == f"new {i}"


def test_json_with_dedup_counts_the_repeats(tmp_path):
    """A dedup summary is its latest line's object with "repeated": N."""
    log = tmp_path / "a.log"
    log.write_bytes(
        b"".join(record(b"loaded shard %d" % pid, time_ms=T0 + pid, pid=pid) for pid in (1, 2, 3, 4))
    )
    objects = json_lines("cat", "--dedup", log)
    assert [(o["message"], o.get("repeated")) for o in objects] == [
        ("loaded shard 1", None),
        ("loaded shard 4", 3),
    ]


def test_json_and_no_prefix_together_are_a_usage_error(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(record(b"x"))
    result = cli("cat", "--json", "--no-prefix", log)
    assert result.returncode == 2 and b"--json and --no-prefix" in result.stderr
    assert result.stdout == b""


LEVEL_CASES = [
    ("WARNING:root:disk almost full", "warning"),
    ("INFO:     Uvicorn running", "info"),
    ("INFO 11-27 02:47:06 [core.py:100] model loaded", "info"),
    ("(EngineCore pid=7) ERROR 11-27 02:47:06 [core.py:1] engine died", "error"),
    ("(VllmWorker rank=1 pid=7) DEBUG 11-27 02:47:06 [x.py:1] y", "debug"),
    (
        "\x1b[0;36m(EngineCore pid=7)\x1b[0;0m \x1b[33mWARNING\x1b[0m \x1b[90m11-27 02:47:06\x1b[0m x",
        "warning",
    ),
    ("2026-11-27 02:47:06,123\tINFO worker.py:1855 -- Started a local Ray instance.", "info"),
    ("2026-11-27 02:47:06,123 WARN utils.py:1 -- x", "warning"),
    ("2026-11-27T02:47:06.123 FATAL x", "critical"),
    ("[2026-11-27 02:47:06,123 E 4121 4130] core_worker.cc:512: lost", "error"),
    ("W1127 02:47:06.123456  4121 file.cc:12] glog warning", "warning"),
    ("F1127 02:47:06.123456  4121 file.cc:12] Check failed", "critical"),
    ("[rank0]:[W1127 02:47:06.123456789 ProcessGroupNCCL.cpp:1250] Warning: not destroyed", "warning"),
    ("CRITICAL:vllm:x", "critical"),
    ("step 1 loss 0.5", None),
    ("an ERROR somewhere in the middle", None),
    ("INFORMATION: not a level", None),
    ("", None),
]


@pytest.mark.parametrize("text, level", LEVEL_CASES)
def test_level_of_the_common_log_formats(text, level):
    assert level_of(text) == level


# --- lnav -------------------------------------------------------------------------------


def test_lnav_format_levels_are_the_readers_classifier():
    """The shipped lnav format's level patterns are exactly the reader's (one table in
    _message), so lnav and --json agree on every line's level."""
    shipped = json.loads(LNAV_FORMAT.read_text())["skyrl_fdlog"]
    assert shipped["level"] == _message.LNAV_LEVELS, (
        "skyrl_fdlog/lnav/skyrl_fdlog.json is out of date; its 'level' must be:\n"
        + json.dumps(_message.LNAV_LEVELS, indent=2)
    )
    assert shipped["level-field"] == "body"


def test_lnav_format_is_package_data_and_the_cli_names_it():
    """pyproject.toml ships the lnav format in the wheel, next to the code, and
    ``skyrl-fdlog lnav-format`` prints its path for ``lnav -i``."""
    pyproject = (REPO / "pyproject.toml").read_text()  # no tomllib before Python 3.11
    section = pyproject.split("[tool.setuptools.package-data]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^skyrl_fdlog = \[.*"lnav/\*\.json"', section, re.M), section
    assert out_lines(cli("lnav-format")) == [str(LNAV_FORMAT).encode()]
    assert LNAV_FORMAT.is_file()


def lnav_rows(log: Path, home: Path) -> list[dict]:
    """Install the shipped format as docs/reader.md says (``lnav -i "$(skyrl-fdlog
    lnav-format)"``), then read
    ``log`` headless and return lnav's rows of the skyrl_fdlog table.  lnav turns a line
    it cannot parse into a continuation of the line before, so a missing log_line number
    is an unrecognised line."""
    lnav = tool("lnav")
    home.mkdir()
    env = {"HOME": str(home), "TZ": "UTC", "PATH": "/usr/bin:/bin"}
    path = out_lines(cli("lnav-format"))[0].decode()
    installed = subprocess.run([lnav, "-i", path], env=env, capture_output=True, timeout=60)
    assert installed.returncode == 0, installed
    assert (home / ".lnav" / "formats" / "installed" / "skyrl_fdlog.json").exists()
    out = home / "rows.json"
    query = (
        "SELECT log_line, log_actual_time, log_level, node, actor, pid, stream, mark "
        "FROM skyrl_fdlog ORDER BY log_line"
    )
    result = subprocess.run(
        [lnav, "-n", "-c", ";" + query, "-c", f":write-json-to {out}", str(log)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0 and out.exists(), result
    return json.loads(out.read_text())


def test_lnav_parses_a_real_log_with_no_unrecognised_line(tmp_path):
    """A real log (redirect() in a child: Python prints, vLLM-style lines of every level,
    fd-level writes on both streams, a line cut into records, a tqdm-style redraw, escape
    sequences and bytes that are not UTF-8) opened in lnav with the shipped format: every
    line of the file is one lnav message, with the time, node, actor, pid, stream and
    mark that the reader parses, and the level the reader's classifier gives."""
    log = tmp_path / "infra.log"
    write_real_log(
        log,
        """
        import logging
        pid = os.getpid()
        logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
        logging.getLogger("train").warning("loss is nan")
        print(f"(EngineCore pid={pid}) INFO 11-27 02:47:06 [core.py:1] model loaded", flush=True)
        print(f"\\x1b[0;36m(EngineCore pid={pid})\\x1b[0;0m \\x1b[31mERROR\\x1b[0m "
              f"11-27 02:47:06 [core.py:2] engine died", flush=True)
        os.write(1, b"[2026-11-27 02:47:06,123 W 1 2] raylet.cc:1: worker killed\\n")
        os.write(2, b"F1127 02:47:06.123456  4121 file.cc:12] Check failed\\n")
        os.write(1, b"a long line " + b"z" * 9000 + b"\\n")
        os.write(2, b" 10%|#   |\\r 20%|##  |\\r 30%|### |\\n")
        os.write(1, b"title \\x1b]0;pwned\\x07 bell \\x1b[2J clear\\n")
        # Not in the line above: lnav 0.11.1 itself crashes (any format, syslog too) on the
        # fields of a line holding an OSC sequence followed by \\xff\\xfe.
        os.write(1, b"bad bytes \\xff\\xfe\\n")
        print("plain text", flush=True)
    """,
    )
    records = list(iter_records(log))
    assert len(records) == log.read_bytes().count(b"\n") >= 12
    assert {r.mark for r in records} == {":", "+", "~"} and not any(r.malformed for r in records)
    rows = lnav_rows(log, tmp_path / "home")
    assert [row["log_line"] for row in rows] == list(range(len(records)))
    levels = []
    for row, rec in zip(rows, records):
        assert row["log_actual_time"] == rec.ts.replace("T", " ").rstrip("Z")
        assert (row["node"], row["actor"], row["pid"], row["stream"], row["mark"]) == (
            rec.node,
            rec.name,
            rec.pid,
            rec.stream,
            rec.mark,
        )
        # lnav calls a line of no known level "info"; the reader says null.
        expected = level_of(rec.payload.decode("utf-8", "replace")) or "info"
        assert row["log_level"] == expected, (rec, row)
        levels.append(row["log_level"])
    assert {"warning", "error", "critical"} <= set(levels)


# --- colours --------------------------------------------------------------------------------

COLOURED = b"\x1b[32mINFO\x1b[0m \x1b[1;38;5;208mhot\x1b[m done"
HOSTILE = b" \x1b]0;title\x07 \x1b[2J \x1b[8mhidden\x1b[0m"


def test_payload_colours_show_as_colour_when_colour_is_on(tmp_path):
    """With colour on, a payload's SGR colour sequences pass to the terminal and a reset
    ends the line; a title change, a clear screen, a bell and an SGR that conceals text
    are still shown escaped."""
    log = tmp_path / "a.log"
    log.write_bytes(record(COLOURED + HOSTILE, name="W", pid=5))
    (line,) = out_lines(cli("cat", "--color", "always", log))
    payload = line.split(b" out: ", 1)[1]
    assert payload == (COLOURED + b" \\x1b]0;title\\x07 \\x1b[2J \\x1b[8mhidden\x1b[0m" + b"\x1b[0m")
    assert COLOURED in run_on_pty("cat", log, env=cli_env())  # --color auto, a terminal


@pytest.mark.parametrize("args", [["--color", "never"], [], ["--no-prefix", "--color", "always"]])
def test_payload_colours_are_dropped_when_colour_is_off_or_without_a_prefix(tmp_path, args):
    """With colour off (a pipe, --color never) and in --no-prefix output, colour sequences
    are dropped, not shown as escapes; other sequences stay escaped."""
    log = tmp_path / "a.log"
    log.write_bytes(record(COLOURED + HOSTILE, name="W", pid=5))
    (line,) = out_lines(cli("cat", *args, log))
    assert line.endswith(b"INFO hot done \\x1b]0;title\\x07 \\x1b[2J \\x1b[8mhidden")
    assert b"\x1b" not in line


def test_payload_colours_are_dropped_in_json_and_kept_by_raw_bytes(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(record(COLOURED + HOSTILE, name="W", pid=5))
    (obj,) = json_lines("cat", "--color", "always", log)
    assert obj["message"] == "INFO hot done \x1b]0;title\x07 \x1b[2J \x1b[8mhidden"
    raw = cli("cat", "--no-prefix", "--raw-bytes", log).stdout
    assert raw == COLOURED + HOSTILE + b"\n"


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    st.lists(
        st.sampled_from(
            [
                b"\x1b[31m",
                b"\x1b[0m",
                b"\x1b[0;36m",
                b"\x1b[38;2;1;2;3m",
                b"\x1b[8m",
                b"\x1b[",
                b"\x1b]0;x\x07",
            ]
        ),
        max_size=6,
    ),
)
def test_colours_kept_are_the_only_escape_sequences_that_reach_the_terminal(data, sequences):
    """Property: with colours kept, the output minus its colour sequences holds nothing a
    terminal acts on, and if it holds a colour it ends with a reset."""
    payload = b"".join(s + data[i::3] for i, s in enumerate(sequences)) or data
    shown = escape_keeping_colours(payload)
    rest = COLOUR.sub(b"", shown.encode("utf-8", "surrogateescape")).decode()
    assert _UNSAFE.search(rest) is None, ascii(shown)
    if COLOUR.search(shown.encode()):
        assert shown.endswith("\x1b[0m")


# --- vLLM's own decoration ------------------------------------------------------------------

DECORATED = [
    record(
        CYAN + b"(EngineCore pid=123)" + RESET + b" INFO 11-27 02:47:06 [core.py:1] loaded",
        name="vllm-engine-0",
        pid=123,
        stream="err",
    ),
    record(
        b"(VllmWorker rank=1 pid=124) WARNING 11-27 02:47:06 [w.py:1] slow",
        name="vllm-engine-0",
        pid=124,
        stream="err",
        time_ms=T0 + 1,
    ),
    record(b"(EngineCore pid=999) relayed from elsewhere", name="vllm-engine-0", pid=123, time_ms=T0 + 2),
    record(b"(not vllm) text", name="vllm-engine-0", pid=123, time_ms=T0 + 3),
]


def test_vllm_decoration_of_the_writer_itself_becomes_the_role_in_the_prefix(tmp_path):
    """(EngineCore pid=123) on a record of pid 123 (coloured or not, with a rank or not)
    is not printed again: the prefix says vllm-engine-0[123/EngineCore].  A decoration
    naming another pid is text and stays."""
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(DECORATED))
    assert out_lines(cli("cat", log)) == [
        b"2026-11-27T02:47:06.000Z node-1 vllm-engine-0[123/EngineCore] err: "
        b"INFO 11-27 02:47:06 [core.py:1] loaded",
        b"2026-11-27T02:47:06.001Z node-1 vllm-engine-0[124/VllmWorker_rank1] err: "
        b"WARNING 11-27 02:47:06 [w.py:1] slow",
        b"2026-11-27T02:47:06.002Z node-1 vllm-engine-0[123] out: "
        b"(EngineCore pid=999) relayed from elsewhere",
        b"2026-11-27T02:47:06.003Z node-1 vllm-engine-0[123] out: (not vllm) text",
    ]
    assert out_lines(cli("cat", "--no-prefix", log)) == [
        b"INFO 11-27 02:47:06 [core.py:1] loaded",
        b"WARNING 11-27 02:47:06 [w.py:1] slow",
        b"(EngineCore pid=999) relayed from elsewhere",
        b"(not vllm) text",
    ]
    objects = json_lines("cat", log)
    assert [(o["role"], o["level"], o["message"]) for o in objects] == [
        ("EngineCore", "info", "INFO 11-27 02:47:06 [core.py:1] loaded"),
        ("VllmWorker_rank1", "warning", "WARNING 11-27 02:47:06 [w.py:1] slow"),
        (None, None, "(EngineCore pid=999) relayed from elsewhere"),
        (None, None, "(not vllm) text"),
    ]


def test_grep_searches_the_line_as_shown(tmp_path):
    """--grep reads the payload as it is shown: ^ERROR finds vLLM's error line although the
    file holds its decoration and colours before the word."""
    log = tmp_path / "a.log"
    log.write_bytes(
        record(
            CYAN + b"(EngineCore pid=7)" + RESET + b" \x1b[31mERROR\x1b[0m "
            b"11-27 02:47:06 [core.py:1] engine died",
            name="e",
            pid=7,
        )
        + record(b"ERROR:root:plain", name="t", pid=8)
    )
    assert out_lines(cli("cat", "--no-prefix", "--grep", "^ERROR (11|engine)", log)) == [
        b"ERROR 11-27 02:47:06 [core.py:1] engine died"
    ]
    assert len(out_lines(cli("cat", "--grep", "^ERROR", log))) == 2


def test_raw_bytes_shows_the_decoration_as_written(tmp_path):
    """--raw-bytes prints records as they are in the file: decoration, colours and the
    prefix without a role."""
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(DECORATED))
    assert cli("cat", "--raw-bytes", log).stdout == log.read_bytes()
    (first, *_) = json_lines("cat", "--raw-bytes", log)
    assert first["message"].encode() == DECORATED[0].split(b" err: ", 1)[1].rstrip(b"\n")
    assert first["role"] == "EngineCore"


def test_dedup_matches_lines_by_what_they_say_without_decoration_or_colour(tmp_path):
    """Engines that print the same line, one with vLLM's coloured decoration and the others
    plain, collapse as one line; the summary shows the latest without its decoration."""
    log = tmp_path / "a.log"
    log.write_bytes(
        b"".join(
            [
                record(b"(EngineCore pid=1) loading weights", pid=1, name="e0"),
                record(
                    CYAN + b"(EngineCore pid=2)" + RESET + b" loading weights",
                    pid=2,
                    name="e1",
                    time_ms=T0 + 1,
                ),
                record(b"(EngineCore pid=3) loading weights", pid=3, name="e2", time_ms=T0 + 2),
                record(b"(EngineCore pid=4) loading weights", pid=4, name="e3", time_ms=T0 + 3),
            ]
        )
    )
    assert out_lines(cli("cat", "--dedup", log)) == [
        b"2026-11-27T02:47:06.000Z node-1 e0[1/EngineCore] out: loading weights",
        b"2026-11-27T02:47:06.003Z node-1 e3[4/EngineCore] out: loading weights [repeated 3x across cluster]",
    ]


def test_undecorate_keeps_payloads_that_only_look_like_a_decoration():
    assert undecorate(b"(EngineCore pid=12)", 12) == ("EngineCore", b"")
    assert undecorate(b"(EngineCore pid=12)x", 12) == ("EngineCore", b"x")
    assert undecorate(b" (EngineCore pid=12) x", 12) == (None, b" (EngineCore pid=12) x")
    assert undecorate(b"(Engine Core pid=12) x", 12) == (None, b"(Engine Core pid=12) x")
    assert undecorate(b"(EngineCore pid=12", 12) == (None, b"(EngineCore pid=12")
