"""redirect() and restore(): fds 1 and 2 of this process into the infra log.

The pieces, in the order redirect() puts them together:
  1. the log is opened safely (_paths.open_log) before anything changes, so
     an FdlogError leaves the process as it was;
  2. two capture channels (socket pairs: one for out, one for err), two pipes
     for this process's own Python output (_python_pipes.py), and a helper
     process (csrc/helper/helper.c) that reads them all and writes records;
  3. the channels' writing ends go onto fds 1 and 2, inherited by every
     child, and sys.stdout and sys.stderr onto the pipes.
A watchdog thread supervises the helper: restarts, the fallback to direct writes
(_helper_process.py).  Every setting comes from skyrl_fdlog/_settings.py.

Descriptors: everything this module keeps sits at 3 or above (closed fds 0-2
are filled with /dev/null while redirected, and closed again by restore()).
A fork waits while descriptors are being made, so a child never inherits one
that is not yet accounted for; the child closes all of them.

As PID 1 of a pid namespace (a one-process container) no helper is started:
the kernel would kill it together with this process.  fds 1 and 2 then append
straight to the log, as a plain `>>` redirection does (docs/reliability.md).
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyrl_fdlog import _last_words, _nonblock_guard
from skyrl_fdlog._errors import ensure
from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._helper_process import (
    close_quietly,
    fd_lock,
    helper_executable,
    keep_helper_stderr,
    lingering,
    make_settings,
    note,
    start_helper,
    watch,
)
from skyrl_fdlog._node import default_node
from skyrl_fdlog._paths import LOG_FILE_VARIABLE, dump_to_stdout, open_log
from skyrl_fdlog._python_pipes import PythonPipes, flush_quietly, follow_fds_1_and_2
from skyrl_fdlog._settings import (
    BUFFER_BYTES,
    FMT,
    IDLE_FLUSH,
    LOCK,
    MAX_BYTES,
    MODE,
    SNAPSHOT_INTERVAL,
    SURFACE,
    check_choice,
)
from skyrl_fdlog._settings import SURFACE_CHOICES as SURFACE_CHOICES  # for skyrl_fdlog.ray

__all__ = ["Redirection", "active", "flush", "helper_executable", "redirect", "restore"]

RESTORE_WAIT_SECONDS = 5.0
# For skyrl_fdlog.ray's init_ray, which takes a surface argument too (SURFACE_CHOICES above).
SURFACE_VARIABLE = SURFACE.variable
_check_choice = check_choice


@dataclass
class Redirection:
    """An active redirection of fds 1 and 2 into `path`."""

    path: Path
    name: str
    node: str
    fmt: str
    locked: bool
    helper_pid: int
    # What the process holds while redirected; private to this module.
    _log_fd: int = field(repr=False, default=-1)
    _channel_reads: tuple[int, ...] = field(repr=False, default=())
    _channel_writes: tuple[int, ...] = field(repr=False, default=())
    _python_pipes: PythonPipes | None = field(repr=False, default=None)
    _saved_fds: Any = field(repr=False, default=None)  # cffi int[2], or None
    _was_closed: tuple[int, ...] = field(repr=False, default=())  # of fds 0-2, before capture began
    _settings: Any = field(repr=False, default=None)  # cffi struct fdl_helper_settings *
    _keepalive: tuple[Any, ...] = field(repr=False, default=())
    _status_fd: int = field(repr=False, default=-1)
    _debug_fd: int = field(repr=False, default=-1)  # the helper's stderr (SKYRL_FDLOG_DEBUG)
    _direct: bool = field(repr=False, default=False)  # fds 1 and 2 append to the log itself (PID 1, fallback)
    _on_fds: tuple[Any, ...] = field(repr=False, default=())  # (st_dev, st_ino) of fds 1 and 2 once captured
    # Copies of the channels' writing ends while in force, whatever is later put on fds 1 and
    # 2: the O_NONBLOCK guard watches them, flush() sends its requests through them.
    _own_writes: tuple[int, ...] = field(repr=False, default=())
    _nonblock_guard: Any = field(repr=False, default=None)
    _restored: bool = field(repr=False, default=False)
    _surface: str = field(repr=False, default="error")
    _lock: threading.Lock = field(repr=False, default_factory=threading.Lock)
    _started_at: float = field(repr=False, default=0.0)
    _restarts: int = field(repr=False, default=0)
    _watchdog: threading.Thread | None = field(repr=False, default=None)


_active: Redirection | None = None
# Being set up: holds descriptors, not yet _active.
_setting_up: Redirection | None = None
# Serialises redirect() and restore(), waits included.  The watchdog never takes it.
_state_lock = threading.RLock()
# fd_lock (_helper_process.py) is held while descriptors are made and recorded; a fork waits
# for it (see the end of this module).  lingering holds redirections whose watchdog serves
# writers that outlive them.


def _default_name() -> str:
    """The Ray actor's name or class inside a Ray actor, else this process's name."""
    ray = sys.modules.get("ray")
    # Only a connected worker: asking an uninitialised Ray for its context starts a cluster.
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            context = ray.get_runtime_context()
            if context.get_actor_id() is not None:
                actor_name = context.get_actor_name()
                if actor_name:
                    return actor_name
                # Ray has no public call for the actor's class; the public task function name
                # ("module.Class.method") holds it while a task of the actor runs.  Outside one
                # (another thread) there is none, and the process name below serves.
                function = context.get_task_function_name() or ""
                if function.count(".") >= 1:
                    return str(function.split(".")[-2])
        except Exception:  # not a worker, or a Ray without these: fall back
            pass
    try:
        return Path(f"/proc/{os.getpid()}/comm").read_text().strip() or "python"
    except OSError:
        return Path(sys.argv[0]).name or "python"


def _flush_python_streams() -> None:
    flush_quietly((sys.stdout, sys.stderr))


def _line_buffer_python_streams() -> None:
    """Whole lines reach the channel promptly, as on a terminal."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except (ValueError, OSError):
                pass


def _original_stderr(redirection: Redirection) -> int:
    """The fd 2 from before any capture: once captured, the saved copy (a restarted helper's
    case), or the one that the redirection being replaced saved (a path switch); else fd 2."""
    for holder in (redirection, _active):
        saved = holder._saved_fds if holder is not None else None
        if saved is not None and saved[1] >= 0:
            return saved[1]
    return 2


def _fill_closed_standard_fds() -> tuple:
    """Put /dev/null on those of fds 0-2 that are closed and return their numbers: else the
    log, the channels or a helper's status pipe would take them, and the dup2 onto fds 1
    and 2 would land on top of our own descriptors."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)
    return tuple(closed)


def _close_again(fds: tuple) -> None:
    """Close those of fds that still hold the /dev/null of _fill_closed_standard_fds."""
    null = os.stat(os.devnull).st_rdev
    for fd in fds:
        try:
            if os.fstat(fd).st_rdev == null:
                os.close(fd)
        except OSError:
            pass


def redirect(
    path: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    node: str | None = None,
    fmt: str | None = None,
    lock: str | None = None,
    idle_flush: float | None = None,
    snapshot_interval: float | None = None,
    buffer_bytes: int | None = None,
    mode: int | None = None,
    max_bytes: int | None = None,
    surface: str | None = None,
) -> Redirection | None:
    """Send everything this process and its children write to fds 1 and 2 into `path`.

    path defaults to $SKYRL_LOG_FILE; with neither set, or with
    SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes, nothing changes and None is
    returned.  Records carry `name` (default: the Ray actor, else the process
    name), the writer's pid and `node` (default: Ray's node IP in Ray, else the hostname); see
    docs/format.md.  fmt="raw" writes payloads only (default "prefixed").  lock="auto" (the
    default) locks each append batch on network filesystems, "always"/"never" force it.
    A partial line is flushed after `idle_flush` seconds (default 1.0); a redrawn line
    (carriage return) is recorded at most every `snapshot_interval` seconds (default 5.0);
    up to `buffer_bytes` (default 4 MiB) wait in memory while the log cannot be written.
    An argument left out (or None) takes its default: skyrl_fdlog/_settings.py holds them.
    A new log file gets `mode` (default $SKYRL_FDLOG_MODE, else 0o640), new
    directories the same plus search permission, both masked by the umask.
    Once the file at the path holds `max_bytes` (default $SKYRL_FDLOG_MAX_BYTES, else no
    cap), records are dropped and counted, with one note saying so; a file made anew by
    logrotate starts again.
    `surface` (default $SKYRL_FDLOG_SURFACE, else "error") says which lines are also copied
    to the original stderr, attributed and rate limited: "error" the lines of level error
    or graver (a Python traceback whole; skyrl_fdlog/levels.json), "off" none.  In Ray the
    original stderr reaches the driver's terminal, from every node.

    A second call with the same path returns the active Redirection while fds 1
    and 2 still hold its channels; when something else was put there (a dup2
    over them), it captures them again.  Another path switches to it.  Raises FdlogError
    (nothing redirected) when the log cannot be opened safely or the helper cannot start, and
    ValueError naming an argument or SKYRL_FDLOG_* variable whose value is not allowed.
    """
    settings = _Settings(
        fmt=FMT.value(fmt),
        lock=LOCK.value(lock),
        idle_flush=IDLE_FLUSH.value(idle_flush),
        snapshot_interval=SNAPSHOT_INTERVAL.value(snapshot_interval),
        buffer_bytes=BUFFER_BYTES.value(buffer_bytes),
        mode=MODE.value(mode),
        max_bytes=MAX_BYTES.value(max_bytes),
        surface=SURFACE.value(surface),
    )
    if dump_to_stdout():
        return None
    if path is None:
        path = os.environ.get(LOG_FILE_VARIABLE) or None
        if path is None:
            return None
    target = Path(os.path.abspath(os.fspath(path)))
    global _active, _setting_up
    with _state_lock:
        previous = _active
        if previous is not None and previous.path == target and _still_on_fds(previous):
            return previous
        redirection = Redirection(
            path=target,
            name=name or _default_name(),
            node=node or default_node(),
            fmt=settings.fmt,
            locked=False,
            helper_pid=0,
            _surface=settings.surface,
        )
        # A path switch keeps the originals of the first capture; restore() puts them back.
        was_closed = previous._was_closed if previous is not None else _fill_closed_standard_fds()
        _setting_up = redirection  # a fork from now on closes what it holds in the child
        try:
            _connect(redirection, settings)
            _capture(redirection, previous)
        except BaseException:
            _setting_up = None
            _abandon(redirection)
            if previous is not None:
                previous._restored = False  # still in force
            if previous is None:
                _close_again(was_closed)
            raise
        redirection._was_closed = was_closed
        with fd_lock:  # a fork sees each redirection in one of the lists, never in none
            _active, _setting_up = redirection, None
            if previous is not None:
                _linger(previous)
        if previous is not None:
            _wait_for(previous)
        return redirection


@dataclass(frozen=True)
class _Settings:
    """redirect()'s settings, each its argument, its variable or its default."""

    fmt: str
    lock: str
    idle_flush: float
    snapshot_interval: float
    buffer_bytes: int
    mode: int
    max_bytes: int
    surface: str


def _connect(redirection: Redirection, settings: _Settings) -> None:
    """Open the log, the channels and pipes and start the helper on them (none as PID 1)."""
    with fd_lock:  # each descriptor is recorded on the redirection as it is made
        redirection._log_fd = open_log(redirection.path, mode=settings.mode)
        log_fd = redirection._log_fd
        redirection.locked = settings.lock == "always" or (
            settings.lock == "auto" and lib.fdl_needs_lock(log_fd) == 1
        )
        make_settings(
            redirection,
            settings.idle_flush,
            settings.snapshot_interval,
            settings.buffer_bytes,
            settings.max_bytes,
        )
        if os.getpid() == 1:
            redirection._direct = True
            return
        keep_helper_stderr(redirection)
        for _ in ("out", "err"):
            read_fd, write_fd = ffi.new("int *"), ffi.new("int *")
            ensure(
                lib.fdl_channel_open(read_fd, write_fd),
                "cannot create a capture channel",
                advice="raise the open-file limit (ulimit -n)",
            )
            redirection._channel_reads += (read_fd[0],)
            redirection._channel_writes += (write_fd[0],)
        redirection._python_pipes = PythonPipes.open_if_useful()
        start_helper(redirection, _original_stderr(redirection))


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _still_on_fds(redirection: Redirection) -> bool:
    """Whether fds 1 and 2 still hold what redirection put there: some frameworks (and
    SkyRL's own tests) dup2 other files over them, and a redirection they replaced must not
    be handed out as if it were in force."""
    return redirection._on_fds == (_identity(1), _identity(2))


def _abandon(redirection: Redirection) -> None:
    """Undo a redirection that never became active: close all it holds (a started helper
    sees EOF and exits)."""
    with fd_lock:
        if redirection._python_pipes is not None:
            redirection._python_pipes.abandon()
        close_quietly(
            redirection._log_fd,
            redirection._status_fd,
            redirection._debug_fd,
            *redirection._channel_reads,
            *redirection._channel_writes,
        )
        redirection._log_fd = redirection._status_fd = redirection._debug_fd = -1
        redirection._channel_reads = redirection._channel_writes = ()


def _capture(redirection: Redirection, previous: Redirection | None) -> None:
    """Put the channels (as PID 1: the log) on fds 1 and 2 and Python's streams on the pipes."""
    _flush_python_streams()
    if previous is not None:
        _mark_restored(previous)
    # Recorded before the call, so a fork during it closes the copies in the child.
    saved = redirection._saved_fds = ffi.new("int[2]", [-1, -1])
    out_fd, err_fd = redirection._channel_writes or (redirection._log_fd, redirection._log_fd)
    rc = lib.fdl_capture(out_fd, err_fd, saved)
    with fd_lock:
        if rc == 0 and redirection._channel_writes:
            redirection._own_writes = tuple(
                fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in redirection._channel_writes
            )
        close_quietly(*redirection._channel_writes)
        redirection._channel_writes = ()
        ensure(rc, "cannot put the capture channels on fds 1 and 2")
        if previous is not None:  # what was saved now are the previous redirection's channels
            close_quietly(*saved)
            redirection._saved_fds, previous._saved_fds = previous._saved_fds, None
        redirection._on_fds = (_identity(1), _identity(2))
    if redirection._own_writes:
        redirection._nonblock_guard = _nonblock_guard.start(redirection._own_writes)
    _line_buffer_python_streams()
    if previous is not None:
        _retire(previous)  # its pipes' numbers become stand-ins of fds 1 and 2 ...
    if redirection._own_writes and redirection._surface != "off":
        lib.fdl_mark_fatal_signals(redirection._own_writes[1])  # last words (crash.c)
        _last_words.watch_actor_init()  # and for a Ray actor's __init__ that raises
    with fd_lock:  # stand-ins change hands: a fork must not see them in between
        if redirection._python_pipes is not None:
            redirection._python_pipes.install()  # ... which the new pipes take over
        follow_fds_1_and_2()
    if redirection._direct:
        note(
            redirection,
            "this process is PID 1 of its pid namespace: a log helper would be "
            "killed together with it, so fds 1 and 2 of it and its children "
            "append straight to this file, as a plain >> redirection does: no "
            "records, lines of different processes kept apart only per "
            "write(2), no reopening after logrotate (docs/reliability.md)",
        )
        return
    redirection._watchdog = threading.Thread(
        target=watch, args=(redirection, _original_stderr), name="skyrl-fdlog-watchdog", daemon=True
    )
    redirection._watchdog.start()


def flush(timeout: float = 5.0) -> bool:
    """Return once everything written into this process's redirection before the call, by
    any of its processes (the Python streams, fds 1 and 2, children, C code), is in the log
    file or counted as dropped there; an unfinished line is written as it stands, as a `+`
    fragment.  False when that did not happen within `timeout` seconds (a hung or failing
    log).  True at once when nothing is redirected, or without a helper (PID 1, or the
    fallback: this process then writes to the file itself).

    How: a request travels on each socket channel, behind every byte written before it,
    carrying a pipe on which the helper answers once it has read and written all of it.
    """
    redirection = _active
    if redirection is None:
        return True
    _flush_python_streams()
    if redirection._direct or not redirection._own_writes:
        return True
    deadline = time.monotonic() + timeout
    answer_read, answer_write = os.pipe2(os.O_CLOEXEC)
    try:
        for fd in redirection._own_writes:
            if not _send_flush_request(fd, answer_write, deadline):
                return False
        os.close(answer_write)
        answer_write = -1
        answers = b""
        while len(answers) < len(redirection._own_writes):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([answer_read], [], [], remaining)[0]:
                return False
            chunk = os.read(answer_read, 8)
            if not chunk:  # the helper closed the pipe without an answer
                return False
            answers += chunk
        return True
    finally:
        close_quietly(answer_read, answer_write)


def _send_flush_request(channel_write: int, answer_write: int, deadline: float) -> bool:
    """One byte carrying answer_write, queued behind what was written before.  MSG_DONTWAIT,
    never O_NONBLOCK: the flag would be the channel's, shared by every writer."""
    channel = socket.socket(fileno=channel_write)
    try:
        while True:
            try:
                socket.send_fds(channel, [b"\0"], [answer_write], socket.MSG_DONTWAIT)
                return True
            except BlockingIOError:  # the channel is full: the helper is behind
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.001)
            except OSError:  # the channel is gone (every reader closed)
                return False
    finally:
        channel.detach()


def restore(timeout: float = RESTORE_WAIT_SECONDS) -> None:
    """Put the original fds 1 and 2 back and let the helper write what it holds.

    Waits up to `timeout` seconds for the helper to finish; children that
    still hold the channel keep being logged after that (a helper that dies
    meanwhile is still replaced).  Does nothing when nothing is redirected.
    """
    global _active
    with _state_lock:
        redirection = _active
        if redirection is None:
            return
        _flush_python_streams()
        _mark_restored(redirection)
        lib.fdl_release(redirection._saved_fds)
        _close_again(redirection._was_closed)
        with fd_lock:
            _active = None
            _linger(redirection)
        _retire(redirection)
        _wait_for(redirection, timeout)


def _mark_restored(redirection: Redirection) -> None:
    """Before fds 1 and 2 change hands: from now on a fallback leaves them alone."""
    with redirection._lock:
        redirection._restored = True


def _retire(redirection: Redirection) -> None:
    """The redirection no longer owns fds 1 and 2: its pipes' numbers follow them, and its
    own copies of the channels' writing ends go (a helper sees EOF once the last writer
    has closed)."""
    _nonblock_guard.stop(redirection._nonblock_guard)
    with fd_lock:
        lib.fdl_mark_fatal_signals(-1)  # its copy of the err channel goes too
        close_quietly(*redirection._own_writes)
        redirection._own_writes, redirection._nonblock_guard = (), None
    if redirection._python_pipes is not None:
        redirection._python_pipes.flush()
    with fd_lock:  # stand-ins change hands: a fork must not see them in between
        if redirection._python_pipes is not None:
            redirection._python_pipes.uninstall()
        follow_fds_1_and_2()


def _linger(redirection: Redirection) -> None:
    """Called with fd_lock held when the redirection stops being active: what it holds
    lingers with its watchdog until every writer is gone (as PID 1 there is only the log)."""
    if redirection._watchdog is None:
        close_quietly(redirection._log_fd)
        redirection._log_fd = -1
    elif redirection._log_fd >= 0:  # else its watchdog has finished and closed it all
        lingering[id(redirection)] = redirection


def _wait_for(redirection: Redirection, timeout: float = RESTORE_WAIT_SECONDS) -> None:
    if redirection._watchdog is not None:
        redirection._watchdog.join(timeout)


def _forget(redirection: Redirection) -> None:
    """In a forked child: a redirection of the parent's. The child keeps writing into the
    channel (attributed to its own pid) but owns neither the helper, the log nor the saved
    fds, and must not write into the pipes."""
    pipes = redirection._python_pipes
    if pipes is not None:
        if pipes.replaced:
            pipes.retire()
            pipes.close_reads()
        else:
            pipes.abandon()
    close_quietly(
        redirection._log_fd,
        redirection._status_fd,
        redirection._debug_fd,
        *redirection._channel_reads,
        *redirection._channel_writes,
        *redirection._own_writes,
        *(redirection._saved_fds or ()),
    )


def _before_fork() -> None:
    fd_lock.acquire()


def _after_fork_in_parent() -> None:
    fd_lock.release()


def _after_fork_in_child() -> None:
    """A fresh _state_lock (one held by another thread of the parent would never be released
    here), fd_lock released (this thread took it before the fork), and none of the parent's
    redirections."""
    global _active, _setting_up, _state_lock
    _state_lock = threading.RLock()
    fd_lock.release()
    for redirection in (_active, _setting_up, *lingering.values()):
        if redirection is not None:
            _forget(redirection)
    _active = _setting_up = None
    lingering.clear()
    lib.fdl_mark_fatal_signals(-1)  # the parent's copy of its err channel
    follow_fds_1_and_2()  # stand-ins of a redirection caught half made or half undone


def active() -> Redirection | None:
    """The redirection in force in this process, if any."""
    return _active


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
