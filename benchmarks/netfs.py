#!/usr/bin/env python3
"""What one lock cycle costs on a network filesystem: the GlusterFS bed on loopback.

    python benchmarks/netfs.py --out benchmarks/results-netfs.json   # brings the bed up and down

With lock=1 (network and FUSE filesystems) the helper's writing thread appends each run of
up to 64 batches of <= 4 KiB under one whole-file fcntl lock and ends it with fdatasync
(csrc/helper/log_writer.c, write_some).  This times that cycle the same way from Python on
the bed's first mount (lock, 1 or 64 writes of 4 KiB, fdatasync, unlock), with each step
timed; the same on the local disk for reference; two processes on the two mounts (two
"machines") contending for the lock; and the real helper with lock=1 fed 120 B lines
through a pipe (lines/s of one helper).  Gluster's own profile (`gluster volume profile`)
counts the requests that reach the brick per cycle: each one that the client waits for is
a network round trip, which gives the slope of the cycle time against the RTT.

The bed (tests/glusterfs_bed.sh) is machine-wide: run this only when no gluster test runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BED = REPO / "tests" / "glusterfs_bed.sh"
BATCH = 4096


def bed(command: str) -> dict[str, str]:
    out = subprocess.run(["bash", str(BED), command], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"glusterfs_bed.sh {command} failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def cycles(path: Path, batches: int, count: int, lock: bool = True) -> dict[str, Any]:
    """`count` cycles of: lock, `batches` writes of 4 KiB, fdatasync, unlock; times in µs."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    record = b"x" * (BATCH - 1) + b"\n"
    steps: dict[str, list[float]] = {"lock": [], "write": [], "fdatasync": [], "unlock": [], "cycle": []}
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            if lock:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            t1 = time.perf_counter()
            for _ in range(batches):
                os.write(fd, record)
            t2 = time.perf_counter()
            os.fdatasync(fd)
            t3 = time.perf_counter()
            if lock:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            t4 = time.perf_counter()
            for name, a, b in (
                ("lock", t0, t1),
                ("write", t1, t2),
                ("fdatasync", t2, t3),
                ("unlock", t3, t4),
                ("cycle", t0, t4),
            ):
                steps[name].append((b - a) * 1e6)
    finally:
        os.close(fd)
    return {"batches": batches, "count": count, "path": str(path)} | {
        f"{name}_us": {
            "median": statistics.median(v),
            "p90": sorted(v)[int(0.9 * (len(v) - 1))],
            "mean": statistics.fmean(v),
        }
        for name, v in steps.items()
    }


def contend(paths: list[Path], seconds: float, batches: int) -> dict[str, Any]:
    """One process per path (the two mounts), each cycling as fast as it can for `seconds`."""
    code = (
        f"import sys, time, os; sys.path.insert(0, {str(HERE)!r}); import netfs\n"
        f"end = time.monotonic() + {seconds:f}; n = 0\n"
        "while time.monotonic() < end:\n"
        f"    netfs.cycles(__import__('pathlib').Path(sys.argv[1]), {batches:d}, 1); n += 1\n"
        "print(n)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True)
        for p in paths
    ]
    counts = [int(p.communicate(timeout=seconds + 120)[0].strip() or 0) for p in procs]
    return {
        "processes": len(paths),
        "seconds": seconds,
        "batches": batches,
        "cycles": counts,
        "cycles_per_s": sum(counts) / seconds,
        "us_per_cycle": seconds / max(1, sum(counts)) * 1e6,
    }


def profile(env: dict[str, str], *command: str) -> str:
    return subprocess.run(
        [
            "gluster",
            "--mode=script",
            f"--glusterd-sock={env['SOCKET']}",
            "volume",
            "profile",
            env["VOLUME"],
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def fops_per_cycle(env: dict[str, str], path: Path, batches: int, count: int) -> dict[str, Any]:
    """Requests the brick saw per cycle, by type (gluster's io-stats, interval counts)."""
    profile(env, "start")
    profile(env, "info", "clear")
    cycles(path, batches, count)
    text = profile(env, "info", "incremental")
    profile(env, "stop")
    calls: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        # "%-latency Avg-latency Min-Latency Max-Latency No.of-calls Fop"
        if len(parts) >= 6 and parts[-1].isupper() and parts[-2].isdigit():
            calls[parts[-1]] = calls.get(parts[-1], 0) + int(parts[-2])
    return {
        "batches": batches,
        "count": count,
        "per_cycle": {f: n / count for f, n in calls.items()},
        "raw": text[-4000:],
    }


def brick_port(env: dict[str, str]) -> int:
    text = subprocess.run(
        [
            "gluster",
            "--mode=script",
            f"--glusterd-sock={env['SOCKET']}",
            "volume",
            "status",
            env["VOLUME"],
            "--xml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return int(re.search(r"<port>(\d+)</port>", text).group(1))  # type: ignore[union-attr]


def delayed(env: dict[str, str], delays_ms: list[float], count: int) -> list[dict[str, Any]]:
    """Cycles through a third mount whose client reaches the brick through DelayProxy: the
    client volfile of the bed with remote-port pointing at the relay."""
    from delay_proxy import DelayProxy

    bed_dir = Path(env["BED"])
    volfile = bed_dir / "state" / "vols" / env["VOLUME"] / f"{env['VOLUME']}.tcp-fuse.vol"
    relay = DelayProxy((env["HOST"], 0), (env["HOST"], brick_port(env)), 0.0)
    mine = bed_dir / "delayed-client.vol"
    mine.write_text(
        volfile.read_text().replace(
            f"    option remote-host {env['HOST']}\n",
            f"    option remote-host {env['HOST']}\n    option remote-port {relay.address[1]}\n",
        )
    )
    mount = bed_dir / "mnt-delayed"
    mount.mkdir(exist_ok=True)
    subprocess.run(
        ["glusterfs", f"--volfile={mine}", f"--log-file={bed_dir / 'log' / 'mnt-delayed.log'}", str(mount)],
        check=True,
        timeout=60,
    )
    out = []
    try:
        for delay in delays_ms:
            relay.set_delay(delay / 2000)  # half the added RTT each way
            for batches in (1, 64):
                out.append(
                    cycles(mount / "delayed.log", batches, count if batches == 1 else count // 3)
                    | {"added_rtt_ms": delay, "where": "gluster via relay"}
                )
                print(
                    json.dumps(
                        {"added_rtt_ms": delay, "batches": batches, "cycle_us": out[-1]["cycle_us"]["median"]}
                    ),
                    flush=True,
                )
    finally:
        subprocess.run(["umount", str(mount)], timeout=60)
        relay.close()
    return out


def helper_lines_per_s(directory: Path, lines: int) -> dict[str, Any]:
    """The real helper, lock=1, 120 B lines through the owner's pipe into a file on the mount."""
    sys.path.insert(0, str(HERE / "micro"))
    from micro_bench import Helper  # noqa: E402
    from micro_bench import lines as make_lines

    from skyrl_fdlog._redirect import helper_executable  # noqa: E402

    log = directory / f"helper-{os.getpid()}.log"
    data = make_lines(120, lines)
    helper = Helper(helper_executable(), log, lock=True)
    t0 = time.perf_counter()
    helper.write_all_and_wait(data, 120)
    elapsed = time.perf_counter() - t0
    found = log.read_bytes().count(b"\n")
    log.unlink()
    return {
        "lines": lines,
        "found": found,
        "seconds": elapsed,
        "lines_per_s": lines / elapsed,
        "helper_cpu_s": helper.cpu_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--keep-bed", action="store_true", help="leave the bed up at the end")
    parser.add_argument(
        "--delays", default="0,0.5,1,2,4", help="added round-trip times, ms, through the delaying relay"
    )
    parser.add_argument("--only-delays", action="store_true", help="skip the other measurements")
    args = parser.parse_args()
    busy = subprocess.run(["pgrep", "-a", "glusterfsd"], capture_output=True, text=True).stdout
    started = time.monotonic()
    env = bed("up")
    saved: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg": os.getloadavg(),
        "bricks_before": busy,
        "bed": env,
        "gluster": subprocess.run(
            ["gluster", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[:1],
    }
    mount1, mount2 = Path(env["MOUNT1"]), Path(env["MOUNT2"])
    local = Path("/tmp/skyrl-fdlog-netfs-local.log")
    try:
        saved["delayed"] = delayed(env, [float(x) for x in args.delays.split(",")], 90)
        if args.only_delays:
            return 0
        results = saved["cycles"] = []
        for batches in (1, 64):
            for where, path in (("gluster", mount1 / "cycle.log"), ("local ext4", local)):
                results.append(cycles(path, batches, args.count) | {"where": where})
                print(json.dumps({k: v for k, v in results[-1].items() if k != "path"}), flush=True)
        saved["fops"] = [fops_per_cycle(env, mount1 / "fops.log", b, 100) for b in (1, 64)]
        for f in saved["fops"]:
            print("fops per cycle", f["batches"], f["per_cycle"], flush=True)
        saved["contend"] = [
            contend([mount1 / "contend.log"], 5.0, 1),
            contend([mount1 / "contend.log", mount2 / "contend.log"], 5.0, 1),
        ]
        print(json.dumps(saved["contend"]), flush=True)
        saved["helper"] = [helper_lines_per_s(mount1, 50_000), helper_lines_per_s(Path("/tmp"), 50_000)]
        print(json.dumps(saved["helper"]), flush=True)
    finally:
        local.unlink(missing_ok=True)
        if not args.keep_bed:
            bed("down")
        saved["minutes"] = (time.monotonic() - started) / 60
        args.out.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
