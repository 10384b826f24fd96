"""Ray integration: the driver reserves the run's infra log, each actor redirects into it.

    from skyrl_fdlog.ray import init_ray, redirected

    init_ray(log_path=cfg.trainer.log_path)        # driver, instead of ray.init()

    @ray.remote
    @redirected                                      # actor: fds 1 and 2 go to the infra log
    class Engine: ...

The driver itself is never redirected: what it prints (configuration, steps, rewards) stays on
the terminal, and so does whatever an unredirected actor prints, through log_to_driver. Ray's
own lines on the driver (its logging, the (raylet) lines) go into the infra log, failures
excepted (_ray_logs.py); a driver that calls ray.init() itself gets that from
capture_ray_logs(). Ray actors that a redirected actor starts (vLLM's Ray workers) redirect
too, under the starting actor's name and their rank.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import ray

from skyrl_fdlog import (
    DEFAULT_LOG_PATH,
    LOG_FILE_VARIABLE,
    Redirection,
    _last_words,
    _ray_logs,
    active,
    dump_to_stdout,
    infra_log_path,
    redirect,
)
from skyrl_fdlog._paths import DUMP_VARIABLE
from skyrl_fdlog._redirect import SURFACE_CHOICES, SURFACE_VARIABLE, _check_choice

Actor = TypeVar("Actor")  # the class that @redirected decorates
# The name under which a Ray actor started by a redirected actor redirects (see
# setup_worker), set in that actor's runtime_env.
STARTED_ACTOR_VARIABLE = "SKYRL_FDLOG_STARTED_BY"
# Ray runs this in every worker process of a job started by init_ray (runtime_env's
# worker_process_setup_hook); a driver that calls ray.init() itself passes it there.
WORKER_SETUP_HOOK = "skyrl_fdlog.ray.setup_worker"


def init_ray(
    log_path: str | os.PathLike = DEFAULT_LOG_PATH, *, surface: str | None = None, **ray_init_kwargs: Any
) -> Path | None:
    """Start or join Ray so that redirected actors write into a new infra log under log_path.

    Returns the infra log's path, or None in dump mode (SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes
    in this process's environment or in the env_vars of the runtime_env passed here), where no
    file is made, SKYRL_LOG_FILE is not set and actors do not redirect. Otherwise SKYRL_LOG_FILE
    names the new file in this process's environment and in the runtime_env of every worker
    (merged into the caller's runtime_env, whose own env_vars win except for SKYRL_LOG_FILE and
    the dump switch, which init_ray pins so that actors do what it announced), its
    worker_process_setup_hook is WORKER_SETUP_HOOK unless the caller gave one (so that Ray
    actors started by redirected actors redirect too), and Ray's own lines on this driver go
    into the file from before ray.init() on (capture_ray_logs), with Ray's driver-side logging
    level at INFO unless logging_level= says otherwise. Other keyword arguments, address= and
    log_to_driver= (default True) included, go to ray.init(); when it fails, the file and the
    directories made for it are removed and the environment is left as it was.

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
        runtime_env.setdefault("worker_process_setup_hook", WORKER_SETUP_HOOK)
        # Ray's own INFO lines on the driver ("Started a local Ray instance") are infra: they
        # go into the file with the rest of Ray's lines, so none is lost by quieting Ray.
        # RAY_BACKEND_LOG_LEVEL, SkyRL's way to quiet Ray, is deliberately left alone: with
        # Ray 2.60 every process that reads it prints a notice saying so on stderr, and the
        # driver's own notice comes from C++, past any Python hook (docs/integration.md).
        ray_init_kwargs.setdefault("logging_level", logging.INFO)
    else:
        ray_init_kwargs.setdefault("logging_level", logging.WARNING)
    runtime_env["env_vars"] = env_vars
    # log_to_driver stays on unless the caller turns it off: output of actors that do not
    # redirect (a training entrypoint running as a task, say) must still reach the terminal.
    ray_init_kwargs.setdefault("log_to_driver", True)
    try:
        # Before ray.init(), whose own warnings ("Token authentication is enabled") are infra;
        # held until it succeeded, so that a failed one leaves the file empty and its lines
        # on the terminal, next to its error.
        if log_file is not None:
            _ray_logs.capture(log_file, hold=True)
        else:
            _ray_logs.release()  # a run in dump mode after ray.shutdown() shows everything
        ray.init(runtime_env=runtime_env, **ray_init_kwargs)
    except BaseException:
        _ray_logs.release(replay=True)
        if log_file is not None:
            _remove_unused_log_file(log_file, first_made)
        raise
    _ray_logs.commit()
    _keep_own_lines_whole()
    if log_file is not None:
        os.environ[LOG_FILE_VARIABLE] = str(log_file)
        print(f"Infrastructure logs will be written to: {log_file}", flush=True)
    return log_file


def capture_ray_logs() -> Path | None:
    """For a driver that calls ray.init() itself: Ray's own lines on this driver go into the
    infra log from now on, as in a run started by init_ray().

    Call it right after ray.init(). Records of the `ray` loggers below ERROR go into the file as
    lines of `ray-driver`, and the lines Ray forwards from its own processes as lines of
    `raylet`, `gcs`, `autoscaler`..., except failures (ERROR records, worker deaths,
    out-of-memory kills), which stay on the terminal; output of actors and tasks is untouched.
    The file is the SKYRL_LOG_FILE of the Ray job's runtime_env, else of this process's
    environment. Returns it, or None (nothing captured) in dump mode or without a file.
    """
    if not ray.is_initialized():
        raise RuntimeError(
            "capture_ray_logs() needs a connected Ray: call it right after "
            "ray.init(...), or use init_ray(), which calls it itself"
        )
    log_file = _log_file_in_force()
    if log_file is None and os.environ.get(LOG_FILE_VARIABLE) and not dump_to_stdout():
        log_file = Path(os.environ[LOG_FILE_VARIABLE])
    if log_file is None:
        _ray_logs.release()
        return None
    _ray_logs.capture(log_file)
    _keep_own_lines_whole()
    return log_file


# What actors copy to their stderr for the terminal: error lines and last words, "NAME[PID] ..."
# after one line "skyrl_fdlog: ...".  Ray's log deduplicator on the driver folds lines that are
# equal but for their words with digits (the pid, "vllm-engine-3") across actors into one line
# "[repeated Nx across cluster]" printed up to 5 s later: eight engines failing at once would
# show one engine's last words, shuffled.  Lines that its allow pattern matches pass as they are.
_OWN_LINES = r"^skyrl_fdlog: |^\S+\[\d+\] "


def _keep_own_lines_whole() -> None:
    """Exempt the lines of _OWN_LINES from Ray's deduplication on this driver, keeping the
    user's RAY_DEDUP_LOGS_ALLOW_REGEX.  Private objects: Ray reads that variable once, when it is
    imported, before init_ray can set it.  A Ray without them keeps folding."""
    try:
        from ray._private.ray_logging import stderr_deduplicator, stdout_deduplicator
    except ImportError:
        return
    for deduplicator in (stdout_deduplicator, stderr_deduplicator):
        allowed = getattr(deduplicator, "allow_re", None)
        if allowed is not None and _OWN_LINES in allowed.pattern:
            continue
        pattern = _OWN_LINES if allowed is None else f"(?:{allowed.pattern})|{_OWN_LINES}"
        deduplicator.allow_re = re.compile(pattern)


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
    where = (
        f"its actors write to {log_file}"
        if log_file is not None
        else "its actors write to no infra log (dump mode, or Ray started without init_ray)"
    )
    raise RuntimeError(
        f"init_ray() called while Ray is already initialised in this process; "
        f"{where}. One run has one infra log: call ray.shutdown() first to start "
        f"a new run, or pass ignore_reinit_error=True to get the file in force"
    )


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
    Ray actors that this actor starts from then on redirect as NAME-w0, NAME-w1, ... in the
    order it starts them, in a job whose runtime_env has WORKER_SETUP_HOOK (see setup_worker).
    """
    return redirect(name=_ray_actor_name() or class_name)


_started_count = itertools.count()


def setup_worker() -> None:
    """Ray's worker_process_setup_hook for jobs started by init_ray (WORKER_SETUP_HOOK); a
    driver that calls ray.init() itself passes it in its runtime_env the same way.

    In every worker process of the job, before any actor class is imported:
      - a process started for an actor that a redirected actor started redirects under the
        name that actor gave it (STARTED_ACTOR_VARIABLE in its runtime_env);
      - from then on, whenever this process is redirected (by @redirected, redirect() or any
        other way) and starts a Ray actor, that actor gets STARTED_ACTOR_VARIABLE=NAME-wK,
        NAME being this process's redirection's and K counting from 0 in the order it starts
        them: the rank, for vLLM's Ray executor and create_worker_group, which start their
        workers in rank order. Actors whose class redirects itself (@redirected) and those
        given the variable already are left alone. Ray merges a runtime_env's env_vars into
        the inherited ones, so the job's SKYRL_LOG_FILE stays.
    """
    name = os.environ.get(STARTED_ACTOR_VARIABLE)
    if name:
        redirect(name=name)
    # ActorClass._remote is where both Actor.remote() and Actor.options(...).remote() end. It
    # is private, but Ray has no public hook on starting an actor, and a runtime_env given per
    # call would have to be written at every call site.
    original = ray.actor.ActorClass._remote

    @functools.wraps(original)
    def _remote(
        self: ray.actor.ActorClass, args: Any = None, kwargs: Any = None, **actor_options: Any
    ) -> Any:
        starter = active()
        actor_class = getattr(getattr(self, "__ray_metadata__", None), "modified_class", None)
        runtime_env = dict(actor_options.get("runtime_env") or {})
        env_vars = dict(runtime_env.get("env_vars") or {})
        if (
            starter is not None
            and STARTED_ACTOR_VARIABLE not in env_vars
            and not getattr(actor_class, "__skyrl_fdlog_redirected__", False)
        ):
            env_vars[STARTED_ACTOR_VARIABLE] = f"{starter.name}-w{next(_started_count)}"
            runtime_env["env_vars"] = env_vars
            actor_options["runtime_env"] = ray.runtime_env.RuntimeEnv(**runtime_env)
        return original(self, args, kwargs, **actor_options)

    ray.actor.ActorClass._remote = _remote


def redirected(cls: type[Actor]) -> type[Actor]:
    """Class decorator: the actor redirects its output before its own __init__ runs.

    Put it under @ray.remote. The class name used in records is the decorated class's. Works
    for classes without an __init__ of their own and for subclasses of built-ins (dict).
    When __init__ raises, the actor's last lines reach the terminal once its process is gone.
    """
    original_init = cls.__init__

    def __init__(self: Actor, *args: Any, **kwargs: Any) -> None:
        # An exception out of __init__ ends the actor in order: leave the mark that brings
        # its last words to the terminal (_last_words.py).
        with _last_words.guarded_init():
            redirect_actor_output(cls.__name__)
            original_init(self, *args, **kwargs)

    if inspect.isfunction(inspect.unwrap(original_init)):
        functools.update_wrapper(__init__, original_init)
    else:
        # object.__init__ or a built-in's: Ray's tracing sets __signature__ on whatever
        # __wrapped__ leads to, which a built-in cannot take, so the wrapper keeps its own
        # (*args, **kwargs) signature and the built-in checks the arguments when called.
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__  # type: ignore[method-assign,assignment]  # the decorator's purpose
    cls.__skyrl_fdlog_redirected__ = True  # type: ignore[attr-defined]  # actors starting it leave its naming to it
    return cls
