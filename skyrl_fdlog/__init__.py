"""skyrl_fdlog: every infrastructure line of a Ray training run, whole and attributed, in one file.

    import skyrl_fdlog
    skyrl_fdlog.redirect()      # first thing in an actor's __init__; uses $SKYRL_LOG_FILE

See README.md for the design and docs/format.md for the record format.

The names below load the compiled core on first use, so the reader
(skyrl_fdlog.reader, `python -m skyrl_fdlog cat`) also works where only the
log was copied and the extension is not built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skyrl_fdlog._version import __version__

_HOMES = {
    "FdlogError": "skyrl_fdlog._errors",
    "DEFAULT_LOG_PATH": "skyrl_fdlog._paths",
    "LOG_FILE_VARIABLE": "skyrl_fdlog._paths",
    "dump_to_stdout": "skyrl_fdlog._paths",
    "infra_log_path": "skyrl_fdlog._paths",
    "Redirection": "skyrl_fdlog._redirect",
    "active": "skyrl_fdlog._redirect",
    "flush": "skyrl_fdlog._redirect",
    "redirect": "skyrl_fdlog._redirect",
    "restore": "skyrl_fdlog._redirect",
}

__all__ = ["__version__", *sorted(_HOMES)]

if TYPE_CHECKING:
    from skyrl_fdlog._errors import FdlogError
    from skyrl_fdlog._paths import (DEFAULT_LOG_PATH, LOG_FILE_VARIABLE, dump_to_stdout,
                                    infra_log_path)
    from skyrl_fdlog._redirect import Redirection, active, flush, redirect, restore


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'skyrl_fdlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
