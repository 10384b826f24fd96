"""NCCL's own output through redirect(): run by hand on a machine with 2+ GPUs (not in CI).

    python tests/gpu/nccl_check.py OUT_DIR

Two ranks each redirect() into one log, set NCCL_DEBUG=INFO, initialise
torch.distributed with NCCL and all-reduce. The check: every line of the log
is a well-formed record, NCCL's INFO lines are there, each attributed to
the rank (actor name and pid) that printed it, and none was torn (every
line holding "NCCL INFO" starts as NCCL starts its lines, host:pid:tid [dev]).
Writes OUT_DIR/nccl_check.json and OUT_DIR/nccl.log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from records import lines_by_writer, parse  # noqa: E402

# How NCCL starts each debug line: host:pid:tid [device] NCCL INFO ...
NCCL_LINE = re.compile(rb"^\S+:\d+:\d+ \[\d+\] NCCL INFO ")

RANK = """
import os, sys, torch, torch.distributed as dist, skyrl_fdlog
rank = int(os.environ["RANK"])
skyrl_fdlog.redirect(sys.argv[1], name=f"rank{rank}")
torch.cuda.set_device(rank)
dist.init_process_group("nccl", rank=rank, world_size=2)
x = torch.ones(1 << 20, device="cuda") * (rank + 1)
dist.all_reduce(x)
torch.cuda.synchronize()
print("all_reduce result", x[0].item(), "pid", os.getpid())
dist.destroy_process_group()
skyrl_fdlog.restore()
"""


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "nccl.log"
    env = {
        **os.environ,
        "NCCL_DEBUG": "INFO",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29533",
        "WORLD_SIZE": "2",
        "PYTHONUNBUFFERED": "1",
    }
    ranks = [
        subprocess.Popen([sys.executable, "-c", RANK, str(log)], env={**env, "RANK": str(r)})
        for r in range(2)
    ]
    codes = [rank.wait(timeout=300) for rank in ranks]
    records, bad = parse(log.read_bytes())
    lines = lines_by_writer(records)
    nccl = [(pid, text) for (pid, _), writer in lines.items() for text, _ in writer if b"NCCL INFO" in text]
    names = {r.pid: r.name for r in records}
    torn = [text[:120].decode(errors="replace") for _, text in nccl if not NCCL_LINE.match(text)]
    result = {
        "exit_codes": codes,
        "records": len(records),
        "malformed_lines": len(bad),
        "nccl_info_lines": len(nccl),
        "nccl_lines_by_name": {
            name: sum(1 for pid, _ in nccl if names[pid] == name) for name in sorted(set(names.values()))
        },
        "torn_nccl_lines": torn,
        "all_reduce": [
            text.decode()
            for writer in lines.values()
            for text, _ in writer
            if text.startswith(b"all_reduce result")
        ],
        "sample": [text.decode(errors="replace") for _, text in nccl[:5]],
    }
    (out / "nccl_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    ok = codes == [0, 0] and not bad and nccl and not torn and all(result["nccl_lines_by_name"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
