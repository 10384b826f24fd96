"""One helper per actor, or one for many: the measurement before choosing a helper per node.

    python benchmarks/helper_count.py --repeats 3 --writers 4,16,64 --json out.json
    taskset -c 0,1 python benchmarks/helper_count.py ...     # a 2-core view of a big machine
    python benchmarks/helper_count.py --helper old=/tmp/old-helper --helper new=/tmp/new-helper

Issue 16 allows a helper per node instead of one per actor if it pays.  A helper per node
does not exist yet; its cost is bounded from above by what the code has: every writer of the
case is a child of one redirect() ("one helper"), so one helper reads all of them through
the sockets' per-pid assembly, which costs more per line than an actor's own Python pipe
(an skb and credentials per write).  Beside it, each writer with a redirect() of its own
("a helper each", as actors are now), with the actor's Python output on its pipes (the
default) and on the sockets (SKYRL_FDLOG_PYTHON_PIPES=0, the same channel as "one helper":
the pair shows what the number of helpers alone changes).  Every repeat runs dup2 and the
three in an order rotated per repeat; ratios are over dup2 of the same repeat.  With
--helper NAME=PATH (repeatable), each skyrl_fdlog entry runs once per helper program, so
builds are compared side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

# name -> (harness method, SKYRL_FDLOG_PYTHON_PIPES)
ENTRIES = {
    "dup2": ("dup2", None),
    "a helper each, pipes": ("fdlog", True),
    "a helper each, sockets": ("fdlog", False),
    "one helper, sockets": (harness.ONE_HELPER, None),
}
LINES = harness.ISSUE16_LINES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--writers", default="4,16,64")
    parser.add_argument("--sizes", default="120")
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument("--helper", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    helpers: dict[str, str | None] = {"": None}
    if args.helper:
        helpers = dict(text.partition("=")[::2] for text in args.helper)
        for name, path in helpers.items():
            if not name or not path or not Path(path).is_file():
                raise SystemExit(f"--helper {name}={path}: write NAME=PATH of a helper program")
    entries = {
        f"{name}, {build}" if build else name: (method, pipes, helpers.get(build))
        for name, (method, pipes) in ENTRIES.items()
        for build in ([""] if method == "dup2" else helpers)
    }
    cases = [(int(w), int(s)) for s in args.sizes.split(",") for w in args.writers.split(",")]
    for _, size in cases:
        if size not in LINES:
            raise SystemExit(f"--sizes: {size} is not one of {', '.join(map(str, LINES))}")
    machine = harness.machine_info(harness.fresh_workdir(Path("/tmp/skyrl-fdlog-bench")))
    machine["cpus_usable"] = len(os.sched_getaffinity(0))
    print(f"CPUs usable: {machine['cpus_usable']}; load average before: {os.getloadavg()}", flush=True)
    names = list(entries)
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for index, (writers, size) in enumerate(cases):
            shift = (repeat + index) % len(names)
            for name in names[shift:] + names[:shift]:
                method, pipes, helper = entries[name]
                result = harness.run_case(
                    method,
                    writers,
                    size=size,
                    lines=LINES[size],
                    max_seconds=args.max_seconds,
                    python_pipes=pipes,
                    helper=helper,
                )
                result |= {"entry": name, "repeat": repeat}
                runs.append(result)
                print(
                    f"r{repeat} {writers}w {size}B {name}: {result['lines_per_s'] / 1e3:.0f}k lines/s",
                    flush=True,
                )
                if args.json:
                    saved = {"command": " ".join(sys.argv), "machine": machine, "results": runs}
                    harness.write_results(args.json, saved)
    print(f"load average after: {os.getloadavg()}")
    header, rows = summary(runs)
    for row in [header, ["---"] * len(header), *rows]:
        print("| " + " | ".join(row) + " |")


def summary(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per case and entry: the median (range) of the ratios to dup2 of the same repeat."""
    header = ["writers", "line", "entry", "÷ dup2 median (range)", "lines/s", "helper µs/line", "torn/lost"]

    def base(name: str) -> int:
        return next(i for i, b in enumerate(ENTRIES) if name == b or name.startswith(b + ", "))

    # ENTRIES' order; the builds of one entry as first run (the order of --helper)
    names = sorted(dict.fromkeys(r["entry"] for r in runs), key=base)
    rows = []
    for writers, size in sorted({(r["writers"], r["size"]) for r in runs}, key=lambda c: (c[1], c[0])):
        mine = [r for r in runs if r["writers"] == writers and r["size"] == size]
        dup2 = {r["repeat"]: r["lines_per_s"] for r in mine if r["entry"] == "dup2"}
        for name in names:
            rs = [r for r in mine if r["entry"] == name]
            ratios = [r["lines_per_s"] / dup2[r["repeat"]] for r in rs]
            spread = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"
            cpu = statistics.median(r.get("helper_cpu_us_per_line") or 0.0 for r in rs)
            torn = sum(r["check"]["torn"] for r in rs)
            lost = sum(r["check"]["missing"] for r in rs)
            rows.append(
                [
                    str(writers),
                    f"{size} B",
                    name,
                    "–" if name == "dup2" else spread,
                    f"{statistics.median(r['lines_per_s'] for r in rs) / 1e3:,.0f}k",
                    "–" if name == "dup2" else f"{cpu:.2f}",
                    f"{torn}/{lost}",
                ]
            )
    return header, rows


if __name__ == "__main__":
    main()
