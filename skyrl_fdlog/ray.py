"""Ray integration: the driver reserves the run's infra log, each actor redirects into it.

    from skyrl_fdlog.ray import init_ray, redirected

    init_ray(log_path=cfg.trainer.log_path)        # driver, instead of ray.init()

    @ray.remote
    @redirected                                      # actor: fds 1 and 2 go to the infra log
    class Engine: ...

The driver itself is never redirected: what it prints (configuration, steps, rewards) stays on
the terminal, and so does whatever an unredirected actor prints, through log_to_driver.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

import ray

from skyrl_fdlog import (DEFAULT_LOG_PATH, LOG_FILE_VARIABLE, Redirection, dump_to_stdout,
                         infra_log_path, redirect)

ActorClass = TypeVar("ActorClass", bound=type)


def init_ray(log_path: str | os.PathLike = DEFAULT_LOG_PATH, **ray_init_kwargs: Any) -> Path | None:
    """Start or join Ray so that redirected actors write into a new infra log under log_path.

    Returns the infra log's path, or None in dump mode (SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes),
    where no file is made, SKYRL_LOG_FILE is not set and everything reaches stdout.
    Otherwise SKYRL_LOG_FILE names the new file in this process's environment and in the
    runtime_env of every worker (merged into the caller's runtime_env, whose own env_vars win
    except for SKYRL_LOG_FILE), and Ray's driver-side logging defaults to WARNING. Other
    keyword arguments, address= included, go to ray.init().
    """
    runtime_env = dict(ray_init_kwargs.pop("runtime_env", None) or {})
    log_file = None
    if not dump_to_stdout():
        log_file = infra_log_path(log_path)
        os.environ[LOG_FILE_VARIABLE] = str(log_file)
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), LOG_FILE_VARIABLE: str(log_file)}
        # Ray's own INFO lines on the driver ("Started a local Ray instance") are infra too.
        # RAY_BACKEND_LOG_LEVEL, SkyRL's way to quiet Ray, is deliberately left alone: with
        # Ray 2.60 every process that reads it prints a notice saying so on stderr, and the
        # workers' notices reach the terminal as "(raylet)" lines (docs/integration.md).
        ray_init_kwargs.setdefault("logging_level", logging.WARNING)
    # log_to_driver stays on: output of actors that do not redirect (a training entrypoint
    # running as a task, say) must still reach the terminal.
    ray.init(runtime_env=runtime_env, log_to_driver=True, **ray_init_kwargs)
    if log_file is not None:
        print(f"Infrastructure logs will be written to: {log_file}", flush=True)
    return log_file


def actor_label() -> tuple[str | None, str | None]:
    """(Ray actor name, Ray node IP address) of the calling process, None where there is none.

    Outside Ray both are None: asking Ray's runtime context there would start a cluster.
    """
    if not ray.is_initialized():
        return None, None
    context = ray.get_runtime_context()
    actor_name = context.get_actor_name() if context.get_actor_id() is not None else None
    return actor_name or None, ray.util.get_node_ip_address()


def redirect_actor_output(class_name: str) -> Redirection | None:
    """Redirect this actor's fds 1 and 2 into $SKYRL_LOG_FILE.

    Records name the actor by its Ray actor name when it has one, else by class_name, and the
    node by Ray's node IP address (the hostname outside Ray). Does nothing (returns None) without SKYRL_LOG_FILE or in
    dump mode. Call it first thing in __init__, before anything that prints or starts
    subprocesses, so that they inherit the redirected fds.
    """
    actor_name, node_ip = actor_label()
    return redirect(name=actor_name or class_name, node=node_ip)


def redirected(cls: ActorClass) -> ActorClass:
    """Class decorator: the actor redirects its output before its own __init__ runs.

    Put it under @ray.remote. The class name used in records is the decorated class's.
    """
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        redirect_actor_output(cls.__name__)
        original_init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
