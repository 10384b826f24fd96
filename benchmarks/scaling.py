#!/usr/bin/env python3
"""skyrl_fdlog against SkyRL's dup2 from 1 to 128 writer processes, for a machine with many cores.

    python benchmarks/scaling.py --out benchmarks/results-16core.json      # ~5 min on 16 cores

Each repeat runs every (line size, writer count) case for both methods back to back, in an
order that rotates between repeats; a repeat is started only while the time budget lasts, so
a run cut short still holds whole repeats.  The results file is rewritten after every case.
report.py turns it into the "Scaling (16 cores)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import order  # noqa: E402

LINES = harness.ISSUE16_LINES


def describe_machine(workdir: Path) -> dict[str, Any]:
    """nproc, lscpu's model name, kernel and the rest of harness.machine_info."""
    info = harness.machine_info(workdir)
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in (
                "Model name",
                "Hypervisor vendor",
                "Virtualization type",
                "Thread(s) per core",
                "Socket(s)",
            ):
                info[f"lscpu {key.strip()}"] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info["uname"] = " ".join(platform.uname())
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--writers-120", default="1,4,16,64,128")
    parser.add_argument("--writers-8192", default="1,4,16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds: no repeat starts after this")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="each writer stops early after this (the rate stays valid)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/skyrl-fdlog-scaling"))
    parser.add_argument("--label", default="", help="what was measured (which C path)")
    parser.add_argument(
        "--order",
        action="store_true",
        help="then measure the order between print() and os.write(1, ...) "
        "(order.py): 1 writer paced, 4 and 16 at full speed",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SITE",
        help="a skyrl_fdlog build to measure, installed in directory SITE "
        "(put first on PYTHONPATH for its cases); repeat to compare builds "
        "in one run; the last named is the one the goals are judged on",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    workdir = harness.fresh_workdir(args.workdir)
    cases = [(120, int(w)) for w in args.writers_120.split(",")] + [
        (8192, int(w)) for w in args.writers_8192.split(",")
    ]
    saved: dict[str, Any] = {
        "command": "python benchmarks/scaling.py " + shlex.join(argv or sys.argv[1:]),
        "label": args.label,
        "machine": describe_machine(workdir),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "results": [],
    }
    print(json.dumps(saved["machine"]), flush=True)
    variants = [tuple(v.split("=", 1)) for v in args.variant] or [("", "")]
    saved["variants"] = [name for name, _ in variants]
    base_path = os.environ.get("PYTHONPATH", "")
    methods = [f"fdlog={name}" for name, _ in variants] + ["dup2"]
    sites = dict(variants)
    for repeat in range(args.repeats):
        if repeat and time.monotonic() - started > args.budget:
            print(f"time budget spent: {repeat} repeats", flush=True)
            break
        for size, writers in cases:
            turn = repeat % len(methods)
            rotated = methods[turn:] + methods[:turn]
            for entry in rotated:
                method, _, variant = entry.partition("=")
                site = sites.get(variant, "")
                os.environ["PYTHONPATH"] = ":".join(p for p in (site, base_path) if p)
                t0 = time.monotonic()
                try:
                    result = harness.run_case(
                        method,
                        writers,
                        size=size,
                        lines=LINES[size],
                        max_seconds=args.max_seconds,
                        workdir=workdir,
                    )
                except harness.CaseError as error:
                    result = {"method": method, "writers": writers, "size": size, "error": str(error)[-2000:]}
                result |= {
                    "repeat": repeat,
                    "variant": variant,
                    "wall_s": time.monotonic() - t0,
                    "loadavg": os.getloadavg(),
                }
                saved["results"].append(result)
                check = result.get("check", {})
                print(
                    f"r{repeat} {size:5d} B {writers:3d} w {entry:12s}: "
                    + (
                        f"ERROR {result['error'].splitlines()[0]}"
                        if "error" in result
                        else f"{result['lines_per_s']:>12,.0f} lines/s, helper "
                        f"{result.get('helper_cpu_us_per_line') or 0:6.2f} us/line, RSS "
                        f"{(result.get('helper_maxrss_kib') or 0) / 1024:5.1f} MiB, "
                        f"torn {check.get('torn', '-')} lost {check.get('missing', '-')}"
                        f" ({result['wall_s']:.1f} s)"
                    ),
                    flush=True,
                )
                args.out.write_text(json.dumps(saved, indent=1, default=str))
    for name, site in variants if args.order else []:
        os.environ["PYTHONPATH"] = ":".join(p for p in (site, base_path) if p)
        for writers, pairs, interval, pipes in (
            (1, 1000, 0.002, None),
            (4, 4500, 0.0, None),
            (16, 4500, 0.0, None),
            (4, 4500, 0.0, False),
        ):
            try:
                result = order.run_order(
                    "fdlog", writers, pairs, interval, python_pipes=pipes, workdir=workdir
                )
            except harness.CaseError as error:
                result = {"writers": writers, "error": str(error)[-2000:]}
            result |= {"section": "order", "variant": name, "python_pipes": pipes}
            saved["results"].append(result)
            print(
                f"order {name} {writers} w interval {interval} pipes {pipes}: "
                + (
                    result.get("error", "").splitlines()[0]
                    if "error" in result
                    else f"{result['late']} of {result['expected']} late, p50 {result['late_p50']} "
                    f"p99 {result['late_p99']} max {result['late_max']}"
                ),
                flush=True,
            )
            args.out.write_text(json.dumps(saved, indent=1, default=str))
    saved["wall_minutes"] = (time.monotonic() - started) / 60
    args.out.write_text(json.dumps(saved, indent=1, default=str))
    harness.fresh_workdir(args.workdir)
    return 1 if any("error" in r for r in saved["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
