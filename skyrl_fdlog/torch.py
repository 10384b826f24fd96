"""A base for torch worker actors, as SkyRL's DistributedTorchRayActor: redirect, then join
a torch.distributed group (gloo on CPU, NCCL on GPU).

Redirecting first means torch's and the backends' C++ warnings (gloo, NCCL with NCCL_DEBUG)
are written by this process's fds 1 and 2 into the infra log, not forwarded to the driver.

    @ray.remote
    class PolicyWorker(DistributedTorchWorker): ...

    workers = create_worker_group(PolicyWorker, world_size=2)
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import ray

from skyrl_fdlog.ray import redirect_actor_output

PROCESS_GROUP_TIMEOUT = timedelta(minutes=5)


class DistributedTorchWorker:
    """One rank of a torch.distributed group; subclass it and decorate with @ray.remote.

    Subclasses that define __init__ call super().__init__ first, so that the redirection
    comes before anything they print or load.
    """

    def __init__(self, world_size: int, rank: int) -> None:
        redirect_actor_output(type(self).__name__)
        self.world_size = world_size
        self.rank = rank

    def get_master_addr_port(self) -> tuple[str, int]:
        """This node's Ray IP address and a port that is free now, for rank 0 to listen on."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def init_process_group(self, master_addr: str, master_port: int) -> str:
        """Join the group hosted at master_addr:master_port; return the backend used."""
        import torch
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so its GPU is device 0.
            torch.cuda.set_device(0)
        dist.init_process_group(
            backend,
            init_method=f"tcp://{master_addr}:{master_port}",
            world_size=self.world_size,
            rank=self.rank,
            timeout=PROCESS_GROUP_TIMEOUT,
        )
        return backend


def create_worker_group(
    actor_class: Any, world_size: int, *args: Any, name_prefix: str | None = None, **options: Any
) -> list[Any]:
    """Start world_size actors of actor_class (a @ray.remote DistributedTorchWorker subclass)
    and join them into one process group, rank 0 hosting it.

    args go to each actor's __init__ after (world_size, rank); options to .options().
    With name_prefix, rank r is the named actor f"{name_prefix}-{r}", which is also its name
    in the infra log (Ray actor names must be unique in their namespace).
    """
    workers = []
    for rank in range(world_size):
        if name_prefix is not None:
            options["name"] = f"{name_prefix}-{rank}"
        workers.append(actor_class.options(**options).remote(world_size, rank, *args))
    master_addr, master_port = ray.get(workers[0].get_master_addr_port.remote())
    ray.get([worker.init_process_group.remote(master_addr, master_port) for worker in workers])
    return workers
