"""A training driver for the integration tests, run as its own process (its stdout is what a
user would see on the terminal).

It calls init_ray(), starts actors that redirect with @redirected or with a plain redirect()
(optionally pinned to nodes by custom resource) and a two-rank gloo group, has each actor
print through every path an infra line can take, prints a training-progress line of its own,
and ends with one line `RESULT <json>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import ray

import skyrl_fdlog
from skyrl_fdlog.ray import init_ray, redirected
from skyrl_fdlog.torch import DistributedTorchWorker, create_worker_group

PROGRESS_LINE = "driver: step 1 | reward 0.5"


class Speaker:
    """Prints `tag` from Python, from raw fd 2 and from a subprocess; reports where it ran."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        print(f"{tag} init", flush=True)

    def speak(self) -> dict:
        print(f"{self.tag} python stdout", flush=True)
        os.write(2, f"{self.tag} raw stderr\n".encode())
        subprocess.run(["sh", "-c", f"echo '{self.tag} subprocess stdout'"], check=True)
        return {
            "pid": os.getpid(),
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "log_file": os.environ.get("SKYRL_LOG_FILE"),
            "dump_variable": os.environ.get("SKYRL_DUMP_INFRA_LOG_TO_STDOUT"),
            # Ray's worker wraps sys.stdout (Unbuffered); the stream inside is what counts
            "stdout_kind": type(getattr(sys.stdout, "stream", sys.stdout)).__name__,
            "caller_variable": os.environ.get("FDLOG_TEST_VARIABLE"),
        }


@ray.remote(num_cpus=0)
@redirected
class Echo(Speaker):
    """A Speaker redirected by @redirected."""


@ray.remote(num_cpus=0)
class PlainEcho(Speaker):
    """A Speaker that calls redirect() by hand, with no arguments."""

    def __init__(self, tag: str) -> None:
        skyrl_fdlog.redirect()
        super().__init__(tag)


@ray.remote(num_cpus=0)
class GlooWorker(DistributedTorchWorker):
    """A torch.distributed rank; all_reduce proves the gloo group works."""

    def all_reduce(self) -> float:
        import torch
        import torch.distributed as dist

        value = torch.tensor([float(self.rank + 1)])
        dist.all_reduce(value)
        print(f"gloo rank {self.rank}: all_reduce gave {value.item()}", flush=True)
        return value.item()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--log-path", required=True)
    parser.add_argument("--start-at", type=float, help="sleep until this time.time() first")
    parser.add_argument(
        "--actor",
        action="append",
        default=[],
        help="TAG or TAG@RESOURCE: a named Echo actor, pinned to the node holding custom resource RESOURCE",
    )
    parser.add_argument("--unnamed-actor", help="TAG of an Echo actor started without a name")
    parser.add_argument(
        "--plain-actor",
        action="append",
        default=[],
        help="TAG or TAG@RESOURCE: a named PlainEcho actor, pinned likewise",
    )
    parser.add_argument(
        "--env-var",
        action="append",
        default=[],
        help="NAME=VALUE for the env_vars of the runtime_env given to init_ray",
    )
    parser.add_argument(
        "--remove-log-dir",
        action="store_true",
        help="delete log_path after init_ray, as on a node that lacks it",
    )
    parser.add_argument("--gloo-workers", type=int, default=0)
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="seconds to wait before ray.shutdown(): Ray forwards unredirected "
        "actor output to the driver asynchronously",
    )
    args = parser.parse_args()

    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    env_vars = {"FDLOG_TEST_VARIABLE": "kept", **dict(item.split("=", 1) for item in args.env_var)}
    log_file = init_ray(args.log_path, address=args.address, runtime_env={"env_vars": env_vars})
    if args.remove_log_dir:
        shutil.rmtree(args.log_path)

    actors = {}
    for actor_class, specs in ((Echo, args.actor), (PlainEcho, args.plain_actor)):
        for spec in specs:
            tag, _, resource = spec.partition("@")
            options = {"name": tag, "resources": {resource: 0.01} if resource else {}}
            actors[tag] = actor_class.options(**options).remote(tag)
    if args.unnamed_actor:
        actors[args.unnamed_actor] = Echo.remote(args.unnamed_actor)
    reports = dict(zip(actors, ray.get([actor.speak.remote() for actor in actors.values()])))

    reduced = []
    if args.gloo_workers:
        workers = create_worker_group(GlooWorker, args.gloo_workers, name_prefix="gloo")
        reduced = ray.get([worker.all_reduce.remote() for worker in workers])

    print(PROGRESS_LINE, flush=True)
    time.sleep(args.linger)
    ray.shutdown()
    result = {
        "log_file": str(log_file) if log_file else None,
        "reports": reports,
        "reduced": reduced,
        "driver_log_file": os.environ.get("SKYRL_LOG_FILE"),
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
