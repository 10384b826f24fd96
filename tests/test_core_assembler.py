"""Property tests of the line assembler through its C test entry point (fdl_test_assemble),
which the tests build themselves (the assembler_entry fixture, tests/_assembler_entry.py)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from _assembler_entry import AssemblerEntry
from records import lines_by_writer, parse

PAYLOAD_MAX = 3840


def assemble(
    entry: AssemblerEntry,
    chunks: list[tuple[int, int, bytes]],
    *,
    raw: bool = False,
    snapshot_ms: int = 5000,
    times: list[int] | None = None,
    close: bool = True,
) -> bytes:
    """Feed (pid, stream, bytes) chunks as the helper would; return the records written."""
    ffi, lib = entry
    data = b"".join(chunk for _, _, chunk in chunks)
    offsets, position = [], 0
    for _, _, chunk in chunks:
        offsets.append(position)
        position += len(chunk)
    times = times or [1_700_000_000_000] * len(chunks)
    capacity = 2 * len(data) + 300 * (len(data) // 100 + len(chunks) + 4)
    out = ffi.new("unsigned char[]", capacity)
    size = lib.fdl_test_assemble(
        b"Actor",
        b"node",
        raw,
        snapshot_ms,
        ffi.from_buffer(data),
        ffi.new("long[]", offsets),
        ffi.new("long[]", [len(c) for _, _, c in chunks]),
        ffi.new("int[]", [p for p, _, _ in chunks]),
        ffi.new("int[]", [s for _, s, _ in chunks]),
        ffi.new("long long[]", times),
        len(chunks),
        close,
        out,
        capacity,
    )
    assert size >= 0
    return ffi.buffer(out, size)[:]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


streams = st.binary(max_size=20000) | st.lists(
    st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"\0", b"\xff\xfe", b"x" * 5000, b"\x1b[2K"]), max_size=60
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=streams, cuts=st.lists(st.integers(min_value=0), max_size=30))
# Found by hypothesis: a slot freed after a whole line forgot its snapshot rate limit.
@example(data=b"aaaa\r\r\n\r\n\r\n\x1b[2K\x1b[2K\x1b[2K\r\n\x1b[2K\r\r\n", cuts=[124])
def test_any_chunking_gives_the_same_records(assembler_entry, data, cuts):
    """However the kernel splits one writer's bytes into reads, the records are the same."""
    whole = assemble(assembler_entry, [(7, 1, data)])
    pieces = split_at(data, cuts)
    assert assemble(assembler_entry, [(7, 1, piece) for piece in pieces]) == whole


@settings(max_examples=200, deadline=None)
@given(
    a=streams,
    b=streams,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    order=st.lists(st.booleans(), max_size=60),
)
def test_interleaved_writers_are_assembled_separately(assembler_entry, a, b, cuts, order):
    """Chunks of two writers in any interleaving give each writer the lines it would get alone."""
    pieces_a, pieces_b = split_at(a, cuts), split_at(b, cuts[::-1])
    chunks = []
    while pieces_a or pieces_b:
        take_a = pieces_a and (not pieces_b or (order.pop() if order else True))
        chunks.append((11, 1, pieces_a.pop(0)) if take_a else (22, 2, pieces_b.pop(0)))
    together = lines_by_writer(parse(assemble(assembler_entry, chunks))[0])
    alone_a = lines_by_writer(parse(assemble(assembler_entry, [(11, 1, a)]))[0])
    alone_b = lines_by_writer(parse(assemble(assembler_entry, [(22, 2, b)]))[0])
    assert together == {**alone_a, **alone_b}


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=9000).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")), max_size=8
    ),
    tail=st.binary(max_size=9000).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
)
def test_lines_rejoin_exactly_and_records_fit_pipe_buf(assembler_entry, lines, tail):
    """Without carriage returns, rejoined records give back every line byte for byte, a
    trailing partial line is marked partial, and no record exceeds PIPE_BUF."""
    data = b"".join(line + b"\n" for line in lines) + tail
    out = assemble(assembler_entry, [(5, 1, data)])
    records, bad = parse(out)
    assert bad == []
    assert all(len(r.payload) <= PAYLOAD_MAX for r in records)
    assert max((len(line) + 1 for line in out.split(b"\n")), default=0) <= 4096
    expected = [(line, ":") for line in lines] + ([(tail, "partial")] if tail else [])
    assert lines_by_writer(records).get((5, "out"), []) == expected


def test_one_mebibyte_line_splits_into_fragments(assembler_entry):
    """A 1 MiB line becomes 273 '+' fragments and a final ':' record that rejoin exactly."""
    line = bytes(range(256)).replace(b"\n", b"N").replace(b"\r", b"R") * 4096
    records, _ = parse(assemble(assembler_entry, [(9, 1, line + b"\n")]))
    assert [r.mark for r in records] == ["+"] * 273 + [":"]
    assert b"".join(r.payload for r in records) == line


def test_redraws_are_rate_limited_by_time(assembler_entry):
    """A bar redrawn every 100 ms for 12 s gives a snapshot at most every 5 s plus its final line."""
    chunks = [(3, 2, f"\r{i}%".encode()) for i in range(121)] + [(3, 2, b"\n")]
    times = [1_000_000 + 100 * i for i in range(122)]
    records, _ = parse(assemble(assembler_entry, chunks, times=times))
    assert [(r.mark, r.payload) for r in records] == [
        ("~", b"0%"),
        ("~", b"50%"),
        ("~", b"100%"),
        (":", b"120%"),
    ]


def test_fragment_then_redraw_closes_the_chain(assembler_entry):
    """A fragment chain interrupted by a carriage return is closed by a snapshot, so a reader
    never glues the redrawn text onto the earlier fragment."""
    long = b"y" * 5000
    records, _ = parse(assemble(assembler_entry, [(4, 1, long + b"\rnext\n")]))
    assert [r.mark for r in records] == ["+", "~", ":"]
    assert lines_by_writer(records)[(4, "out")] == [(long, "~"), (b"next", ":")]


def test_many_writers_beyond_the_slot_table(assembler_entry):
    """More writers with unfinished lines than slots: the oldest are flushed as fragments and
    their lines still rejoin."""
    chunks = [(1000 + i, 1, f"start {i} ".encode()) for i in range(300)]
    chunks += [(1000 + i, 1, f"end {i}\n".encode()) for i in range(300)]
    records, _ = parse(assemble(assembler_entry, chunks))
    lines = lines_by_writer(records)
    assert all(lines[(1000 + i, "out")] == [(f"start {i} end {i}".encode(), ":")] for i in range(300))


def test_a_full_table_of_finished_writers_leaves_an_unfinished_line_whole(assembler_entry):
    """Slots stay with their writers after whole lines (a writer's next line then needs no
    new slot), so the table fills with them; a new writer takes one of those, never the slot
    of a line still unfinished, even when that line's writer was heard from least recently."""
    chunks = [(7, 1, b"unfinished ")]
    chunks += [(1000 + i, 1, f"whole {i}\n".encode()) for i in range(300)]
    chunks += [(7, 1, b"line\n")]
    times = [1_700_000_000_000 + i for i in range(len(chunks))]
    records, _ = parse(assemble(assembler_entry, chunks, times=times))
    assert [(r.pid, r.mark) for r in records if r.pid == 7] == [(7, ":")]
    lines = lines_by_writer(records)
    assert lines[(7, "out")] == [(b"unfinished line", ":")]
    assert all(lines[(1000 + i, "out")] == [(f"whole {i}".encode(), ":")] for i in range(300))


def test_raw_format_payloads_only(assembler_entry):
    """fmt='raw' records are the bare lines."""
    assert assemble(assembler_entry, [(1, 1, b"one\ntwo\r\n")], raw=True) == b"one\ntwo\n"


one_channel = st.lists(st.sampled_from([b"\n", b"x", b"p", b"x" * 5000]), max_size=40).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(
    pipe=one_channel,
    socket=one_channel,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    order=st.lists(st.booleans(), max_size=60),
)
@example(pipe=b"x" * 5000, socket=b"p\n", cuts=[], order=[False, True])
def test_two_channels_of_one_writer_never_mix(assembler_entry, pipe, socket, cuts, order):
    """The actor's pipe (stream 1 + 16) and its socket (stream 1) are two channels of one pid and
    stream: in any interleaving each line holds bytes of one channel only, and each channel's
    bytes come back in order; a line of one may be cut where the other's record cuts in."""
    socket = socket.translate(bytes.maketrans(b"xp", b"ys"))  # an alphabet of its own
    pieces_pipe, pieces_socket = split_at(pipe, cuts), split_at(socket, cuts[::-1])
    chunks = []
    while pieces_pipe or pieces_socket:
        take_pipe = pieces_pipe and (not pieces_socket or (order.pop() if order else True))
        chunks.append((7, 17, pieces_pipe.pop(0)) if take_pipe else (7, 1, pieces_socket.pop(0)))
    out = assemble(assembler_entry, chunks)
    records, bad = parse(out)
    assert bad == [] and max(map(len, out.split(b"\n"))) < 4096
    assert {r.stream for r in records} <= {"out"}
    rebuilt = {"pipe": b"", "socket": b""}
    for line, _ in lines_by_writer(records).get((7, "out"), []):
        assert set(line) <= set(b"xp") or set(line) <= set(b"ys"), line[:80]
        rebuilt["pipe" if set(line) <= set(b"xp") else "socket"] += line
    assert rebuilt == {"pipe": pipe.replace(b"\n", b""), "socket": socket.replace(b"\n", b"")}


def test_a_channel_cutting_into_the_other_ends_its_open_chain(assembler_entry):
    """The pipe's 5,000-byte line is half written (one fragment out) when the socket's line
    arrives: the chain is ended by an empty line end first, so no reader joins them."""
    chunks = [(7, 17, b"x" * 5000), (7, 1, b"hello\n"), (7, 17, b"\n")]
    records, _ = parse(assemble(assembler_entry, chunks))
    assert [(r.mark, len(r.payload)) for r in records] == [("+", 3840), (":", 0), (":", 5), (":", 1160)]
    lines = [text for text, _ in lines_by_writer(records)[(7, "out")]]
    assert lines == [b"x" * 3840, b"hello", b"x" * 1160]
