"""The reader API (skyrl_fdlog.reader): parsing, rejoining, merging, malformed input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyrl_fdlog.reader import (
    CUT_BYTES,
    LineJoiner,
    Record,
    iter_lines,
    iter_records,
    join_lines,
    merge_by_time,
)
from test_reader_helpers import PAYLOAD_MAX, T0, cli_env, line_records, pattern, record


def write(path: Path, *chunks: bytes | list[bytes]) -> Path:
    path.write_bytes(b"".join(b"".join(c) if isinstance(c, list) else c for c in chunks))
    return path


def test_record_fields_are_parsed_exactly(tmp_path):
    """Every field of a well-formed record comes back typed: ts text, epoch ms, node, name,
    pid, stream, mark, payload bytes, and an aware UTC datetime."""
    log = write(tmp_path / "a.log", b"2026-11-27T02:47:06.123Z node-1 VLLMEngine:0[12345] err~ 42%|###\n")
    (rec,) = iter_records(log)
    assert rec == Record(
        "2026-11-27T02:47:06.123Z", T0 + 123, "node-1", "VLLMEngine:0", 12345, "err", "~", b"42%|###", None, 1
    )
    assert rec.datetime == dt.datetime(2026, 11, 27, 2, 47, 6, 123000, tzinfo=dt.timezone.utc)
    assert rec.parsed and not rec.partial


def test_records_have_slots_and_dataclass_behaviour():
    """Record is a dataclass with __slots__ (no per-instance dict, so millions of records
    stay small) on every supported Python, with its defaults, equality and replace()."""
    rec = Record("2026-11-27T02:47:06.000Z", T0, "node-1", "A", 1, "out", ":", b"x")
    assert not hasattr(rec, "__dict__")
    assert Record.__slots__ == tuple(f.name for f in dataclasses.fields(Record))
    assert (rec.malformed, rec.parts) == (None, 1)
    with pytest.raises(AttributeError):
        rec.extra = 1  # type: ignore[attr-defined]
    assert dataclasses.replace(rec, mark="+") == Record(*dataclasses.astuple(rec)[:6], "+", b"x")


def test_time_ms_follows_each_record_across_seconds_and_days(tmp_path):
    """The per-second cache in the parser never hands a record another second's epoch:
    times across second, minute and day boundaries convert exactly."""
    times = [T0, T0 + 999, T0 + 1000, T0 + 59_001, T0 + 86_400_000, T0 + 86_400_000 + 5, T0 + 1]
    log = write(tmp_path / "a.log", [record(b"x", time_ms=t) for t in times])
    assert [r.time_ms for r in iter_records(log)] == times


def test_payload_bytes_pass_unchanged(tmp_path):
    """Invalid UTF-8, NUL, escape sequences, carriage returns and a trailing CR are payload
    bytes and come back byte for byte; nothing is decoded or stripped."""
    payload = b"\x00\xff\xfe bad \xc3( utf8 \x1b[2J\x1b]0;title\x07 \rover \xe2\x80\xae rtl\r"
    log = write(tmp_path / "a.log", record(payload), record(b" lead and trail "))
    assert [r.payload for r in iter_records(log)] == [payload, b" lead and trail "]


def test_payload_imitating_a_prefix_stays_payload(tmp_path):
    """A payload that is itself a full record prefix (even after a CR) is payload of the
    real writer's record, never a second record."""
    fake = b"2026-11-27T02:47:06.999Z evil-node Evil[1] err: rm -rf"
    log = write(
        tmp_path / "a.log",
        record(fake, name="Honest", pid=7),
        record(b"\r" + fake, name="Honest", pid=7, mark="+"),
        record(b" " + fake, name="Honest", pid=7),
    )
    recs = list(iter_records(log))
    assert [(r.name, r.pid, r.node, r.stream) for r in recs] == [("Honest", 7, "node-1", "out")] * 3
    assert recs[0].payload == fake
    (joined, second) = list(iter_lines(log))[:2]
    assert joined.payload == fake and second.payload == b"\r" + fake + b" " + fake


@pytest.mark.parametrize(
    "line, why",
    [
        (b"no prefix at all", "plain text (a fmt=raw log)"),
        (b"", "an empty line"),
        (b"2026-13-27T02:47:06.123Z node-1 A[1] out: x", "month 13"),
        (b"2026-02-30T02:47:06.123Z node-1 A[1] out: x", "30 February"),
        (b"2026-11-27T02:47:06.123Z node 1 A[1] out: x", "space in node"),
        (b"2026-11-27T02:47:06.123Z " + b"n" * 65 + b" A[1] out: x", "node of 65 bytes"),
        (b"2026-11-27T02:47:06.123Z node-1 " + b"a" * 65 + b"[1] out: x", "name of 65 bytes"),
        (b"2026-11-27T02:47:06.123Z node-1 A[x] out: x", "pid not decimal"),
        (b"2026-11-27T02:47:06.123Z node-1 A[1] log: x", "unknown stream"),
        (b"2026-11-27T02:47:06.123Z node-1 A[1] out! x", "unknown mark"),
        (b"2026-11-27T02:47:06.123Z node-1 A[1] out:x", "no space after the mark"),
        (b"2026-11-27T02:47:06Z node-1 A[1] out: x", "no milliseconds"),
    ],
)
def test_lines_that_do_not_match_are_unparsable_with_the_whole_line_as_payload(tmp_path, line, why):
    """Anything off the format (each case says how) becomes one unparsable record holding
    the whole line, between well-formed records that still parse."""
    log = write(tmp_path / "a.log", record(b"before"), line + b"\n", record(b"after"))
    before, bad, after = iter_records(log)
    assert (before.payload, after.payload) == (b"before", b"after")
    assert bad.malformed == "unparsable" and bad.payload == line and not bad.parsed
    assert (bad.node, bad.name, bad.pid, bad.stream, bad.time_ms) == ("", "", 0, "", 0)


def test_prefix_longer_than_the_fast_path_head_still_parses(tmp_path):
    """A pid long enough to push the prefix past the first 256 bytes (allowed by the
    format's \\d+) parses like any other record."""
    pid = int("9" * 200)
    log = write(tmp_path / "a.log", record(b"long pid", pid=pid, name="n" * 64, node="m" * 64))
    (rec,) = iter_records(log)
    assert (rec.pid, rec.payload, rec.malformed) == (pid, b"long pid", None)


def test_truncated_last_record_is_flagged_and_ends_its_line_as_partial(tmp_path):
    """A file cut inside its last record (no final newline) still yields that record with
    the bytes present, flagged truncated; the joiner ends the chain there as a partial
    line that keeps the earlier fragments."""
    cut = record(b"second half that was cut", mark=":")[:-9]
    log = write(tmp_path / "a.log", record(b"whole"), record(b"first half ", mark="+"), cut)
    recs = list(iter_records(log))
    assert [r.malformed for r in recs] == [None, None, "truncated"]
    assert recs[-1].payload == b"second half that"
    lines = list(iter_lines(log))
    assert [(line.payload, line.mark, line.malformed, line.parts) for line in lines] == [
        (b"whole", ":", None, 1),
        (b"first half second half that", "+", "truncated", 2),
    ]


def test_truncated_inside_the_prefix_is_truncated_without_fields(tmp_path):
    """A cut inside the prefix leaves a record with no writer, flagged truncated, whose
    payload is the bytes that were there."""
    log = write(tmp_path / "a.log", record(b"ok"), b"2026-11-27T02:47:0")
    ok, cut = iter_lines(log)
    assert ok.payload == b"ok"
    assert (cut.malformed, cut.parsed, cut.payload) == ("truncated", False, b"2026-11-27T02:47:0")


def lengths_around_every_boundary(limit: int) -> list[int]:
    """0, 1, and every length one below, at and one above a multiple of the record payload,
    up to ``limit`` (1 MiB gives 822 lengths)."""
    lengths = {0, 1, limit - 1, limit, limit + 1}
    for k in range(1, limit // PAYLOAD_MAX + 1):
        lengths.update({k * PAYLOAD_MAX - 1, k * PAYLOAD_MAX, k * PAYLOAD_MAX + 1})
    return sorted(lengths)


@pytest.mark.slow
def test_round_trip_every_length_across_record_boundaries_up_to_1_mib(tmp_path):
    """Lines of every length from 0 to 1 MiB that crosses a record boundary, written as the
    format says with other writers' records between every fragment, rejoin to their
    exact bytes, in order, with the expected number of parts; nothing else comes out."""
    lengths = lengths_around_every_boundary(1 << 20)
    log = tmp_path / "boundaries.log"
    with open(log, "wb") as out:
        for seed, length in enumerate(lengths):
            noise = [record(b"noise %d" % i, pid=200 + i % 3) for i in range(3)]
            for i, rec in enumerate(line_records(pattern(length, seed), pid=100)):
                out.write(rec + noise[i % 3])
    checked = 0
    for line in iter_lines(log):  # compared one by one: all lines together are 430 MB
        if line.pid != 100:
            assert line.payload.startswith(b"noise ")
            continue
        length = lengths[checked]
        assert line.payload == pattern(length, checked), f"length {length}"
        assert (line.mark, line.malformed) == (":", None)
        assert line.parts == max(1, -(-length // PAYLOAD_MAX))
        checked += 1
    assert checked == len(lengths)


def test_round_trip_through_the_real_writer(tmp_path):
    """Lines written with os.write on fds 1 and 2 of a process redirected by
    skyrl_fdlog.redirect() read back, per stream, as exactly the lines written: every
    length around the first 16 record boundaries and around 1 MiB, with every byte value
    but the line end and the carriage return (which the writer turns into progress
    snapshots).  The writer drops batches by design when its queue overflows, so big
    lines are paced and the log must hold no drop marker."""
    lengths = [n for n in lengths_around_every_boundary(1 << 20) if n <= 16 * PAYLOAD_MAX + 1]
    lengths += [(1 << 20) - 1, 1 << 20, (1 << 20) + 1]
    log = tmp_path / "real.log"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import skyrl_fdlog
        from test_reader_helpers import pattern
        skyrl_fdlog.redirect({str(log)!r}, name="RoundTrip")
        for seed, length in enumerate({lengths!r}):
            data = pattern(length, seed, b"\\n\\r") + b"\\n"
            fd = 1 + seed % 2
            while data:
                data = data[os.write(fd, data):]
            if length > 65536:
                time.sleep(0.2)
        skyrl_fdlog.restore()
    """)
    child = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True, timeout=120)
    assert child.returncode == 0, child.stderr.decode(errors="replace")
    lines = list(iter_lines(log))
    assert [line.payload for line in lines if line.stream == "fdlog"] == []
    for stream, parity in (("out", 0), ("err", 1)):
        expected = [pattern(n, s, b"\n\r") for s, n in enumerate(lengths) if s % 2 == parity]
        assert [line.payload for line in lines if line.stream == stream] == expected
    assert {(line.name, line.mark, line.malformed) for line in lines} == {("RoundTrip", ":", None)}


@st.composite
def interleaved_logs(draw):
    """Lines from up to four writers (two nodes, two pids, two streams), each cut at random
    fragment sizes, fragments of all writers interleaved at random but in order per
    writer; ends are ':' or '~'."""
    writers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["n1", "n2"]), st.sampled_from([5, 6]), st.sampled_from(["out", "err"])
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    queues, expected = [], {}
    for node, pid, stream in writers:
        payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
        lines = draw(st.lists(st.tuples(payloads, st.integers(1, 64), st.sampled_from(":~")), max_size=8))
        records = []
        for payload, split, end in lines:
            records += line_records(payload, split=split, end=end, node=node, pid=pid, stream=stream)
        queues.append(records)
        expected[(node, pid, stream)] = [(payload, end) for payload, _, end in lines]
    order = draw(st.permutations([i for i, q in enumerate(queues) for _ in q]))
    positions = [0] * len(queues)
    data = []
    for i in order:
        data.append(queues[i][positions[i]])
        positions[i] += 1
    return b"".join(data), expected


@settings(max_examples=300, deadline=None)
@given(interleaved_logs())
def test_any_interleaving_of_fragments_rejoins_exactly(log):
    """Property: however fragments of several writers interleave and however lines are cut,
    each writer's lines come back whole, exact and in order, with their end mark."""
    data, expected = log
    got: dict[tuple[str, int, str], list[tuple[bytes, str]]] = {key: [] for key in expected}
    for line in iter_lines(io.BytesIO(data)):
        got[(line.node, line.pid, line.stream)].append((line.payload, line.mark))
    assert got == expected


def test_dangling_chains_come_out_partial_at_the_end_oldest_first(tmp_path):
    """Chains never terminated (writer died) are released at the end as partial lines,
    in the order they started, after the complete lines."""
    log = write(
        tmp_path / "a.log",
        record(b"b1 ", pid=2, mark="+"),
        record(b"a1 ", pid=1, mark="+"),
        record(b"done", pid=3),
        record(b"b2", pid=2, mark="+"),
    )
    assert [(line.pid, line.payload, line.mark) for line in iter_lines(log)] == [
        (3, b"done", ":"),
        (2, b"b1 b2", "+"),
        (1, b"a1 ", "+"),
    ]


def test_a_chain_over_the_line_cap_is_released_in_partial_pieces():
    """A line longer than max_line_bytes comes out as partial pieces of at least the cap,
    then the rest as a complete line; concatenated they are still the line."""
    payload = pattern(10_000)
    recs = list(iter_records(io.BytesIO(b"".join(line_records(payload, split=1000)))))
    lines = list(join_lines(recs, max_line_bytes=3000))
    assert [(len(line.payload), line.mark) for line in lines] == [
        (3000, "+"),
        (3000, "+"),
        (3000, "+"),
        (1000, ":"),
    ]
    assert b"".join(line.payload for line in lines) == payload


def test_pending_bytes_over_the_total_cap_release_the_oldest_chain():
    """When all pending chains together pass max_pending_bytes the oldest is released as a
    partial line at once, so memory stays bounded however many writers die mid-line."""
    joiner = LineJoiner(max_line_bytes=10_000, max_pending_bytes=2500)
    out = []
    for pid in range(1, 4):
        for rec in iter_records(io.BytesIO(record(b"x" * 1000, pid=pid, mark="+"))):
            out += joiner.push(rec)
    assert [(line.pid, line.mark, len(line.payload)) for line in out] == [(1, "+", 1000)]
    assert [line.pid for line in joiner.finish()] == [2, 3]


def test_merge_by_time_interleaves_files_and_keeps_each_files_order(tmp_path):
    """Records of per-node files merge by time; equal times keep file order, an unparsable
    line stays after the record before it, and a file's own order is never changed."""
    a = write(
        tmp_path / "a.log",
        record(b"a0", time_ms=T0, node="a"),
        b"a-garbage\n",
        record(b"a5", time_ms=T0 + 5, node="a"),
        record(b"a3", time_ms=T0 + 3, node="a"),
    )
    b = write(
        tmp_path / "b.log", record(b"b0", time_ms=T0, node="b"), record(b"b4", time_ms=T0 + 4, node="b")
    )
    merged = [r.payload for r in merge_by_time(iter_records(a), iter_records(b))]
    assert merged == [b"a0", b"a-garbage", b"b0", b"b4", b"a5", b"a3"]


def test_reads_from_binary_streams_and_rejects_text_streams(tmp_path):
    """A binary stream (a pipe here) reads like a path and is left open for its owner; a
    text stream is refused with a message saying to open in binary."""
    r, w = os.pipe()
    os.write(w, record(b"via pipe"))
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        assert [line.payload for line in iter_lines(pipe)] == [b"via pipe"]
        assert not pipe.closed
    with pytest.raises(TypeError, match="binary"):
        list(iter_records(io.StringIO("text")))


def test_an_overlong_line_without_newline_is_cut_to_bound_memory(tmp_path):
    """Input that is not a log (here 20 MiB without a newline) is cut into unparsable pieces
    of CUT_BYTES (1 MiB) instead of being held whole."""
    log = write(tmp_path / "blob.bin", b"z" * (20 << 20), b"\n", record(b"after"))
    recs = list(iter_records(log))
    assert all(r.malformed == "unparsable" for r in recs[:-1])
    assert [len(r.payload) for r in recs[:-1]] == [CUT_BYTES] * 20
    assert recs[-1].payload == b"after"


@pytest.mark.slow
def test_gigabyte_file_reads_in_constant_memory(tmp_path):
    """A 1 GiB log (1 MiB lines cut into 3840-byte fragments, interleaved with short lines
    from other writers) is read by a child process with every line checked, while its
    peak RSS grows by less than 48 MiB over what the interpreter and the reader's imports
    take (about 8 MiB measured natively; the growth, not the peak, because under QEMU's user
    emulation, where the aarch64 wheel is tested, the emulator's own memory counts too); a
    deliberately damaged byte is caught."""
    block = b"".join(
        rec + record(b"short %d" % i, pid=9) for i, rec in enumerate(line_records(pattern(1 << 20, 7), pid=1))
    )
    repeats = (1 << 30) // len(block) + 1
    log = tmp_path / "big.log"
    # One changed payload byte in the 100th block proves that the check checks.
    damaged = bytearray(block)
    where = block.index(b"out+ ") + 5
    damaged[where] = 0x58 if damaged[where] != 0x58 else 0x59
    with open(log, "wb") as out:
        for i in range(repeats):
            out.write(damaged if i == 100 else block)
    assert log.stat().st_size >= 1 << 30
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from skyrl_fdlog.reader import iter_lines
        from test_reader_helpers import pattern

        def peak_kib():
            # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the
            # forked parent (here pytest), while VmHWM belongs to this process image alone.
            return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])

        expected = pattern(1 << 20, 7)
        before_kib = peak_kib()
        long_lines = bad = 0
        for line in iter_lines({str(log)!r}):
            if line.pid == 1:
                long_lines += 1
                bad += line.payload != expected
        print(long_lines, bad, (peak_kib() - before_kib) / 1024)
    """)
    child = subprocess.run(
        [sys.executable, "-c", script], env=cli_env(), capture_output=True, timeout=120, check=True
    )
    long_lines, bad, growth_mib = child.stdout.split()
    assert (int(long_lines), int(bad)) == (repeats, 1)
    assert float(growth_mib) < 48, f"peak RSS grew by {growth_mib} MiB while reading"
