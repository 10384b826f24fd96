"""skyrl_fdlog.reader.tail(): an actor's last lines from a big log without reading all of it."""

from __future__ import annotations

from pathlib import Path

from conftest import run_python
from skyrl_fdlog.reader import tail


def record(actor: str, pid: int, text: str, mark: str = ":") -> bytes:
    return f"2026-11-27T02:47:06.123Z node-1 {actor}[{pid}] out{mark} {text}\n".encode()


def test_the_last_lines_of_one_actor_from_all_its_processes(tmp_path: Path):
    log = tmp_path / "infra.log"
    body = b"".join(
        record("vllm-engine-0", 10 + i % 2, f"engine {i}") + record("policy_worker_0", 20, f"policy {i}")
        for i in range(5000)
    )
    log.write_bytes(
        body
        + record("vllm-engine-0", 11, "cuda out ", "+")
        + record("policy_worker_0", 20, "last")
        + record("vllm-engine-0", 11, "of memory")
    )
    lines = tail(log, 3, actor="vllm-engine-*")
    assert [(line.pid, line.payload) for line in lines] == [
        (10, b"engine 4998"),
        (11, b"engine 4999"),
        (11, b"cuda out of memory"),
    ]
    assert [line.payload for line in tail(log, 2, pid=20)] == [b"policy 4999", b"last"]
    assert [line.payload for line in tail(log, 1, actor="policy worker/0")] == [b"last"]  # cleaned name
    assert tail(log, 5, actor="nobody") == []
    assert len(tail(log, 100000)) == 10002  # more than there are: all, from the start


def test_a_huge_log_is_read_from_its_end(tmp_path: Path):
    """1 GiB of other output before the actor's lines: tail reads a few MiB, not the file
    (/proc/self/io counts the bytes the child read)."""
    log = tmp_path / "huge.log"
    with open(log, "wb") as stream:
        stream.truncate(1 << 30)  # sparse: no disk used
        stream.seek(1 << 30)
        stream.write(b"\n" + b"".join(record("Engine", 7, f"line {i}") for i in range(50)))
    result = run_python(f"""
        def read_bytes():
            with open("/proc/self/io") as io:
                return int(next(l for l in io if l.startswith("rchar")).split()[1])
        from skyrl_fdlog.reader import tail
        before = read_bytes()
        lines = tail({str(log)!r}, 20, actor="Engine")
        print(read_bytes() - before, lines[-1].payload.decode(), len(lines), sep="|")
    """)
    read, last, count = result.stdout.decode().strip().split("|")
    assert (last, count) == ("line 49", "20")
    assert int(read) < 8 << 20, f"read {int(read):,} bytes of a 1 GiB log for 20 lines"
