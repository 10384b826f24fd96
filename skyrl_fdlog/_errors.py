"""FdlogError and the translation of the C core's refusals into advice."""

from __future__ import annotations

import os

from skyrl_fdlog._fdlog import lib

CHOOSE_ANOTHER = "set trainer.log_path (or SKYRL_LOG_FILE) to a directory you own"


class FdlogError(OSError):
    """skyrl_fdlog could not do what was asked; nothing was redirected.

    The message names the path at fault, the cause and what to do.
    """


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def open_refusal(path: str, errno: int, result) -> FdlogError:
    """The FdlogError for a failed fdl_open_log: result is its fdl_open_result."""
    from skyrl_fdlog._fdlog import ffi

    culprit = ffi.string(result.culprit).decode(errors="replace")
    refusal = result.refusal
    if refusal == lib.FDL_SYMLINK:
        cause = f"{culprit} is a symbolic link"
        if result.owner_uid >= 0:
            cause += f" owned by {_owner(result.owner_uid)} inside a sticky world-writable directory"
        advice = f"remove the link or {CHOOSE_ANOTHER}; skyrl_fdlog never follows a link to its log"
    elif refusal == lib.FDL_NOT_DIRECTORY:
        cause = f"{culprit} exists and is not a directory"
        advice = f"remove or rename it, or {CHOOSE_ANOTHER}"
    elif refusal in (lib.FDL_FOREIGN_DIRECTORY, lib.FDL_FOREIGN_FILE):
        kind = "directory" if refusal == lib.FDL_FOREIGN_DIRECTORY else "file"
        cause = (f"the {kind} {culprit} is owned by {_owner(result.owner_uid)} inside a sticky "
                 f"world-writable directory, where another user could have planted it")
        advice = CHOOSE_ANOTHER
    elif refusal == lib.FDL_HARD_LINK:
        cause = f"{culprit} has other hard links, so it may be someone else's file"
        advice = f"remove it or {CHOOSE_ANOTHER}"
    elif refusal == lib.FDL_NOT_REGULAR:
        cause = f"{culprit} is not a regular file"
        advice = f"remove it or {CHOOSE_ANOTHER}"
    else:
        cause = f"{culprit}: {os.strerror(errno)}"
        advice = {
            "EACCES": CHOOSE_ANOTHER,
            "EROFS": f"the filesystem is read-only; {CHOOSE_ANOTHER}",
            "ENOSPC": "free some space on that filesystem or choose another trainer.log_path",
        }.get(_errno_name(errno), f"check the path, or {CHOOSE_ANOTHER}")
    return FdlogError(errno, f"cannot open the infra log {path}: {cause}; {advice}", path)


def _errno_name(errno: int) -> str:
    import errno as errno_module

    return errno_module.errorcode.get(errno, "")
