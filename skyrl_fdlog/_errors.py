"""FdlogError, ensure() (the one way a C core result becomes one), and the translation of
fdl_open_log's refusals into a cause and advice."""

from __future__ import annotations

import errno as errno_module
import os
from typing import Any, NoReturn

from skyrl_fdlog._fdlog import ffi, lib

CHOOSE_ANOTHER = "set trainer.log_path (or SKYRL_LOG_FILE) to a directory you own"


class FdlogError(OSError):
    """skyrl_fdlog could not do what was asked; nothing was redirected.

    The message names the path at fault, the cause and what to do; `filename` is that path.
    """

    def __str__(self) -> str:
        # The message names the path already: OSError's "[Errno N] message: 'path'" would
        # print it twice more.
        return self.strerror or super().__str__()


def ensure(rc: int, what: str, path: str | None = None, *, advice: str = "", cause: str | None = None) -> int:
    """rc, when a C core call succeeded (rc >= 0); else raise FdlogError "WHAT PATH: CAUSE;
    ADVICE", CAUSE being the -errno's text unless given."""
    if rc >= 0:
        return rc
    _fail(-rc, f"{what} {path}" if path else what, path, cause or os.strerror(-rc), advice)


def _fail(errno: int, what: str, path: str | None, cause: str, advice: str) -> NoReturn:
    raise FdlogError(errno, f"{what}: {cause}" + (f"; {advice}" if advice else ""), path)


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def open_refusal(path: str, errno: int, result: Any) -> tuple[str, str]:
    """Cause and advice for a failed fdl_open_log of path: result is its fdl_open_result.
    The path at fault is named unless it is path itself (the message names that already)."""
    culprit = ffi.string(result.culprit).decode(errors="replace")
    named = culprit != path
    refusal = result.refusal
    if refusal == lib.FDL_SYMLINK:
        cause = f"{culprit if named else 'it'} is a symbolic link"
        if result.owner_uid >= 0:
            cause += f" owned by {_owner(result.owner_uid)} inside a sticky world-writable directory"
        advice = f"remove the link or {CHOOSE_ANOTHER}; skyrl_fdlog never follows a link to its log"
    elif refusal == lib.FDL_NOT_DIRECTORY:
        cause = f"{culprit} exists and is not a directory"
        advice = f"remove or rename it, or {CHOOSE_ANOTHER}"
    elif refusal in (lib.FDL_FOREIGN_DIRECTORY, lib.FDL_FOREIGN_FILE):
        kind = "directory" if refusal == lib.FDL_FOREIGN_DIRECTORY else "file"
        which = f"the {kind} {culprit}" if named else "it"
        cause = (
            f"{which} is owned by {_owner(result.owner_uid)} inside a sticky world-writable "
            f"directory, where another user could have planted it"
        )
        advice = CHOOSE_ANOTHER
    elif refusal == lib.FDL_HARD_LINK:
        cause = f"{culprit if named else 'it'} has other hard links, so it may be someone else's file"
        advice = f"remove it or {CHOOSE_ANOTHER}"
    elif refusal == lib.FDL_NOT_REGULAR:
        cause = f"{culprit if named else 'it'} is not a regular file"
        advice = f"remove it or {CHOOSE_ANOTHER}"
    else:
        cause = f"{culprit}: {os.strerror(errno)}" if named else os.strerror(errno)
        advice = {
            "EACCES": CHOOSE_ANOTHER,
            "EROFS": f"the filesystem is read-only; {CHOOSE_ANOTHER}",
            "ENOSPC": "free some space on that filesystem or choose another trainer.log_path",
        }.get(errno_module.errorcode.get(errno, ""), f"check the path, or {CHOOSE_ANOTHER}")
    return cause, advice
