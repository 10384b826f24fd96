"""The reader CLI's rough edges of issue 19: rotation, clocks, closed output, pipes and
unopenable paths, option ranges, hostile file names, actor names, long lines and
copytruncate.  Every test runs the real CLI in a child process on real files."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from skyrl_fdlog.reader import iter_records
from test_cli import append, out_lines
from test_reader_helpers import Reader, cli, cli_env, record


def stderr_of(reader: Reader) -> bytes:
    reader.child.kill()
    reader.child.wait()
    return reader.child.stderr.read()


# --- 6: follow the path through logrotate's create mode and a delete -------------------


@pytest.mark.parametrize("target", ["dir", "file"])
@pytest.mark.parametrize("how", ["rename", "delete"])
def test_follow_moves_to_a_new_file_at_the_same_path(tmp_path, follow, target, how):
    """When the followed path comes to name another file (logrotate's create mode renames
    the log and the helper re-creates the path; or the log is deleted and re-created), tail
    -f reads what is left of the old file, then follows the new one from its start, saying
    so on stderr, for a directory and for a file alike."""
    log = tmp_path / "infra-260101_000000.log"
    log.write_bytes(record(b"old 0"))
    reader = follow("--no-prefix", tmp_path if target == "dir" else log)
    reader.lines_until(lambda got: got == [b"old 0"])
    append(log, record(b"old 1"))
    reader.lines_until(lambda got: len(got) == 2)
    if how == "rename":
        log.rename(tmp_path / "infra-260101_000000.log.1")
    else:
        log.unlink()
    time.sleep(0.5)  # the follower sees the path empty for a few polls
    log.write_bytes(b"".join(record(b"new %d" % i) for i in range(40)))
    lines = reader.lines_until(lambda got: len(got) == 42)
    assert lines == [b"old 0", b"old 1"] + [b"new %d" % i for i in range(40)]
    assert b"now names another file" in stderr_of(reader)


WRITER = """
import sys, time, skyrl_fdlog
skyrl_fdlog.redirect(sys.argv[1], name="rotating")
for i in range(200):
    print(f"line {i}", flush=True)
    if i == 50:
        open(sys.argv[2], "w").close()  # the test's cue to rotate the log
    time.sleep(0.02)
skyrl_fdlog.restore()
"""


def test_follow_keeps_every_line_through_logrotate_create_with_the_real_helper(tmp_path, follow):
    """An actor's helper writes 200 lines at 50/s; logrotate's create mode renames the log
    and puts an empty file at its path a second in.  The helper goes on writing to the old
    file until it notices (about a second), then reopens the path.  tail -f of the log
    directory shows every line exactly once."""
    log = tmp_path / "infra-260101_000000.log"
    cue = tmp_path.parent / (tmp_path.name + ".rotate-now")
    # The writer starts once the reader shows this line: started together, a reader that
    # comes up late would begin with the last 10 lines written, not the first.
    log.write_bytes(record(b"following"))
    reader = follow("--no-prefix", "--stream", "out", tmp_path)
    reader.lines_until(lambda got: got == [b"following"])
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, log, cue],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not cue.exists():
            assert writer.poll() is None and time.monotonic() < deadline, writer.stderr.read()
            time.sleep(0.01)
        log.rename(tmp_path / "infra-260101_000000.log.1")
        log.write_bytes(b"")  # logrotate's create
        assert writer.wait(timeout=60) == 0
    finally:
        writer.kill()
        writer.wait()
    lines = reader.lines_until(lambda got: len(set(got)) >= 201, timeout=20)
    assert sorted(lines) == sorted([b"following"] + [b"line %d" % i for i in range(200)])


# --- 7: --dedup in follow mode times windows by the reader's clock ---------------------


@pytest.mark.parametrize("skew_s", [120, -120])
def test_follow_dedup_windows_run_on_the_readers_clock(tmp_path, follow, skew_s):
    """A writer whose clock is 2 minutes ahead or behind changes nothing: a window opens
    when its first line arrives and closes a window later by the reader's own clock (ahead,
    the repeats used to stay held for 2 minutes; behind, windows closed at once)."""
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    reader = follow("--no-prefix", "--dedup", "--dedup-window", "2", log)
    when = int(time.time() * 1000) + skew_s * 1000
    append(log, record(b"ready", time_ms=when, pid=1))
    reader.lines_until(lambda got: got == [b"ready"])
    time.sleep(0.6)  # a few idle polls between the first line and its repeats
    append(log, b"".join(record(b"ready", time_ms=when, pid=p) for p in (2, 3)))
    assert reader.lines_until(lambda got: len(got) == 2, timeout=6) == [
        b"ready",
        b"ready [repeated 2x across cluster]",
    ]


# --- 8: a closed output ends tail -f even on a quiet log -------------------------------


def test_follow_exits_141_when_its_output_closes_on_a_quiet_log(tmp_path):
    """`skyrl-fdlog tail -f LOG | head -1` ends (status 141, no traceback) soon after head
    exits although nothing more is written to the log, as GNU tail -f does."""
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(record(b"line %d" % i) for i in range(5)))
    child = subprocess.Popen(
        [sys.executable, "-m", "skyrl_fdlog", "tail", "-f", log],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert child.stdout.readline().endswith(b"line 0\n")
    child.stdout.close()
    try:
        assert child.wait(timeout=5) == 141
    finally:
        child.kill()
        child.wait()
    assert child.stderr.read() == b""
    child.stderr.close()


# --- 9: pipes and paths that cannot be opened ------------------------------------------


LOG = b"".join(record(b"line %d" % i) for i in range(30))
# Runs a child without root's power to bypass file permissions, so that the kernel really
# refuses a file of mode 0 (setpriv drops the capabilities from the bounding set).
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def test_tail_reads_a_pipe_given_as_dev_stdin_or_dash():
    """tail of /dev/stdin (a pipe here) or - prints the last lines once the pipe ends."""
    for name in ("/dev/stdin", "-"):
        result = cli("tail", "-n", "2", "--no-prefix", name, input=LOG)
        assert (result.returncode, out_lines(result), result.stderr) == (0, [b"line 28", b"line 29"], b"")


@pytest.mark.parametrize("follow_flag", [[], ["-f"]])
def test_tail_reads_a_fifo_to_its_end(tmp_path, follow_flag):
    """tail of a named pipe (as <(...) gives) reads it to its end and prints the last
    lines; with -f it then ends too, as GNU tail does on a pipe."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out:
            out.write(LOG)

    writer = threading.Thread(target=feed)
    writer.start()
    result = cli("tail", *follow_flag, "-n", "1", "--no-prefix", fifo, timeout=20)
    writer.join()
    assert (result.returncode, out_lines(result)) == (0, [b"line 29"])


def test_tail_of_a_socket_is_a_usage_error(tmp_path):
    """A socket cannot be opened for reading: one line naming it, status 2, as cat does."""
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        for command in (["tail"], ["tail", "-f"], ["cat"]):
            result = cli(*command, path)
            assert result.returncode == 2, result
            assert str(path) in result.stderr.decode()
            assert b"Traceback" not in result.stderr
    finally:
        server.close()


def test_tail_of_a_path_without_permission_is_a_usage_error(tmp_path):
    """A file the user may not read, or one in a directory it may not look into: one line
    naming the path and the reason, status 2, as cat does.  As root the child runs without
    root's power to bypass permissions (setpriv drops it), so the kernel really refuses."""
    unreadable = tmp_path / "a.log"
    unreadable.write_bytes(LOG)
    unreadable.chmod(0)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.log").write_bytes(LOG)
    locked.chmod(0)
    try:
        for path in (unreadable, locked / "b.log"):
            for args in (["tail", path], ["tail", "-f", path], ["cat", path]):
                result = subprocess.run(
                    [*UNPRIVILEGED, sys.executable, "-m", "skyrl_fdlog", *map(str, args)],
                    capture_output=True,
                    env=cli_env(),
                    timeout=60,
                )
                assert result.returncode == 2, result
                err = result.stderr.decode()
                assert str(path) in err and "Permission denied" in err, err
                assert "Traceback" not in err
    finally:
        locked.chmod(stat.S_IRWXU)


def test_follow_stays_on_its_file_when_a_newer_run_file_cannot_be_read(tmp_path):
    """A newer run file that cannot be opened is named on stderr with the reason; tail -f
    keeps following the file it has instead of dying with a traceback."""
    log = tmp_path / "infra-260101_000000.log"
    log.write_bytes(record(b"old"))
    child = subprocess.Popen(
        [*UNPRIVILEGED, sys.executable, "-m", "skyrl_fdlog", "tail", "-f", "--no-prefix", tmp_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    reader = Reader(child)
    try:
        reader.lines_until(lambda got: got == [b"old"])
        locked = tmp_path / "infra-260101_000500.log"
        locked.write_bytes(record(b"unreadable"))
        locked.chmod(0)
        time.sleep(1.5)  # a directory rescan (every second) meets the locked file
        append(log, record(b"still here"))
        assert reader.lines_until(lambda got: len(got) == 2) == [b"old", b"still here"]
        assert child.poll() is None
    finally:
        err = stderr_of(reader)
    assert b"cannot read" in err and b"Permission denied" in err and b"Traceback" not in err


# --- 10: option values out of range ----------------------------------------------------


@pytest.mark.parametrize(
    "args, named",
    [
        (["--dedup-window", "inf"], "inf"),
        (["--dedup-window", "1e308"], "1e308"),
        (["--dedup-window", "1e10"], "1e10"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_value(tmp_path, args, named):
    log = tmp_path / "a.log"
    log.write_bytes(LOG)
    result = cli("tail", "--dedup", *args, log)
    assert result.returncode == 2, result
    assert named in result.stderr.decode()
    assert b"Traceback" not in result.stderr and result.stdout == b""


def test_more_lines_than_a_file_can_hold_means_all_of_them(tmp_path):
    """-n past what a deque can hold prints every line, as GNU tail does."""
    log = tmp_path / "a.log"
    log.write_bytes(LOG)
    result = cli("tail", "-n", "99999999999999999999", "--no-prefix", log)
    assert (result.returncode, len(out_lines(result)), result.stderr) == (0, 30, b"")


# --- 11: file names are escaped like payloads ------------------------------------------


def test_follow_escapes_the_name_of_a_new_run_file(tmp_path, follow):
    """A run file named with escape sequences (title change, screen clear) is announced
    with them escaped, as payloads are."""
    (tmp_path / "infra-260101_000000.log").write_bytes(record(b"old"))
    reader = follow("--no-prefix", tmp_path)
    reader.lines_until(lambda got: got == [b"old"])
    hostile = tmp_path / "infra-\x1b]0;pwned\x07\x1b[2J.log"
    hostile.write_bytes(record(b"new"))
    reader.lines_until(lambda got: len(got) == 2)
    err = stderr_of(reader)
    assert b"\x1b" not in err and b"\x07" not in err
    assert rb"infra-\x1b]0;pwned\x07\x1b[2J.log" in err


# --- 12: actor and node names are cleaned as the writer cleans them --------------------


def test_actor_and_node_patterns_are_cleaned_like_the_names_in_records(tmp_path):
    """--actor 'policy worker/0' finds the records of the actor so named (written as
    policy_worker_0); patterns keep their wildcards, a long name is cut as the writer cuts
    it; --node likewise."""
    log = tmp_path / "a.log"
    log.write_bytes(
        record(b"mine", name="policy_worker_0", node="gpu_node_1")
        + record(b"other", name="critic", node="gpu_node_1")
        + record(b"caf", name="caf__", pid=2)
        + record(b"long", name="x" * 64, pid=3)
    )
    for args, expected in [
        (["--actor", "policy worker/0"], [b"mine"]),
        (["--actor", "policy worker/*"], [b"mine"]),
        (["--actor", "[p]olicy?worker/[0-9]"], [b"mine"]),
        (["--node", "gpu node:1"], [b"mine", b"other"]),
        (["--actor", "caf\u00e9"], [b"caf"]),
        (["--actor", "x" * 70], [b"long"]),  # names are cut to 64 bytes
    ]:
        result = cli("cat", "--no-prefix", *args, log)
        assert (result.returncode, out_lines(result), result.stderr) == (0, expected, b""), args


def test_a_writer_filter_that_matches_no_writer_says_so(tmp_path):
    """An --actor or --node value that matched no writer at all is named on stderr (the
    exit status stays 0: an empty selection is an answer), for cat and tail."""
    log = tmp_path / "a.log"
    log.write_bytes(LOG)
    for command in ("cat", "tail"):
        result = cli(command, "--actor", "Actor", "--actor", "policy worker/0", log)
        assert result.returncode == 0 and len(out_lines(result)) in (10, 30)
        err = result.stderr.decode()
        assert "--actor 'policy worker/0'" in err and "policy_worker_0" in err
        assert "no writer" in err and "'Actor'" not in err
        result = cli(command, "--node", "nowhere", log)
        assert (result.returncode, result.stdout) == (0, b"")
        assert "--node 'nowhere'" in result.stderr.decode()


# --- 13: long lines without a newline are cut as documented ----------------------------


def test_a_long_line_without_newline_is_cut_into_pieces_of_the_documented_size(tmp_path):
    """A 40 MiB line (not a record: records are at most 4096 bytes) comes out as pieces of
    exactly 1 MiB (docs/reader.md), the last one shorter, whatever the read chunk."""
    line = b"z" * (40 << 20) + b"tail"
    log = tmp_path / "blob.bin"
    log.write_bytes(line + b"\n" + record(b"after"))
    for chunk in (1 << 20, 3 << 20, 100_000):
        recs = list(iter_records(log, chunk_bytes=chunk))
        assert [len(r.payload) for r in recs[:-1]] == [1 << 20] * 40 + [4]
        assert b"".join(r.payload for r in recs[:-1]) == line
        assert recs[-1].payload == b"after"


# --- 14: copytruncate and fast regrowth ------------------------------------------------


def test_follow_sees_a_file_truncated_and_regrown_between_two_polls(tmp_path, follow):
    """A file cut back and written again past the follower's offset before its next poll
    is read again from its start (no line of the new content skipped), with a notice on
    stderr that lines written just before the cut may be missing."""
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(record(b"old %d" % i) for i in range(5)))
    reader = follow("--no-prefix", log)
    reader.lines_until(lambda got: len(got) == 5)
    with open(log, "r+b") as out:  # truncate and regrow in one go, far under a poll
        out.truncate(0)
        out.write(b"".join(record(b"new %d" % i) for i in range(20)))
    lines = reader.lines_until(lambda got: len(got) == 25)
    assert lines[5:] == [b"new %d" % i for i in range(20)]
    assert b"may be missing" in stderr_of(reader)
