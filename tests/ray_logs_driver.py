"""The driver of issue 15, run as its own process (its stdout and stderr are the terminal): it
calls init_ray() (or ray.init() and capture_ray_logs() with --own-init), starts many
redirected zero-CPU actors at once, which makes the raylet warn that it started many Python
workers, and on request a task that does not redirect and prints, a task that fails with
nobody waiting on it (Ray's "Unhandled error" on the driver), and a redirected actor that
starts torch workers as Ray actors of its own, as vLLM's Ray executor does, and a task whose
worker dies. Ends with one line
`RESULT <json>`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time

import ray

from skyrl_fdlog.ray import init_ray, redirected

PROGRESS_LINE = "driver: step 1 | reward 0.5"


@ray.remote(num_cpus=0)
@redirected
class Quiet:
    def ready(self) -> int:
        print(f"quiet actor {os.getpid()} ready", flush=True)
        return os.getpid()


@ray.remote(num_cpus=0)
def plain_task() -> None:
    print("plain task says hello", flush=True)


@ray.remote(num_cpus=0, max_retries=0)
def failing_task(marker: str) -> None:
    open(marker, "w").close()
    raise ValueError("failing task gave up")


@ray.remote(num_cpus=0, max_retries=0)
def dying_task() -> None:
    os._exit(1)


@ray.remote(num_cpus=0)
class TorchRank:
    """A torch worker as vLLM's Ray executor starts them: it never redirects itself."""

    def __init__(self, rank: int, world_size: int, port: int) -> None:
        import torch.distributed as dist

        self.rank = rank
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )

    def all_reduce(self) -> dict:
        import torch
        import torch.distributed as dist

        value = torch.tensor([float(self.rank + 1)])
        dist.all_reduce(value)
        print(f"torch rank {self.rank}: all_reduce gave {value.item()}", flush=True)
        os.write(2, f"torch rank {self.rank} raw stderr\n".encode())
        return {
            "pid": os.getpid(),
            "reduced": value.item(),
            "started_by": os.environ.get("SKYRL_FDLOG_STARTED_BY"),
        }


@ray.remote(num_cpus=0)
@redirected
class Launcher:
    """A redirected actor that starts torch workers as Ray actors, as a vLLM engine does."""

    def run(self, world_size: int) -> list:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        print("launcher starts its workers", flush=True)
        workers = [TorchRank.remote(rank, world_size, port) for rank in range(world_size)]
        return ray.get([worker.all_reduce.remote() for worker in workers])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address")
    parser.add_argument("--log-path", required=True)
    parser.add_argument("--actors", type=int, default=24)
    parser.add_argument("--pin", help="custom resource of the node to start all actors on")
    parser.add_argument(
        "--own-init",
        action="store_true",
        help="ray.init() with SKYRL_LOG_FILE from the environment and "
        "WORKER_SETUP_HOOK, then capture_ray_logs(), as a driver that "
        "starts Ray itself",
    )
    parser.add_argument("--plain-task", action="store_true")
    parser.add_argument("--unhandled-error", action="store_true")
    parser.add_argument(
        "--dying-task", action="store_true", help="a task whose worker exits: the raylet reports the death"
    )
    parser.add_argument("--torch-workers", type=int, default=0)
    parser.add_argument(
        "--linger",
        type=float,
        default=3.0,
        help="seconds before ray.shutdown(): Ray forwards lines asynchronously",
    )
    args = parser.parse_args()

    init_args = {"address": args.address} if args.address else {"num_cpus": 2}
    if args.own_init:
        from skyrl_fdlog.ray import WORKER_SETUP_HOOK, capture_ray_logs

        # As init_ray does: the dump switch pinned off (a node of the tests' cluster has it on).
        env_vars = {"SKYRL_LOG_FILE": os.environ["SKYRL_LOG_FILE"], "SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "0"}
        ray.init(
            runtime_env={"env_vars": env_vars, "worker_process_setup_hook": WORKER_SETUP_HOOK}, **init_args
        )
        log_file = capture_ray_logs()
    else:
        log_file = init_ray(args.log_path, **init_args)

    resources = {args.pin: 0.001} if args.pin else {}
    actors = [
        Quiet.options(name=f"quiet-{index}", resources=resources).remote() for index in range(args.actors)
    ]
    pids = ray.get([actor.ready.remote() for actor in actors])
    if args.plain_task:
        ray.get(plain_task.remote())
    if args.unhandled_error:
        # Nobody waits on it (ray.wait would count as handling the error): the marker says it
        # ran, and Ray reports the error once the reference goes.
        marker = os.path.join(tempfile.mkdtemp(), "failing-task-ran")
        references = [failing_task.remote(marker)]
        while not os.path.exists(marker):
            time.sleep(0.1)
        time.sleep(1)
        references.clear()
        gc.collect()
    if args.dying_task:
        try:
            ray.get(dying_task.remote())
        except ray.exceptions.WorkerCrashedError:
            print("driver: the dying task's worker crashed", flush=True)
    torch_reports = []
    if args.torch_workers:
        launcher = Launcher.options(name="engine-0").remote()
        torch_reports = ray.get(launcher.run.remote(args.torch_workers))

    print(PROGRESS_LINE, flush=True)
    time.sleep(args.linger)
    ray.shutdown()
    result = {
        "log_file": str(log_file) if log_file else None,
        "actor_pids": pids,
        "torch": torch_reports,
        "ray_version": ray.__version__,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
