"""The deduplicator behind --dedup (skyrl_fdlog.reader._dedup), driven directly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyrl_fdlog.reader import Record
from skyrl_fdlog.reader._dedup import Deduplicator, Repeat, pattern_of
from test_reader_helpers import T0


def line(payload: bytes, pid: int, offset_ms: int = 0) -> Record:
    return Record("", T0 + offset_ms, "node-1", "W", pid, "out", ":", payload)


@pytest.mark.parametrize(
    "payload, key",
    [
        (b"loaded shard 1 from 0x7f3a in 2.5s", b"loaded shard # from # in #"),
        (b"  spaced \t out  7 ", b"spaced out #"),
        (b"step1 done", b"# done"),
        (b"uuid 3f2a-bb91-c0de", b"uuid #"),
        (b"0.5 0.25", None),
        (b"42", None),
        (b"", None),
        (b"   ", None),
    ],
)
def test_pattern_keeps_words_and_merges_every_word_with_a_digit(payload, key):
    """The matching key keeps digit-free words, turns each word holding a digit into one
    placeholder, folds white space; a payload of numbers only (or nothing) has no key."""
    assert pattern_of(payload) == key


def pattern_by_the_rules(payload: bytes) -> bytes | None:
    """The module's rules for the matching key, word by word in plain Python."""
    words = payload.split()
    with_digit = [any(48 <= byte <= 57 for byte in word) for word in words]
    if all(with_digit):
        return None
    return b" ".join(b"#" if digit else word for word, digit in zip(words, with_digit))


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.lists(
            st.sampled_from(
                [
                    b" ",
                    b"\t",
                    b"\r\n",
                    b"\x0b",
                    b"\x0c",
                    b"\x1c",
                    b"\xa0",
                    b"a",
                    b"Z",
                    b"7",
                    b"0x",
                    b".",
                    b"#",
                    b"\xff",
                ]
            ),
            max_size=30,
        ).map(b"".join),
    )
)
def test_pattern_follows_the_rules_on_any_bytes(payload):
    """Property: the regexes behind pattern_of give the key the rules describe, on any
    bytes: space, tab, CR, LF, VT and FF separate words (other bytes, such as \\x1c and
    NBSP, do not), and only the digits 0-9 count as digits."""
    assert pattern_of(payload) == pattern_by_the_rules(payload)


def test_streams_are_matched_apart():
    """The same text on out and on err are different patterns, as Ray keeps a
    deduplicator per stream."""
    dedup = Deduplicator()
    first = line(b"ready", 1)
    other_stream = Record("", T0, "node-1", "W", 2, "err", ":", b"ready")
    assert dedup.push(first) == [first]
    assert dedup.push(other_stream) == [other_stream]


def test_open_windows_are_capped_and_the_oldest_closes_early():
    """With max_patterns windows open, a new pattern closes the oldest one first (printing
    what it held), so memory stays bounded on a log of ever-new lines."""
    dedup = Deduplicator(max_patterns=2)
    dedup.push(line(b"alpha", 1))
    dedup.push(line(b"alpha", 2))
    dedup.push(line(b"alpha", 3))
    dedup.push(line(b"beta", 1))
    out = dedup.push(line(b"gamma", 1))
    assert [(type(o).__name__, getattr(o, "count", None)) for o in out] == [("Repeat", 2), ("Record", None)]
    assert out[0].line.pid == 3 and out[1].payload == b"gamma"
    assert len(dedup._windows) == 2


def test_expire_closes_windows_by_the_clock():
    """expire(now) closes every window opened a window or more before now, and only those."""
    dedup = Deduplicator(window_s=1.0)
    for pid in (1, 2, 3):
        dedup.push(line(b"ready", pid))
    dedup.push(line(b"steady", 1, offset_ms=500))
    assert dedup.expire(T0 + 999) == []
    (summary,) = dedup.expire(T0 + 1000)
    assert isinstance(summary, Repeat) and summary.count == 2
    assert dedup.expire(T0 + 1500) == []  # "steady" repeated nothing: forgotten silently
    assert dedup.flush() == []
