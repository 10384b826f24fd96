"""Where logs go: the run's file name, the environment variables, opening safely."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Mapping
from pathlib import Path

from skyrl_fdlog._settings import MODE

DEFAULT_LOG_PATH = "/tmp/skyrl-logs"
LOG_FILE_VARIABLE = "SKYRL_LOG_FILE"
DUMP_VARIABLE = "SKYRL_DUMP_INFRA_LOG_TO_STDOUT"
TRUE_WORDS = ("1", "true", "yes")


def dump_to_stdout(environ: Mapping[str, str] | None = None) -> bool:
    """Whether SKYRL_DUMP_INFRA_LOG_TO_STDOUT in environ (default: os.environ) asks for infra
    output on stdout (1, true, yes)."""
    value = (os.environ if environ is None else environ).get(DUMP_VARIABLE, "")
    return value.strip().lower() in TRUE_WORDS


def log_mode(mode: int | None = None) -> int:
    """The mode for new log files: mode, else $SKYRL_FDLOG_MODE (octal, e.g. 0664), else 0640
    (skyrl_fdlog._settings.MODE)."""
    return MODE.value(mode)


def open_log(path: str | os.PathLike[str], *, exclusive: bool = False, mode: int | None = None) -> int:
    """Open path for appending (creating directories and file with log_mode(mode)) and return
    the fd.

    Raises FdlogError naming the path at fault when the path is unsafe or unusable.
    """
    file_mode = log_mode(mode)
    # The compiled core is imported here, not at the top: dump_to_stdout() and run_log_path's
    # naming must work where the core is not built (skyrl_fdlog.skyrl's fallback).
    from skyrl_fdlog._errors import ensure, open_refusal
    from skyrl_fdlog._fdlog import ffi, lib

    text = os.fspath(path)
    result = ffi.new("struct fdl_open_result *")
    fd: int = lib.fdl_open_log(
        os.fsencode(text), lib.FDL_OPEN_EXCLUSIVE if exclusive else 0, file_mode, result
    )
    if fd < 0:
        cause, advice = open_refusal(text, -fd, result)
        ensure(fd, "cannot open the infra log", text, cause=cause, advice=advice)
    return fd


def infra_log_path(
    log_path: str | os.PathLike[str] = DEFAULT_LOG_PATH, *, prefix: str = "infra", mode: int | None = None
) -> Path:
    """Create log_path and a new, empty PREFIX-YYMMDD_HHMMSS.log in it; return its path.

    An existing file is never reused: a second run within the same second gets
    infra-YYMMDD_HHMMSS-2.log, then -3, and so on.  prefix names other per-run logs
    (SkyRL's router-... and render-server-...): letters, digits, '.', '_' and '-'.  mode as for
    open_log.
    """
    if not prefix or not all(c.isascii() and (c.isalnum() or c in "._-") for c in prefix):
        raise ValueError(
            f"prefix must be letters, digits, '.', '_' or '-' (it becomes part of a "
            f"file name), got {prefix!r}"
        )
    directory = Path(os.path.abspath(os.fspath(log_path)))
    stamp = time.strftime("%y%m%d_%H%M%S")
    attempt = 1
    while True:
        suffix = "" if attempt == 1 else f"-{attempt}"
        candidate = directory / f"{prefix}-{stamp}{suffix}.log"
        try:
            os.close(open_log(candidate, exclusive=True, mode=mode))
            return candidate
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise
        attempt += 1
