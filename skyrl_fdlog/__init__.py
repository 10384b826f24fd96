"""skyrl_fdlog: every infrastructure line of a Ray training run, whole and attributed, in one file.

    import skyrl_fdlog
    skyrl_fdlog.redirect()      # first thing in an actor's __init__; uses $SKYRL_LOG_FILE

See README.md for the design and docs/format.md for the record format.
"""

from skyrl_fdlog._errors import FdlogError
from skyrl_fdlog._paths import DEFAULT_LOG_PATH, dump_to_stdout, infra_log_path
from skyrl_fdlog._redirect import Redirection, active, redirect, restore
from skyrl_fdlog._version import __version__

__all__ = [
    "DEFAULT_LOG_PATH",
    "FdlogError",
    "Redirection",
    "__version__",
    "active",
    "dump_to_stdout",
    "infra_log_path",
    "redirect",
    "restore",
]
