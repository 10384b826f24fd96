"""Helper builds side by side: each variant against SkyRL's dup2 in the same repeat.

    python benchmarks/helper_ab.py --repeats 5 \
        main=/tmp/main-helper:error main-off=/tmp/main-helper:off new=skyrl_fdlog/skyrl-fdlog-helper:error

A variant is NAME=HELPER:SURFACE (SURFACE is SKYRL_FDLOG_SURFACE: error or off).  Every
repeat runs dup2 and each variant on every case, in an order rotated per repeat; a
variant's ratio is its lines/s over dup2's of the same repeat.  Prints, per case and
variant, the median (range) of the ratios, the median lines/s, helper CPU per line and
peak RSS, and the torn/lost counts summed over the repeats.  For comparing helper builds on
a shared machine: absolute numbers move with the load, ratios within one repeat much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

CASES = {
    "1w-120B": (1, 120, 200_000),
    "4w-120B": (4, 120, 200_000),
    "1w-8KiB": (1, 8192, 16_000),
    "2w-8KiB": (2, 8192, 16_000),
}


def parse_variant(text: str) -> tuple[str, str, str]:
    name, _, rest = text.partition("=")
    helper, _, surface = rest.rpartition(":")
    if not name or not helper or surface not in ("error", "off"):
        raise SystemExit(f"variant {text!r}: write NAME=HELPER:SURFACE, SURFACE error or off")
    if not Path(helper).is_file():
        raise SystemExit(f"variant {text!r}: no helper program at {helper}")
    return name, str(Path(helper).resolve()), surface


def run(method: str, case: str, helper: str | None, surface: str | None, max_seconds: float) -> dict:
    writers, size, lines = CASES[case]
    if surface is None:
        os.environ.pop("SKYRL_FDLOG_SURFACE", None)
    else:
        os.environ["SKYRL_FDLOG_SURFACE"] = surface
    return harness.run_case(method, writers, size=size, lines=lines, max_seconds=max_seconds, helper=helper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    cases = args.cases.split(",")
    for case in cases:
        if case not in CASES:
            raise SystemExit(f"case {case!r}: choose from {', '.join(CASES)}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    runs: list[dict] = []
    entries = [("dup2", None, None), *variants]
    for repeat in range(args.repeats):
        for case in cases:
            shift = (repeat + cases.index(case)) % len(entries)
            for name, helper, surface in entries[shift:] + entries[:shift]:
                method = "dup2" if name == "dup2" else "fdlog"
                result = run(method, case, helper, surface, args.max_seconds)
                result |= {"variant": name, "case": case, "repeat": repeat}
                runs.append(result)
                print(f"r{repeat} {case} {name}: {result['lines_per_s'] / 1e3:.0f}k lines/s", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print("| case | variant | ÷ dup2 median (range) | lines/s | helper µs/line | RSS MiB | torn/lost |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        dup2 = {r["repeat"]: r["lines_per_s"] for r in runs if r["case"] == case and r["variant"] == "dup2"}
        print(f"| {case} | dup2 | – | {statistics.median(dup2.values()) / 1e3:.0f}k | – | – | – |")
        for name, _, _ in variants:
            mine = [r for r in runs if r["case"] == case and r["variant"] == name]
            ratios = [r["lines_per_s"] / dup2[r["repeat"]] for r in mine]
            cpu = statistics.median(r.get("helper_cpu_us_per_line") or 0.0 for r in mine)
            rss = max(r.get("helper_maxrss_kib", 0) for r in mine) / 1024
            torn = sum(r["check"]["torn"] for r in mine)
            lost = sum(r["check"]["missing"] for r in mine)
            print(
                f"| {case} | {name} | {statistics.median(ratios):.2f}x "
                f"({min(ratios):.2f}–{max(ratios):.2f}) | "
                f"{statistics.median(r['lines_per_s'] for r in mine) / 1e3:.0f}k | {cpu:.2f} | "
                f"{rss:.1f} | {torn}/{lost} |"
            )


if __name__ == "__main__":
    main()
