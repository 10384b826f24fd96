"""The log helper's supervision: starting it, watching it, restarting it, and the fallback.

redirect() (_redirect.py) opens the log and the channels; start_helper() starts a helper
(csrc/helper/helper.c) on them, and watch(), run by a watchdog thread, waits on the helper's
status pipe.  The redirected process keeps copies of the channels' reading ends, so when the
helper dies (even by SIGKILL) nothing written in the meantime is lost and no writer sees
BrokenPipeError or SIGPIPE: the watchdog starts a new helper on the same channels, at once
the first time, after a wait that doubles while helpers keep dying young, and says why in a
note.  It keeps doing so after restore() until every writer (children that outlive restore()
included) has closed the channels.  If no helper can be started it falls back to writing
straight into the log file, and keeps copying what older children still write into the
channels there.

With SKYRL_FDLOG_DEBUG=1 the helper's stderr (else /dev/null) is kept in a file next to the
log, LOG.helper-PID.stderr (PID: the redirected process), for diagnosis.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from skyrl_fdlog._errors import FdlogError, ensure
from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._paths import open_log
from skyrl_fdlog._python_pipes import follow_fds_1_and_2
from skyrl_fdlog._settings import DEBUG, GATHER_US, HELPER

if TYPE_CHECKING:
    from skyrl_fdlog._redirect import Redirection

# A helper that dies sooner than this after its start counts as dying young.  The first
# FREE_RESTARTS young deaths in a row are restarted at once (a helper killed now and then loses
# no time); each further one doubles the wait, from BACKOFF_FIRST up to BACKOFF_CAP, so a helper
# that cannot run (RLIMIT_FSIZE, a broken install) is retried a few times a minute, not
# thousands of times a second.
YOUNG_SECONDS = 10.0
FREE_RESTARTS = 3
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 30.0
# In the fallback, a partial line of an older child is written as it stands after this idle time.
FALLBACK_IDLE_SECONDS = 1.0

# Held while descriptors are made and recorded, never while waiting on a helper; a fork
# waits for it (_redirect.py's fork handling), so a child never inherits a descriptor that is
# not yet accounted for.
fd_lock = threading.Lock()
# Restored (or switched away from) while a helper still serves writers that outlive it; the
# watchdog keeps the reading ends and the log until they are gone.  By id(): not hashable.
lingering: dict[int, Redirection] = {}


def helper_executable() -> str:
    """The helper program: $SKYRL_FDLOG_HELPER, else the one installed beside this module."""
    return HELPER.value()


def make_settings(
    redirection: Redirection, idle_flush: float, snapshot_interval: float, buffer_bytes: int, max_bytes: int
) -> None:
    """The helper's settings (struct fdl_helper_settings) onto redirection._settings."""
    strings = tuple(
        ffi.new("char[]", os.fsencode(text))
        for text in (helper_executable(), str(redirection.path), redirection.name, redirection.node)
    )
    settings = ffi.new("struct fdl_helper_settings *")
    settings.helper_path, settings.path, settings.name, settings.node = strings
    settings.raw = redirection.fmt == "raw"
    settings.lock = redirection.locked
    settings.idle_ms = max(1, int(idle_flush * 1000))
    settings.snapshot_ms = max(0, int(snapshot_interval * 1000))
    settings.buffer_bytes = buffer_bytes
    settings.max_bytes = max_bytes
    settings.gather_us = GATHER_US.value()
    settings.owner = os.getpid()
    redirection._settings = settings
    redirection._keepalive = strings  # cffi frees the strings with their last reference


def keep_helper_stderr(redirection: Redirection) -> None:
    """With SKYRL_FDLOG_DEBUG=1: open LOG.helper-PID.stderr (appending, 0600, never through a
    symbolic link) for the helpers' stderr, and say so in the log."""
    if not DEBUG.value():
        return
    path = f"{redirection.path}.helper-{os.getpid()}.stderr"
    rc = _open_appending(path)
    ensure(
        rc,
        "cannot keep the log helper's stderr in",
        path,
        cause="it is a symbolic link" if rc == -errno.ELOOP else None,
        advice=f"remove it, or unset {DEBUG.variable}",
    )
    redirection._debug_fd = redirection._settings.stderr_fd = rc
    note(redirection, f"{DEBUG.variable}=1: the log helper's stderr goes to {path}")


def _open_appending(path: str) -> int:
    """The fd, or -errno."""
    try:
        return os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, 0o600
        )
    except OSError as error:
        return -(error.errno or errno.EIO)


def start_helper(redirection: Redirection, surface_fd: int, restarted_after: int = 0) -> None:
    """Start a helper on the redirection's log, channels and pipes; surface_fd is the original
    stderr, for the error lines it copies there.  FdlogError with the helper's own reason when
    it cannot start."""
    settings = redirection._settings
    settings.restarted_after = restarted_after
    settings.surface = redirection._surface != "off"
    settings.surface_fd = surface_fd
    status_fd = ffi.new("int *")
    helper_pid = ffi.new("int *")
    reason = ffi.new("char[]", 512)
    out_read, err_read = redirection._channel_reads
    pipes = redirection._python_pipes
    pipe_out_read, pipe_err_read = pipes.reads if pipes is not None else (-1, -1)
    rc = lib.fdl_helper_start(
        settings,
        redirection._log_fd,
        out_read,
        err_read,
        pipe_out_read,
        pipe_err_read,
        status_fd,
        helper_pid,
        reason,
        len(reason),
    )
    ensure(
        rc,
        "cannot start the log helper",
        os.fsdecode(ffi.string(settings.helper_path)),
        cause=ffi.string(reason).decode(errors="replace") or None,
        advice=f"reinstall skyrl_fdlog, or point {HELPER.variable} at a working "
        f"skyrl-fdlog-helper; {DEBUG.variable}=1 keeps its stderr next to the log",
    )
    redirection._status_fd = status_fd[0]
    redirection.helper_pid = helper_pid[0]
    redirection._started_at = time.monotonic()


def watch(redirection: Redirection, original_stderr: Callable[[Redirection], int]) -> None:
    """The watchdog: restart the helper whenever it dies before every writer is gone, during
    the redirection and after it; in the end close what the redirection still holds.
    original_stderr(redirection) gives the fd for a restarted helper's surfacing."""
    young = 0
    try:
        while True:
            words = _read_last_words(redirection._status_fd)
            with fd_lock:
                os.close(redirection._status_fd)
                redirection._status_fd = -1
            if "EXIT eof" in words:
                return  # every writer has closed the channels
            lived = time.monotonic() - redirection._started_at
            young = young + 1 if lived < YOUNG_SECONDS else 0
            wait = _restart_wait(young)
            redirection._restarts += 1
            _follow_log_path(redirection)
            when = (
                "at once"
                if wait == 0
                else (
                    f"after waiting {wait:g} s (the last {young} helpers each lived under "
                    f"{YOUNG_SECONDS:g} s; the wait doubles up to {BACKOFF_CAP:g} s)"
                )
            )
            note(
                redirection,
                f"log helper {redirection.helper_pid} ended after {lived:.1f} s: "
                f"{_why_it_ended(redirection, words)}; restart "
                f"{redirection._restarts} of this redirection, {when}",
            )
            time.sleep(wait)
            try:
                with fd_lock:
                    start_helper(
                        redirection, original_stderr(redirection), restarted_after=redirection.helper_pid
                    )
            except FdlogError as error:
                _fall_back_to_direct_writes(redirection, error.strerror or str(error))
                return
    finally:
        with fd_lock:
            close_quietly(redirection._log_fd, redirection._debug_fd, *redirection._channel_reads)
            redirection._log_fd, redirection._debug_fd, redirection._channel_reads = -1, -1, ()
            lingering.pop(id(redirection), None)


def _restart_wait(young: int) -> float:
    """Seconds to wait before a restart after `young` helpers in a row died young."""
    if young <= FREE_RESTARTS:
        return 0.0
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (young - FREE_RESTARTS - 1))


def _read_last_words(status_fd: int) -> list[str]:
    """Block until the helper exits; return what it said after READY ([] when killed)."""
    said = b""
    while True:
        try:
            chunk = os.read(status_fd, 256)
        except InterruptedError:
            continue
        if not chunk:
            break
        said += chunk
    return [line for line in said.decode(errors="replace").splitlines() if not line.startswith("READY ")]


def _why_it_ended(redirection: Redirection, words: list[str]) -> str:
    if "EXIT term" in words:
        why = "it was sent SIGTERM"
    elif words:
        why = "it said: " + "; ".join(words)
    else:
        why = "it ended without saying why, as when a signal kills it (SIGKILL, a crash, SIGXFSZ...)"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    try:
        size = os.fstat(redirection._log_fd).st_size
    except OSError:
        size = -1
    if limit != resource.RLIM_INFINITY and size >= limit:
        why += (
            f"; the log ({size} bytes) has reached the file size limit (ulimit -f) of "
            f"{limit} bytes that the helper inherits from this process"
        )
    return why


def _follow_log_path(redirection: Redirection) -> None:
    """When logrotate has moved or removed the log, the watchdog's note and the helper it
    restarts belong in the file now at the path, not in the rotated one: reopen it (safely,
    with the mode of the file it replaces) onto the same descriptor.  Where that fails the
    old file is kept: a note there beats none."""
    try:
        held = os.fstat(redirection._log_fd)
        now = os.stat(redirection.path)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        fresh = open_log(redirection.path, mode=stat.S_IMODE(held.st_mode))
    except (OSError, ValueError):
        return
    with fd_lock:
        os.dup2(fresh, redirection._log_fd, inheritable=False)
        os.close(fresh)
    note(redirection, f"{redirection.path} was moved or removed; reopened it")


def note(redirection: Redirection, text: str) -> None:
    """An 'fdlog' record from this process, written while no helper runs.  When the log
    refuses it (full, at the file size limit) it goes to the original stderr instead."""
    rc = lib.fdl_write_note(
        redirection._log_fd, redirection._settings, os.getpid(), text.encode(errors="replace")
    )
    if rc == 0:
        return
    with redirection._lock:  # restore() changes the saved fds only after taking it
        saved = redirection._saved_fds
        stderr = 2 if redirection._restored or saved is None else saved[1]
        try:
            write_all(
                stderr,
                f"skyrl_fdlog: {text} (this note could not be written to "
                f"{redirection.path}: {os.strerror(-rc)})\n".encode(errors="replace"),
            )
        except OSError:
            pass  # no stderr either: nowhere left to say it


def _fall_back_to_direct_writes(redirection: Redirection, reason: str) -> None:
    """No helper can run: this process appends straight to the log (whole lines not
    guaranteed, no records), and what older children write into the channels is copied there
    line by line until they are gone, so none of them waits forever."""
    redirection._direct = True  # flush() has no helper to ask
    with redirection._lock:
        if not redirection._restored:  # after restore() fds 1 and 2 are no longer ours
            with fd_lock:
                for target in (1, 2):
                    os.dup2(redirection._log_fd, target)
                if redirection._python_pipes is not None:
                    redirection._python_pipes.send_to(redirection._log_fd)
                follow_fds_1_and_2()
            _drain_pipes_into_log(redirection)
        note(
            redirection,
            f"no log helper could be started ({reason}); pid {os.getpid()} "
            f"now writes to this file directly, without records, and copies "
            f"what its children still write into the channels here line by line",
        )
    _copy_channels_until_eof(redirection)


def _drain_pipes_into_log(redirection: Redirection) -> None:
    """Append what the actor's own pipes still hold (their writing ends already moved)."""
    pipes = redirection._python_pipes
    for fd in pipes.reads if pipes is not None else ():
        if fd < 0:
            continue
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            write_all(redirection._log_fd, data)


def _copy_channels_until_eof(redirection: Redirection) -> None:
    """The fallback's reader: whole lines per writer (the channel tells each chunk's pid)."""
    sockets = {fd: socket.socket(fileno=fd) for fd in redirection._channel_reads}
    poller = select.poll()
    for fd in sockets:
        poller.register(fd, select.POLLIN)
    pending: dict[tuple, bytes] = {}  # (channel, pid) -> unfinished line
    credentials = socket.CMSG_SPACE(struct.calcsize("3i"))
    lost_bytes, lost_why = [0], [""]  # what the log refused: counted, never a reason to stop

    def append(data: bytes) -> None:
        try:
            write_all(redirection._log_fd, data)
        except OSError as error:
            lost_bytes[0] += len(data)
            lost_why[0] = error.strerror or str(error)

    try:
        while sockets:
            ready = poller.poll(FALLBACK_IDLE_SECONDS * 1000)
            if not ready:  # idle: partial lines as they stand
                append(b"".join(pending.values()))
                pending.clear()
            for fd, _ in ready:
                data, ancillary, _, _ = sockets[fd].recvmsg(65536, credentials)
                if not data:
                    poller.unregister(fd)
                    sockets.pop(fd).detach()
                    continue
                pid = next(
                    (
                        struct.unpack("3i", item)[0]
                        for level, kind, item in ancillary
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                    ),
                    0,
                )
                text = pending.pop((fd, pid), b"") + data
                cut = text.rfind(b"\n") + 1
                if len(text) - cut > 65536:  # no newline in sight: write as it stands
                    cut = len(text)
                append(text[:cut])
                if cut < len(text):
                    pending[(fd, pid)] = text[cut:]
        append(b"".join(pending.values()))
    finally:
        for channel in sockets.values():
            channel.detach()  # the fds are the redirection's; the watchdog closes them
    if lost_bytes[0]:
        note(
            redirection,
            f"dropped {lost_bytes[0]} bytes that children wrote while no log helper "
            f"ran: the log could not take them ({lost_why[0]})",
        )


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def close_quietly(*fds: int) -> None:
    """Close fds we own; a failing close (a network filesystem whose server went away
    reports ENOTCONN) must not turn restore() into a crash: the helper holds its own copies."""
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
