"""Many writers over time: per-pid state is freed and the helper's memory stays flat.

The soak test runs SKYRL_FDLOG_SOAK_SECONDS (default 15 s; 60 s with SKYRL_FDLOG_LONG=1).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections import defaultdict

import pytest

from _faults import LONG, finish, start_actor, vm_rss_kib, wait_report
from conftest import pid_alive
from records import parse

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("SKYRL_FDLOG_SOAK_SECONDS", 60 if LONG else 15))
SOAK_WRITERS = 64


def sample_rss(pid: int, until, interval: float = 0.25) -> list[tuple[float, int]]:
    """(seconds, VmRSS KiB) of `pid` every `interval` until until() is true or it exits."""
    samples, start = [], time.monotonic()
    while not until() and pid_alive(pid):
        try:
            samples.append((time.monotonic() - start, vm_rss_kib(pid)))
        except (OSError, AssertionError):
            break
        time.sleep(interval)
    return samples


def test_a_thousand_short_lived_children(tmp_path):
    """1,000 forked children, 100 alive at a time, each write a whole line and a line without
    newline and exit.  Every whole line lands under its child's pid; every unfinished line is
    flushed as a `+` fragment soon after its writer exits (its per-pid slot is freed while the
    actor still runs, not only at the end); the helper's RSS after 1,000 children is what it
    was after 200 (plus at most 256 KiB).  The buffer is 256 KiB so that its ring of batches is
    fully in use after the first 200 children and any growth would be per-pid state."""
    log = tmp_path / "infra.log"
    signals = {name: str(tmp_path / name) for name in ("ready", "warm", "go", "spawned", "done")}
    actor = start_actor(
        f"""
        s = {signals!r}
        r = skyrl_fdlog.redirect({str(log)!r}, name="spawner", buffer_bytes=256 << 10)
        report(s["ready"], helper=r.helper_pid)

        def spawn(first, count, alive_at_once=100):
            pids = {{}}
            for start in range(first, first + count, alive_at_once):
                batch = []
                for i in range(start, start + alive_at_once):
                    pid = os.fork()
                    if pid == 0:
                        os.write(1, f"child {{i}} whole\\n".encode())
                        os.write(1, f"child {{i}} partial".encode())
                        os._exit(0)
                    batch.append((i, pid))
                for i, pid in batch:
                    os.waitpid(pid, 0)
                    pids[i] = pid
            return pids

        pids = spawn(0, 200)
        report(s["warm"], pids=pids)
        wait_file(s["go"])
        pids.update(spawn(200, 800))
        report(s["spawned"], pids=pids)
        wait_file(s["done"])
        skyrl_fdlog.restore()
    """,
        tmp_path,
    )
    helper = wait_report(tmp_path / "ready", actor, 30, "redirect")["helper"]
    wait_report(tmp_path / "warm", actor, 60, "the first 200 children")

    def partials() -> int:
        return log.read_bytes().count(b" partial\n")

    deadline = time.monotonic() + 15
    while partials() < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    warm_rss = vm_rss_kib(helper)
    (tmp_path / "go").touch()
    spawned = wait_report(tmp_path / "spawned", actor, 120, "1,000 children")
    deadline = time.monotonic() + 15
    while partials() < 1000 and time.monotonic() < deadline:
        time.sleep(0.1)
    flushed_while_running = partials()
    end_rss = vm_rss_kib(helper)
    (tmp_path / "done").touch()
    finish(actor, tmp_path)
    print(
        f"\nMEASURED 1,000 children: helper RSS {warm_rss} KiB after 200, {end_rss} KiB after "
        f"1,000; {flushed_while_running} unfinished lines flushed before the actor ended"
    )
    records, bad = parse(log.read_bytes())
    assert bad == []
    pids = {int(i): pid for i, pid in spawned["pids"].items()}
    assert len(set(pids.values())) == 1000
    got = {(r.pid, r.mark, r.payload) for r in records}
    for i, pid in pids.items():
        assert (pid, ":", f"child {i} whole".encode()) in got, i
        assert (pid, "+", f"child {i} partial".encode()) in got, i
    assert len(records) == 2000
    assert flushed_while_running == 1000
    assert end_rss - warm_rss <= 256


LINE = re.compile(rb"w(\d+) (\d+) ([0-9a-f]{8}) (.*)", re.S)
END = re.compile(rb"end w(\d+) (\d+)")


def test_soak_64_writers_helper_rss_flat(tmp_path):
    """64 writer processes print checksummed lines (10-400 bytes, 100 lines/s each, 6,400
    lines/s together) for SKYRL_FDLOG_SOAK_SECONDS: every line arrives once, whole, in order
    per writer; the helper's RSS, sampled every 0.25 s, is flat once its buffer ring has been
    used (the last half of the run grows by at most 256 KiB) and never exceeds its start plus
    buffer_bytes (4 MiB) plus 2 MiB."""
    log = tmp_path / "infra.log"
    signals = {name: str(tmp_path / name) for name in ("ready", "done")}
    writer = (
        "import os, random, sys, time, zlib\n"
        "index, seconds = int(sys.argv[1]), float(sys.argv[2])\n"
        "rng = random.Random(index)\n"
        "start, seq = time.monotonic(), 0\n"
        "while time.monotonic() - start < seconds:\n"
        "    body = ''.join(rng.choice('abcdefghij klmnop') for _ in range(rng.randint(10, 400)))\n"
        "    print(f'w{index} {seq} {zlib.crc32(body.encode()):08x} {body}', flush=True)\n"
        "    seq += 1\n"
        "    time.sleep(max(0.0, start + seq / 100 - time.monotonic()))\n"
        "print(f'end w{index} {seq}', flush=True)\n"
    )
    actor = start_actor(
        f"""
        import subprocess
        s = {signals!r}
        r = skyrl_fdlog.redirect({str(log)!r}, name="soak")
        report(s["ready"], helper=r.helper_pid)
        children = [subprocess.Popen([sys.executable, "-c", {writer!r}, str(i), "{SOAK_SECONDS}"])
                    for i in range({SOAK_WRITERS})]
        codes = [child.wait() for child in children]
        report(s["done"], codes=codes)
        skyrl_fdlog.restore()
    """,
        tmp_path,
    )
    helper = wait_report(tmp_path / "ready", actor, 30, "redirect")["helper"]
    start_rss = vm_rss_kib(helper)
    samples = sample_rss(helper, lambda: (tmp_path / "done").exists())
    done = wait_report(tmp_path / "done", actor, SOAK_SECONDS + 120, "the writers")
    finish(actor, tmp_path)
    assert done["codes"] == [0] * SOAK_WRITERS

    records, bad = parse(log.read_bytes())
    assert bad == []
    seqs, totals, damaged = defaultdict(list), {}, []
    for record in records:
        end = END.fullmatch(record.payload)
        if end:
            totals[int(end.group(1))] = int(end.group(2))
            continue
        match = LINE.fullmatch(record.payload)
        if record.mark != ":" or match is None or int(match.group(3), 16) != zlib.crc32(match.group(4)):
            damaged.append(record.payload[:80])
            continue
        seqs[int(match.group(1))].append(int(match.group(2)))
    lines = sum(totals.values())
    rss = [kib for _, kib in samples]
    half = [kib for t, kib in samples if t >= samples[-1][0] / 2]
    summary = {
        "seconds": SOAK_SECONDS,
        "lines": lines,
        "rss_start_kib": start_rss,
        "rss_max_kib": max(rss),
        "rss_last_half_growth_kib": half[-1] - half[0],
        "samples": len(samples),
    }
    (tmp_path / "soak.json").write_text(json.dumps(summary))
    print(
        f"\nMEASURED soak: {SOAK_WRITERS} writers x {SOAK_SECONDS:.0f} s, {lines} lines; "
        f"helper RSS {start_rss} KiB at start, max {max(rss)} KiB, last half "
        f"{half[0]} -> {half[-1]} KiB ({len(samples)} samples)"
    )
    assert damaged == []
    assert sorted(totals) == list(range(SOAK_WRITERS))
    for index in range(SOAK_WRITERS):
        assert seqs[index] == list(range(totals[index])), f"writer {index}"
    assert lines >= SOAK_WRITERS * SOAK_SECONDS * 100 * 0.5
    assert max(half) - half[0] <= 256, summary
    assert max(rss) <= start_rss + 4096 + 2048, summary
