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
import inspect
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

import ray

from skyrl_fdlog import (DEFAULT_LOG_PATH, LOG_FILE_VARIABLE, Redirection, dump_to_stdout,
                         infra_log_path, redirect)
from skyrl_fdlog._paths import DUMP_VARIABLE
from skyrl_fdlog._redirect import SURFACE_CHOICES, SURFACE_VARIABLE, _check_choice

ActorClass = TypeVar("ActorClass", bound=type)


def init_ray(log_path: str | os.PathLike = DEFAULT_LOG_PATH, *, surface: str | None = None,
             **ray_init_kwargs: Any) -> Path | None:
    """Start or join Ray so that redirected actors write into a new infra log under log_path.

    Returns the infra log's path, or None in dump mode (SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes
    in this process's environment or in the env_vars of the runtime_env passed here), where no
    file is made, SKYRL_LOG_FILE is not set and actors do not redirect. Otherwise SKYRL_LOG_FILE
    names the new file in this process's environment and in the runtime_env of every worker
    (merged into the caller's runtime_env, whose own env_vars win except for SKYRL_LOG_FILE and
    the dump switch, which init_ray pins so that actors do what it announced), and Ray's
    driver-side logging defaults to WARNING. Other keyword arguments, address= and log_to_driver=
    (default True) included, go to ray.init(); when it fails, the file and the directories made
    for it are removed and the environment is left as it was.

    One run, one file: while Ray is initialised in this process, a second call changes nothing;
    with ignore_reinit_error=True it returns the file in force (None if there is none), without
    it it raises RuntimeError.

    surface ("error" or "off"), when given, is every actor's SKYRL_FDLOG_SURFACE: which of
    their lines redirect() also copies to the terminal (see redirect()).
    """
    if ray.is_initialized():
        return _second_call(bool(ray_init_kwargs.get("ignore_reinit_error")))
    runtime_env = dict(ray_init_kwargs.pop("runtime_env", None) or {})
    env_vars = dict(runtime_env.get("env_vars") or {})
    # The switch wins wherever init_ray sees it, and the actors get the decision either way,
    # so that a cluster started with the switch in its environment cannot contradict the driver.
    dump = dump_to_stdout() or dump_to_stdout(env_vars)
    env_vars[DUMP_VARIABLE] = "1" if dump else "0"
    if surface is not None:
        _check_choice("surface", surface, SURFACE_CHOICES)
        env_vars[SURFACE_VARIABLE] = surface
    log_file = first_made = None
    if not dump:
        first_made = _first_missing_directory(log_path)
        log_file = infra_log_path(log_path)
        env_vars[LOG_FILE_VARIABLE] = str(log_file)
        # Ray's own INFO lines on the driver ("Started a local Ray instance") are infra too.
        # RAY_BACKEND_LOG_LEVEL, SkyRL's way to quiet Ray, is deliberately left alone: with
        # Ray 2.60 every process that reads it prints a notice saying so on stderr, and the
        # workers' notices reach the terminal as "(raylet)" lines (docs/integration.md).
        ray_init_kwargs.setdefault("logging_level", logging.WARNING)
    runtime_env["env_vars"] = env_vars
    # log_to_driver stays on unless the caller turns it off: output of actors that do not
    # redirect (a training entrypoint running as a task, say) must still reach the terminal.
    ray_init_kwargs.setdefault("log_to_driver", True)
    try:
        ray.init(runtime_env=runtime_env, **ray_init_kwargs)
    except BaseException:
        if log_file is not None:
            _remove_unused_log_file(log_file, first_made)
        raise
    if log_file is not None:
        os.environ[LOG_FILE_VARIABLE] = str(log_file)
        print(f"Infrastructure logs will be written to: {log_file}", flush=True)
    return log_file


def _log_file_in_force() -> Path | None:
    """The infra log that this Ray job's actors write to, from the job's runtime_env: None in
    dump mode or when Ray was initialised without init_ray."""
    env_vars = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    log_file = env_vars.get(LOG_FILE_VARIABLE)
    return Path(log_file) if log_file and not dump_to_stdout(env_vars) else None


def _second_call(ignore_reinit_error: bool) -> Path | None:
    log_file = _log_file_in_force()
    if ignore_reinit_error:
        return log_file
    where = (f"its actors write to {log_file}" if log_file is not None else
             "its actors write to no infra log (dump mode, or Ray started without init_ray)")
    raise RuntimeError(f"init_ray() called while Ray is already initialised in this process; "
                       f"{where}. One run has one infra log: call ray.shutdown() first to start "
                       f"a new run, or pass ignore_reinit_error=True to get the file in force")


def _first_missing_directory(log_path: str | os.PathLike) -> Path | None:
    """The outermost directory of log_path that does not exist yet, None if all exist."""
    missing = None
    directory = Path(os.path.abspath(os.fspath(log_path)))
    while not os.path.lexists(directory):
        missing, directory = directory, directory.parent
    return missing


def _remove_unused_log_file(log_file: Path, first_made: Path | None) -> None:
    """Undo infra_log_path() after ray.init failed: the file while still empty, then the
    directories made for it (from log_file's up to first_made) while empty."""
    try:
        if log_file.stat().st_size == 0:
            log_file.unlink()
        directory = log_file.parent
        while first_made is not None and directory.is_relative_to(first_made):
            directory.rmdir()
            directory = directory.parent
    except OSError:
        pass  # something else lives there now (another run's file): it stays


def _ray_actor_name() -> str | None:
    """The Ray actor name of the calling process, None outside a named actor.

    Outside Ray there is none: asking Ray's runtime context there would start a cluster.
    """
    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return (context.get_actor_name() or None) if context.get_actor_id() is not None else None


def redirect_actor_output(class_name: str) -> Redirection | None:
    """Redirect this actor's fds 1 and 2 into $SKYRL_LOG_FILE.

    Records name the actor by its Ray actor name when it has one, else by class_name, and the
    node by Ray's node IP address, as redirect() does everywhere inside Ray. Does nothing
    (returns None) without SKYRL_LOG_FILE or in dump mode. Call it first thing in __init__,
    before anything that prints or starts subprocesses, so that they inherit the redirected fds.
    """
    return redirect(name=_ray_actor_name() or class_name)


def redirected(cls: ActorClass) -> ActorClass:
    """Class decorator: the actor redirects its output before its own __init__ runs.

    Put it under @ray.remote. The class name used in records is the decorated class's. Works
    for classes without an __init__ of their own and for subclasses of built-ins (dict).
    """
    original_init = cls.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        redirect_actor_output(cls.__name__)
        original_init(self, *args, **kwargs)

    if inspect.isfunction(inspect.unwrap(original_init)):
        functools.update_wrapper(__init__, original_init)
    else:
        # object.__init__ or a built-in's: Ray's tracing sets __signature__ on whatever
        # __wrapped__ leads to, which a built-in cannot take, so the wrapper keeps its own
        # (*args, **kwargs) signature and the built-in checks the arguments when called.
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__
    return cls
