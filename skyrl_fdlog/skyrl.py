"""SkyRL's names for skyrl_fdlog: switching SkyRL over is one import (docs/skyrl.md).

    # skyrl/train/utils/ray_logging.py
    from skyrl_fdlog.skyrl import redirect_actor_output_to_file

    # skyrl/train/utils/utils.py, initialize_ray()
    log_file = skyrl_fdlog.skyrl.prepare_run_log(cfg.trainer.log_path)

SkyRL's behaviour is kept where its callers and tests rely on it: the dump switch
(SKYRL_DUMP_INFRA_LOG_TO_STDOUT), SKYRL_LOG_FILE, the directory made on this node, and the fds
behind sys.stdout and sys.stderr redirected besides 1 and 2 (they differ under pytest's capture).
What changes: records are prefixed (actor, pid, stream; fmt="raw" is not offered here, since
attribution is the point), writes reach the file asynchronously (skyrl_fdlog.flush() is the
barrier), and a refusal raises FdlogError with its fix.

Where the compiled core is not built (macOS laptops, where SkyRL's unit tests also run) the
redirect falls back to SkyRL's own plain dup2 of the file, with one warning line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from skyrl_fdlog._paths import DEFAULT_LOG_PATH, LOG_FILE_VARIABLE, dump_to_stdout, infra_log_path

_warned_no_core = False


def redirect_actor_output_to_file() -> None:
    """SkyRL's function: this actor's stdout and stderr (fds 1 and 2, and the fds behind
    sys.stdout and sys.stderr where those differ) into $SKYRL_LOG_FILE as records.

    Does nothing in dump mode or without SKYRL_LOG_FILE.  Calling it again after something
    else was dup2'd over those fds captures them again, into the same file.
    """
    if dump_to_stdout():
        return
    log_file = os.environ.get(LOG_FILE_VARIABLE)
    if not log_file:
        return
    try:
        from skyrl_fdlog._redirect import redirect
    except ImportError as error:  # no compiled core on this platform
        _plain_dup2(log_file, error)
        return
    redirect(log_file)
    for stream, target in ((sys.stdout, 1), (sys.stderr, 2)):
        _point_at(_fileno(stream), target)


def prepare_run_log(log_path: str | os.PathLike = DEFAULT_LOG_PATH, *, prefix: str = "infra") -> Path | None:
    """What SkyRL's initialize_ray() needs for the driver: unless in dump mode, a new, empty
    PREFIX-YYMMDD_HHMMSS.log under log_path (never one another run already has), also put in
    os.environ as SKYRL_LOG_FILE; pass str(path) on in the runtime env's env_vars.  Returns
    None in dump mode, creating nothing.  prefix names SkyRL's other per-run logs (router,
    render-server), which are not put in the environment."""
    if dump_to_stdout():
        return None
    path = infra_log_path(log_path, prefix=prefix)
    if prefix == "infra":
        os.environ[LOG_FILE_VARIABLE] = str(path)
    return path


def get_actor_logs_tail(actor: str, num_lines: int = 50, log_file: str | os.PathLike | None = None) -> str:
    """The last num_lines lines that the processes of `actor` (its name as records carry it,
    or a shell-style pattern: 'VLLMServerActor*') wrote to the infra log (default
    $SKYRL_LOG_FILE), one per text line as `actor[pid] stream: text`, oldest first; '' when
    there are none or there is no log.  For re-raising a caught actor failure with its own
    last words, not the whole shared log's (read from the end: cheap on a large file)."""
    from skyrl_fdlog.reader import tail

    path = log_file or os.environ.get(LOG_FILE_VARIABLE)
    if not path or not os.path.exists(path):
        return ""
    return "\n".join(
        f"{line.name}[{line.pid}] {line.stream}: {line.payload.decode(errors='replace')}"
        for line in tail(path, num_lines, actor=actor)
    )


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or not backed by a descriptor
        return None


def _point_at(fd: int | None, target: int) -> None:
    """Make fd (sys.stdout's, say, under pytest's capture) write where target does."""
    if fd is None or fd == target:
        return
    here, there = os.fstat(fd), os.fstat(target)
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        os.dup2(target, fd)


def _plain_dup2(log_file: str, why: ImportError) -> None:
    """SkyRL's own redirect, where skyrl_fdlog's core is not built: lines of several processes
    can tear and carry no attribution, as before the switch."""
    global _warned_no_core
    if not _warned_no_core:
        _warned_no_core = True
        print(
            f"skyrl_fdlog: the compiled core is not available on {sys.platform} ({why}); "
            f"falling back to a plain dup2 of {log_file} (no records, lines may tear)",
            file=sys.stderr,
            flush=True,
        )
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    with open(log_file, "a", buffering=1) as log:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            fd = _fileno(stream)
            if fd is not None:
                os.dup2(log.fileno(), fd)
