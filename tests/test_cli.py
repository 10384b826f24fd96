"""The skyrl-fdlog command line, run as a real child process (python -m skyrl_fdlog)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pty
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skyrl_fdlog.cli as fdlog_cli
from skyrl_fdlog.reader._filters import FilterError, _parse_iso_before_3_11, parse_time
from test_reader_helpers import T0, cli, cli_env, line_records, record, ts_text


def out_lines(result: subprocess.CompletedProcess[bytes]) -> list[bytes]:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.splitlines()


@pytest.fixture
def cluster_log(tmp_path):
    """A small shared log: two nodes, three actors, both streams, a drop marker, and a
    line split over three records with another writer's record in between."""
    path = tmp_path / "infra-1.log"
    path.write_bytes(
        b"".join(
            [
                record(b"step 1 loss 0.5", time_ms=T0, name="Trainer", pid=10),
                record(b"engine ", time_ms=T0 + 100, name="VLLMEngine", pid=20, mark="+"),
                record(b"warn: slow", time_ms=T0 + 150, name="Trainer", pid=10, stream="err"),
                record(b"loaded ", time_ms=T0 + 200, name="VLLMEngine", pid=20, mark="+"),
                record(b"model", time_ms=T0 + 300, name="VLLMEngine", pid=20),
                record(b"engine 2 ready", time_ms=T0 + 1000, node="node-2", name="VLLMEngine:1", pid=30),
                record(
                    b"dropped 3 lines",
                    time_ms=T0 + 2000,
                    node="node-2",
                    name="Trainer",
                    pid=40,
                    stream="fdlog",
                ),
            ]
        )
    )
    return path


def test_cat_prints_rejoined_lines_in_the_record_format(cluster_log):
    """cat shows each logical line once, with the prefix of its first record, in the order
    lines end; the split line comes out whole."""
    assert out_lines(cli("cat", cluster_log)) == [
        b"2026-11-27T02:47:06.000Z node-1 Trainer[10] out: step 1 loss 0.5",
        b"2026-11-27T02:47:06.150Z node-1 Trainer[10] err: warn: slow",
        b"2026-11-27T02:47:06.100Z node-1 VLLMEngine[20] out: engine loaded model",
        b"2026-11-27T02:47:07.000Z node-2 VLLMEngine:1[30] out: engine 2 ready",
        b"2026-11-27T02:47:08.000Z node-2 Trainer[40] fdlog: dropped 3 lines",
    ]


def test_no_prefix_prints_one_output_line_per_original_line(tmp_path):
    """--no-prefix prints payloads only, and a 100 kB line cut into 27 records is one output
    line equal to the original."""
    long_line = bytes(range(32, 127)) * 1100
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(line_records(long_line) + [record(b"short")]))
    assert out_lines(cli("cat", "--no-prefix", log)) == [long_line, b"short"]


def test_cat_of_several_files_merges_them_by_time(tmp_path):
    """Per-node files given together come out interleaved by record time."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(record(b"a1", time_ms=T0, node="a") + record(b"a3", time_ms=T0 + 3, node="a"))
    b.write_bytes(record(b"b2", time_ms=T0 + 2, node="b") + record(b"b4", time_ms=T0 + 4, node="b"))
    assert out_lines(cli("cat", "--no-prefix", a, b)) == [b"a1", b"b2", b"a3", b"b4"]


def test_cat_reads_standard_input_given_as_dash(cluster_log):
    """FILE - reads the log from standard input."""
    result = cli("cat", "--no-prefix", "--pid", "20", "-", input=cluster_log.read_bytes())
    assert out_lines(result) == [b"engine loaded model"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--actor", "Trainer"], [b"step 1 loss 0.5", b"warn: slow", b"dropped 3 lines"]),
        (["--actor", "VLLM*"], [b"engine loaded model", b"engine 2 ready"]),
        (["--actor", "VLLMEngine"], [b"engine loaded model"]),
        (["--actor", "VLLMEngine", "--actor", "VLLMEngine:1"], [b"engine loaded model", b"engine 2 ready"]),
        (["--pid", "20"], [b"engine loaded model"]),
        (["--pid", "10", "--pid", "30"], [b"step 1 loss 0.5", b"warn: slow", b"engine 2 ready"]),
        (["--node", "node-2"], [b"engine 2 ready", b"dropped 3 lines"]),
        (["--stream", "err"], [b"warn: slow"]),
        (["--stream", "fdlog"], [b"dropped 3 lines"]),
        (["--stream", "out", "--node", "node-1"], [b"step 1 loss 0.5", b"engine loaded model"]),
        (
            ["--since", "2026-11-27T02:47:06.100Z"],
            [b"warn: slow", b"engine loaded model", b"engine 2 ready", b"dropped 3 lines"],
        ),
        (
            ["--until", "2026-11-27T02:47:07Z"],
            [b"step 1 loss 0.5", b"warn: slow", b"engine loaded model", b"engine 2 ready"],
        ),
        (["--since", "2026-11-27 02:47:06.5", "--until", "2026-11-27T03:47:07.5+01:00"], [b"engine 2 ready"]),
        (["--grep", r"loaded\s+model"], [b"engine loaded model"]),
        (["--grep", "(?i)STEP|dropped"], [b"step 1 loss 0.5", b"dropped 3 lines"]),
        (["--grep", "zzz"], []),
    ],
)
def test_each_filter_selects_exactly_its_lines(cluster_log, args, expected):
    """Each filter (actor name or pattern, pid, node, stream, inclusive ISO time bounds in
    UTC or with a zone, regex over the rejoined payload) and their combinations select
    exactly the matching lines; repeated options are alternatives."""
    assert out_lines(cli("cat", "--no-prefix", *args, cluster_log)) == expected


def test_relative_times_count_back_from_now(tmp_path):
    """--since 10m and --until 1h are durations before the present."""
    now = int(time.time() * 1000)
    log = tmp_path / "a.log"
    log.write_bytes(
        record(b"two hours ago", time_ms=now - 7_200_000)
        + record(b"half an hour ago", time_ms=now - 1_800_000)
        + record(b"a minute ago", time_ms=now - 60_000)
    )
    assert out_lines(cli("cat", "--no-prefix", "--since", "10m", log)) == [b"a minute ago"]
    assert out_lines(cli("cat", "--no-prefix", "--until", "1h", log)) == [b"two hours ago"]
    assert out_lines(cli("cat", "--no-prefix", "--since", "1d", "--until", "0.25h", log)) == [
        b"two hours ago",
        b"half an hour ago",
    ]


def test_unparsable_lines_show_as_they_are_unless_a_writer_is_asked_for(tmp_path):
    """A fmt="raw" style line prints unchanged; writer and time filters leave it out (it
    has no writer or time) while --grep can still find it."""
    log = tmp_path / "a.log"
    log.write_bytes(b"plain raw line\n" + record(b"rec"))
    assert out_lines(cli("cat", log)) == [b"plain raw line", record(b"rec").rstrip(b"\n")]
    assert out_lines(cli("cat", "--no-prefix", "--actor", "*", log)) == [b"rec"]
    assert out_lines(cli("cat", "--no-prefix", "--since", "2000-01-01", log)) == [b"rec"]
    assert out_lines(cli("cat", "--grep", "raw", log)) == [b"plain raw line"]


# (text, milliseconds from T0, or None for a value that must be refused)
ISO_TIMES = [
    ("2026-11-27T02:47:06Z", 0),
    ("2026-11-27T02:47:06.123Z", 123),
    ("2026-11-27 02:47:06.5", 500),
    ("2026-11-27T02:47:06,25Z", 250),
    ("2026-11-27T02:47:06.1234567Z", 123),
    ("2026-11-27T03:47:07.5+01:00", 1500),
    ("2026-11-27T07:17:06+0430", 0),
    ("2026-11-26T21:47:06-05", 0),
    ("2026-11-27T02:47:06-00:00", 0),
    ("2026-11-27T08:17:21.5+05:30:15.5", 0),
    ("2026-11-27T02:47", -6000),
    ("2026-11-27 02", -2826000),
    ("2026-11-27", -10026000),
    ("20261127T024706Z", 0),
    ("20261127T0247", -6000),
    ("2026-W48-5T02:47:06Z", 0),
    ("2026W485T024706", 0),
    ("2026-W48", -355626000),
    ("2026-11-27x02:47:06", 0),
    ("2026-11-27T02:47:06.", None),
    ("2026-11-27T", None),
    ("2026-11", None),
    ("2026-1127", None),
    ("2026-W48-5102", None),
    ("2026-13-01", None),
    ("2026-02-30", None),
    ("2026-W54-1", None),
    ("2026-11-27T24:00", None),
    ("2026-11-27T02:60", None),
    ("2026-11-27T02:47:6", None),
    ("2026-11-27T0247:06", None),
    ("2026-11-27T02:47:06+24:00", None),
    ("2026-11-27T02:47:06+5", None),
    ("2026-11-27T02:47:06Z+01:00", None),
    ("yesterday", None),
]


@pytest.mark.parametrize("text, offset_ms", ISO_TIMES)
def test_iso_times_read_as_python_3_11_reads_them_on_every_python(text, offset_ms):
    """--since and --until read ISO 8601 as Python 3.11's datetime.fromisoformat does
    (Z, basic format, week dates, any fraction length, any date-time separator), also on
    Python 3.9 and 3.10, whose fromisoformat reads far less; on 3.11 and later the table
    itself is checked against fromisoformat."""
    now = dt.datetime.now(dt.timezone.utc)
    if offset_ms is None:
        with pytest.raises(FilterError, match="--since"):
            parse_time(text, "--since", now)
        with pytest.raises(ValueError):
            _parse_iso_before_3_11(text)
    else:
        assert parse_time(text, "--since", now) == T0 + offset_ms
        parsed = _parse_iso_before_3_11(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        assert int(parsed.timestamp() * 1000) == T0 + offset_ms


ISO_LIKE = st.one_of(
    st.from_regex(
        r"\A\d{4}-?(\d\d-?\d\d|W\d\d-?\d?)(.\d\d(:?\d\d(:?\d\d([.,]\d{0,8})?)?)?"
        r"(Z|[+-]\d\d(:?\d\d(:?\d\d([.,]\d{0,3})?)?)?)?)?\Z"
    ),
    st.text(alphabet="0123456789-:TWZ+.,x ", max_size=32),
)


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info < (3, 11), reason="compares with 3.11's fromisoformat")
@settings(max_examples=3000, deadline=None)
@given(ISO_LIKE)
def test_the_iso_parser_for_older_pythons_never_reads_a_time_otherwise_than_3_11(text):
    """Property: what the parser for Python 3.9 and 3.10 accepts, Python 3.11 accepts too,
    as the same time and zone.  (3.11 also takes a few malformed strings that this parser
    refuses: a fraction after the hour, a trailing digit it then ignores.)"""
    try:
        ours = _parse_iso_before_3_11(text)
    except ValueError:
        return
    theirs = dt.datetime.fromisoformat(text)
    assert (ours, ours.utcoffset()) == (theirs, theirs.utcoffset())


@pytest.mark.parametrize(
    "args, named",
    [
        (["cat", "/nonexistent/infra.log"], "/nonexistent/infra.log"),
        (["cat", "--grep", "(unclosed", "{log}"], "(unclosed"),
        (["cat", "--since", "yesterday", "{log}"], "yesterday"),
        (["cat", "--until", "2026-13-01", "{log}"], "2026-13-01"),
        (["cat", "{dir}"], "{dir}"),
        (["tail", "/nonexistent/dir/x.log"], "/nonexistent/dir/x.log"),
        (["tail", "{dir}"], "{dir}"),
        (["tail", "-n", "-3", "{log}"], "-3"),
        (["stats", "/nonexistent/infra.log"], "/nonexistent/infra.log"),
        (["cat", "--pid", "abc", "{log}"], "abc"),
        (["cat", "--stream", "stdout", "{log}"], "stdout"),
        (["cat", "--dedup", "--dedup-window", "-1", "{log}"], "-1"),
    ],
)
def test_usage_errors_name_the_value_and_exit_2_without_traceback(tmp_path, cluster_log, args, named):
    """A missing file, bad regex, bad time, a directory where a file is needed, an empty log
    directory or a bad option value: one message naming the value, status 2, no traceback."""
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    subst = {"{log}": str(cluster_log), "{dir}": str(empty)}
    result = cli(*[subst.get(a, a) for a in args])
    assert result.returncode == 2
    assert subst.get(named, named) in result.stderr.decode()
    assert b"Traceback" not in result.stderr and result.stdout == b""


ESCAPE_CASES = [
    (b"\x1b[2J\x1b]0;pwned\x07", r"\x1b[2J\x1b]0;pwned\x07"),
    (b"progress\rOVERWRITE", r"progress\x0dOVERWRITE"),
    (b"tab\tkept", "tab\tkept"),
    (b"bad \xff\xfe utf8 \xc3(", r"bad \xff\xfe utf8 \xc3("),
    (b"nul \x00 del \x7f", r"nul \x00 del \x7f"),
    (
        "c1 \u009b31m bidi \u202eevil\u202c sep \u2028".encode(),
        r"c1 \u009b31m bidi \u202eevil\u202c sep \u2028",
    ),
    ("unicode caf\u00e9 \u2713 \U0001f600".encode(), "unicode caf\u00e9 \u2713 \U0001f600"),
]


@pytest.mark.parametrize("payload, shown", ESCAPE_CASES)
def test_control_and_escape_sequences_are_shown_escaped(tmp_path, payload, shown):
    """Bytes a terminal would act on (ESC, CR, BEL, NUL, DEL, C1 controls, bidi overrides,
    line separators) and invalid UTF-8 print as visible escapes; tab and printable
    Unicode print as they are."""
    log = tmp_path / "a.log"
    log.write_bytes(record(payload))
    assert out_lines(cli("cat", "--no-prefix", log)) == [shown.encode()]


def test_raw_bytes_prints_payloads_unchanged(tmp_path):
    """--raw-bytes writes every payload byte as it is in the file, escape sequences
    included."""
    payloads = [p for p, _ in ESCAPE_CASES]
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(record(p) for p in payloads))
    printed = cli("cat", "--no-prefix", "--raw-bytes", log).stdout
    assert printed == b"".join(p + b"\n" for p in payloads)


def test_a_payload_imitating_a_prefix_cannot_pass_for_another_writer(tmp_path):
    """A payload holding a carriage return and a forged prefix prints on its writer's own
    line with the CR escaped, so the forged prefix cannot overwrite the real one."""
    forged = b"\r2026-11-27T02:47:06.000Z node-1 Admin[1] out: all good"
    log = tmp_path / "a.log"
    log.write_bytes(record(forged, name="Mallory", pid=66))
    (line,) = out_lines(cli("cat", log))
    assert line == (
        b"2026-11-27T02:47:06.000Z node-1 Mallory[66] out: "
        b"\\x0d2026-11-27T02:47:06.000Z node-1 Admin[1] out: all good"
    )


def run_on_pty(*args: object, env: dict[str, str]) -> bytes:
    """Run the CLI with its stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "skyrl_fdlog", *map(str, args)],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert child.wait(timeout=30) == 0
    return output


def test_colour_only_on_a_terminal_and_never_with_no_color(cluster_log):
    """Actors are coloured on a terminal; not on a pipe, not when NO_COLOR is set, not with
    --color never; --color always forces it (an explicit flag beats NO_COLOR, as
    no-color.org says).  Payload escapes are never colour codes."""
    coloured = b"\x1b[3"  # every palette entry starts an SGR foreground colour
    assert coloured in run_on_pty("cat", cluster_log, env=cli_env())
    assert coloured not in run_on_pty("cat", cluster_log, env=cli_env(NO_COLOR="1"))
    assert coloured not in run_on_pty("cat", "--color", "never", cluster_log, env=cli_env())
    assert b"\x1b" not in cli("cat", cluster_log).stdout
    forced = cli("cat", "--color", "always", cluster_log, env=cli_env(NO_COLOR="1")).stdout
    shown = [
        re.fullmatch(rb"\S+ \S+ (\x1b\[\d+m)(\S+)\[\d+\]\x1b\[0m \S+ .*", line)
        for line in forced.splitlines()
    ]
    assert all(shown), forced  # the colour wraps name and pid, nothing else
    colours = {m.group(2): m.group(1) for m in shown}
    assert len(colours) == len({(m.group(2), m.group(1)) for m in shown})  # one per actor


def dedup_log(path, lines):
    """Write (offset_ms, pid, payload) lines of actor W on node-1."""
    path.write_bytes(b"".join(record(p, time_ms=T0 + t, name="W", pid=pid) for t, pid, p in lines))
    return path


def test_dedup_collapses_repeats_across_writers_after_the_window(tmp_path):
    """--dedup prints the first sighting at once; repeats of the same line (numbers and hex
    ids aside) from other writers within 5 s are held and summarised as the latest repeat
    with [repeated Nx across cluster] when the window closes; the file is unchanged."""
    log = dedup_log(
        tmp_path / "a.log",
        [
            (0, 1, b"loaded shard 1 from 0x7f3a in 2.5s"),
            (10, 2, b"loaded shard 2 from 0x8b21 in 2.7s"),
            (20, 3, b"something else"),
            (30, 3, b"loaded shard 3 from 0x99ff in 3.1s"),
            (40, 4, b"loaded shard 4 from 0xaa00 in 2.2s"),
            (6000, 5, b"later line"),
        ],
    )
    before = hashlib.sha256(log.read_bytes()).hexdigest()
    assert out_lines(cli("cat", "--no-prefix", "--dedup", log)) == [
        b"loaded shard 1 from 0x7f3a in 2.5s",
        b"something else",
        b"loaded shard 4 from 0xaa00 in 2.2s [repeated 3x across cluster]",
        b"later line",
    ]
    assert hashlib.sha256(log.read_bytes()).hexdigest() == before


def test_dedup_summary_keeps_the_prefix_of_the_latest_repeat(tmp_path):
    """With the prefix, the summary line carries the writer and time of the latest repeat."""
    log = dedup_log(tmp_path / "a.log", [(0, 1, b"ready"), (1, 2, b"ready"), (2, 3, b"ready")])
    assert out_lines(cli("cat", "--dedup", log)) == [
        b"2026-11-27T02:47:06.000Z node-1 W[1] out: ready",
        b"2026-11-27T02:47:06.002Z node-1 W[3] out: ready [repeated 2x across cluster]",
    ]


@pytest.mark.parametrize(
    "lines, expected, why",
    [
        (
            [(0, 1, b"tick 1"), (10, 1, b"tick 2"), (20, 1, b"tick 3")],
            [b"tick 1", b"tick 2", b"tick 3"],
            "repeats from one writer alone all print",
        ),
        (
            [(0, 1, b"0.51 0.49"), (1, 2, b"0.52 0.48"), (2, 3, b"0.53 0.47")],
            [b"0.51 0.49", b"0.52 0.48", b"0.53 0.47"],
            "lines made only of numbers never collapse",
        ),
        (
            [(0, 1, b"ready"), (10, 2, b"ready")],
            [b"ready", b"ready"],
            "a single held repeat prints as itself",
        ),
        (
            [(0, 1, b"ready"), (5000, 2, b"ready"), (5001, 3, b"ready")],
            [b"ready", b"ready", b"ready"],
            "a repeat after the window is a new first sighting",
        ),
        (
            [(0, 1, b"ready now"), (10, 2, b"ready later"), (20, 3, b"steady now")],
            [b"ready now", b"ready later", b"steady now"],
            "words other than numbers must match",
        ),
        ([(0, 1, b""), (10, 2, b""), (20, 3, b"")], [b"", b"", b""], "empty lines never collapse"),
    ],
)
def test_dedup_rules(tmp_path, lines, expected, why):
    """Ray's rules, one case each (see why): same-writer repeats, number-only lines, single
    repeats, the window, word matching and empty lines."""
    log = dedup_log(tmp_path / "a.log", lines)
    assert out_lines(cli("cat", "--no-prefix", "--dedup", log)) == expected, why


def test_dedup_window_option_sets_the_window(tmp_path):
    """--dedup-window 1 closes windows after one second of log time instead of five."""
    log = dedup_log(
        tmp_path / "a.log",
        [(0, 1, b"ready"), (500, 2, b"ready"), (600, 3, b"ready"), (1500, 4, b"ready"), (3000, 5, b"other")],
    )
    assert out_lines(cli("cat", "--no-prefix", "--dedup", "--dedup-window", "1", log)) == [
        b"ready",
        b"ready [repeated 2x across cluster]",
        b"ready",
        b"other",
    ]
    assert out_lines(cli("cat", "--no-prefix", "--dedup", log)) == [
        b"ready",
        b"other",
        b"ready [repeated 3x across cluster]",
    ]


def test_stats_counts_per_writer_and_exits_0_on_a_clean_log(tmp_path):
    """stats reports, per actor, pid and node: logical lines, payload bytes, first and last
    time, partial lines, continuation records and drop markers; status 0."""
    log = tmp_path / "a.log"
    log.write_bytes(
        b"".join(
            [
                *line_records(b"x" * 5000, time_ms=T0, pid=1),  # 2 records, 1 continuation
                record(b"y", time_ms=T0 + 5, pid=1),
                record(b"dangling", time_ms=T0 + 9, pid=1, mark="+"),
                record(b"dropped 4 records", time_ms=T0 + 7, pid=1, stream="fdlog"),
                record(b"z", time_ms=T0 + 3, node="n2", name="Other", pid=2),
            ]
        )
    )
    result = cli("stats", "--json", log)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    writers = {(w["actor"], w["pid"], w["node"]): w for w in report["writers"]}
    actor = writers[("Actor", 1, "node-1")]
    counted = ("lines", "bytes", "partial", "continuations", "drops", "malformed")
    assert {k: actor[k] for k in counted} == {
        "lines": 4,
        "bytes": 5000 + 1 + 8 + 17,
        "partial": 1,
        "continuations": 2,
        "drops": 1,
        "malformed": 0,
    }
    assert (actor["first"], actor["last"]) == (ts_text(T0), ts_text(T0 + 9))
    assert writers[("Other", 2, "n2")]["lines"] == 1
    assert (report["records"], report["malformed"]) == (6, 0)
    table = cli("stats", log)
    assert table.returncode == 0
    assert b"Actor  1    node-1  4      5026" in table.stdout


def test_stats_exits_1_and_counts_malformed_records(tmp_path):
    """Unparsable lines and a truncated last record make stats exit 1, say how many on
    stderr, and show in the counts."""
    log = tmp_path / "a.log"
    log.write_bytes(record(b"good") + b"junk line\n" + record(b"cut off")[:-3])
    result = cli("stats", "--json", log)
    assert result.returncode == 1
    assert b"2 malformed" in result.stderr
    report = json.loads(result.stdout)
    assert (report["unparsable"], report["malformed"]) == (1, 2)
    assert report["writers"][0]["malformed"] == 1


def test_stats_hints_at_a_raw_format_log(tmp_path):
    """A log without a single prefixed record (fmt="raw") is reported as such."""
    log = tmp_path / "raw.log"
    log.write_bytes(b"INFO hello\nINFO world\n")
    result = cli("stats", log)
    assert result.returncode == 1 and b'fmt="raw"' in result.stdout


def test_tail_prints_the_last_lines_even_far_back(tmp_path):
    """tail -n N prints the last N selected lines; when the filter's lines are far before
    the end (past the first read-back window) it reaches back for them."""
    log = tmp_path / "a.log"
    early = [record(b"rare %d" % i, name="Rare", pid=7) for i in range(5)]
    filler = [record(b"filler %d" % i + b"." * 200, pid=8) for i in range(3000)]  # ~700 kB
    log.write_bytes(b"".join(early + filler))
    assert out_lines(cli("tail", "-n", "2", "--no-prefix", log)) == [
        b"filler 2998" + b"." * 200,
        b"filler 2999" + b"." * 200,
    ]
    assert out_lines(cli("tail", "-n", "3", "--no-prefix", "--actor", "Rare", log)) == [
        b"rare 2",
        b"rare 3",
        b"rare 4",
    ]
    assert out_lines(cli("tail", "--no-prefix", "--actor", "Rare", log)) == [b"rare %d" % i for i in range(5)]


def append(path, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


def test_follow_prints_appended_lines_and_holds_a_record_until_its_newline(tmp_path, follow):
    """tail -f prints the last lines, then each line appended; a record written in two
    pieces and a line split into fragments print once, whole, when they end."""
    log = tmp_path / "a.log"
    log.write_bytes(record(b"old 1") + record(b"old 2"))
    reader = follow("-n", "1", "--no-prefix", log)
    assert reader.lines_until(lambda got: got == [b"old 2"])
    append(log, record(b"new 1"))
    assert reader.lines_until(lambda got: len(got) == 2) == [b"old 2", b"new 1"]
    whole = record(b"written in two pieces")
    append(log, whole[:30])
    time.sleep(0.6)  # the follower polls every 0.2 s: it sees the first piece alone
    append(log, whole[30:] + record(b"frag one ", mark="+"))
    time.sleep(0.6)
    append(log, record(b"frag two"))
    assert reader.lines_until(lambda got: len(got) == 4) == [
        b"old 2",
        b"new 1",
        b"written in two pieces",
        b"frag one frag two",
    ]


def test_follow_shows_a_line_left_unfinished_as_partial(tmp_path, follow):
    """A fragment whose writer goes quiet shows, marked +, after about 2 s; the rest of the
    line prints when it comes."""
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    reader = follow(log)
    append(log, record(b"Loading...", mark="+"))
    started = time.monotonic()
    lines = reader.lines_until(lambda got: len(got) == 1)
    assert lines == [b"2026-11-27T02:47:06.000Z node-1 Actor[100] out+ Loading..."]
    assert time.monotonic() - started >= 1.5
    append(log, record(b" done"))
    assert reader.lines_until(lambda got: len(got) == 2)[1].endswith(b"out:  done")


def test_follow_a_directory_switches_to_a_newer_run_file(tmp_path, follow):
    """Given a log directory, tail -f follows the newest infra-*.log, and moves to a run
    file that appears later (reading it from its start), saying so on stderr."""
    old = tmp_path / "infra-260101_000000.log"
    older = tmp_path / "infra-251231_000000.log"
    older.write_bytes(record(b"older run"))
    old.write_bytes(record(b"old run"))
    os.utime(older, (1, 1))
    reader = follow("--no-prefix", tmp_path)
    assert reader.lines_until(lambda got: got == [b"old run"])
    append(old, record(b"old run, more"))
    reader.lines_until(lambda got: len(got) == 2)
    new = tmp_path / "infra-260101_000500.log"
    new.write_bytes(record(b"new run 1"))
    append(new, record(b"new run 2"))
    lines = reader.lines_until(lambda got: len(got) == 4)
    assert lines == [b"old run", b"old run, more", b"new run 1", b"new run 2"]
    append(old, record(b"old run after the switch"))
    append(new, record(b"new run 3"))
    assert reader.lines_until(lambda got: len(got) == 5)[4] == b"new run 3"
    reader.child.kill()
    reader.child.wait()
    assert str(new).encode() in reader.child.stderr.read()


def test_follow_rereads_a_truncated_file_from_its_start(tmp_path, follow):
    """A followed file cut back to empty and written again is read from its start."""
    log = tmp_path / "a.log"
    log.write_bytes(record(b"before " + b"x" * 100))
    reader = follow("--no-prefix", log)
    reader.lines_until(lambda got: len(got) == 1)
    log.write_bytes(record(b"after"))
    assert reader.lines_until(lambda got: len(got) == 2)[1] == b"after"


def test_follow_with_dedup_summarises_when_the_log_goes_quiet(tmp_path, follow):
    """In follow mode a held repeat is summarised when its window ends by the clock, even
    if no later line arrives."""
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    reader = follow("--no-prefix", "--dedup", "--dedup-window", "1", log)
    now = int(time.time() * 1000)
    append(log, b"".join(record(b"ready", time_ms=now, pid=p) for p in (1, 2, 3)))
    assert reader.lines_until(lambda got: len(got) == 2, timeout=10) == [
        b"ready",
        b"ready [repeated 2x across cluster]",
    ]


def test_output_closed_early_ends_quietly(tmp_path):
    """When the reader of the output goes away (| head), the CLI stops with status 141 and
    no traceback."""
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(record(b"line %d" % i) for i in range(200_000)))
    child = subprocess.Popen(
        [sys.executable, "-m", "skyrl_fdlog", "cat", log],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert child.stdout.readline().endswith(b"line 0\n")
    child.stdout.close()
    assert child.wait(timeout=30) == 141
    assert child.stderr.read() == b""
    child.stderr.close()


def test_demo_passes_every_later_argument_to_the_demo(monkeypatch):
    """demo hands the rest of the command line, options included, to
    skyrl_fdlog.demo.main unchanged and returns its status."""
    seen = []
    fake = type(sys)("skyrl_fdlog.demo")
    fake.main = lambda overrides: seen.append(overrides) or 7
    monkeypatch.setitem(sys.modules, "skyrl_fdlog.demo", fake)
    assert fdlog_cli.main(["demo", "trainer.log_path=/x", "+extra=1", "--cfg", "job"]) == 7
    assert seen == [["trainer.log_path=/x", "+extra=1", "--cfg", "job"]]


def test_demo_that_cannot_import_is_a_usage_error(monkeypatch, capsys):
    """If the demo cannot be imported, demo exits 2 with a one-line reason."""
    monkeypatch.setitem(sys.modules, "skyrl_fdlog.demo", None)
    assert fdlog_cli.main(["demo"]) == 2
    assert "demo cannot start" in capsys.readouterr().err


def test_cat_of_long_lines_runs_in_constant_memory(tmp_path):
    """cat of 100 MiB made of 1 MiB lines (each split into 274 records) prints every line
    exactly while the CLI's peak RSS stays under 64 MiB: neither the joiner nor the
    output buffer holds more than a few lines."""
    line = bytes(b for b in range(256) if b != 10) * 4112  # 1 MiB less 16 bytes, no newline
    block = b"".join(line_records(line, pid=1))
    log = tmp_path / "long.log"
    with open(log, "wb") as out:
        for _ in range(100):
            out.write(block)
    printed = tmp_path / "printed"
    script = (
        "import sys\n"
        "from skyrl_fdlog.cli import main\n"
        f"status = main(['cat', '--raw-bytes', '--no-prefix', {str(log)!r}])\n"
        "sys.stdout.flush()\n"
        "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(status, int(hwm) // 1024, file=sys.stderr)\n"
    )
    with open(printed, "wb") as stdout:
        child = subprocess.run(
            [sys.executable, "-c", script], stdout=stdout, stderr=subprocess.PIPE, env=cli_env(), timeout=120
        )
    status, rss_mib = map(int, child.stderr.split())
    assert status == 0
    assert printed.read_bytes() == (line + b"\n") * 100
    assert rss_mib < 64, f"peak RSS {rss_mib} MiB"
