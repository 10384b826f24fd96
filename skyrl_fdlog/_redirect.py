"""redirect() and restore(): fds 1 and 2 of this process into the infra log.

The pieces, in the order redirect() puts them together:
  1. the log is opened safely (_paths.open_log) before anything changes, so
     an FdlogError leaves the process as it was;
  2. two capture channels (socket pairs: one for out, one for err), two pipes
     for this process's own Python output (_python_pipes.py), and a helper
     process (csrc/helper.c) that reads them all and writes records;
  3. the channels' writing ends go onto fds 1 and 2, inherited by every
     child, and sys.stdout and sys.stderr onto the pipes.
A watchdog thread waits on the helper's status pipe.  This process keeps
copies of the channels' reading ends, so when the helper dies (even by
SIGKILL) nothing written in the meantime is lost and no writer sees
BrokenPipeError: the watchdog starts a new helper on the same channels, which
writes a record saying so.  If no helper can be started it falls back to
writing straight into the log file.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from skyrl_fdlog._errors import FdlogError
from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._paths import LOG_FILE_VARIABLE, dump_to_stdout, open_log
from skyrl_fdlog._python_pipes import PythonPipes, flush_quietly, follow_fds_1_and_2
from skyrl_fdlog import _nonblock_guard

FORMATS = ("prefixed", "raw")
LOCK_MODES = ("auto", "always", "never")
HELPER_VARIABLE = "SKYRL_FDLOG_HELPER"
RESTORE_WAIT_SECONDS = 5.0
# After a wakeup the helper lets output gather this long before reading it (benchmarks/ tune it).
GATHER_US = 300
GATHER_VARIABLE = "SKYRL_FDLOG_GATHER_US"


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
    _channel_reads: tuple = field(repr=False, default=())
    _channel_writes: tuple = field(repr=False, default=())
    _python_pipes: PythonPipes | None = field(repr=False, default=None)
    _saved_fds: object = field(repr=False, default=None)
    _settings: object = field(repr=False, default=None)
    _keepalive: tuple = field(repr=False, default=())
    _status_fd: int = field(repr=False, default=-1)
    _stopping: bool = field(repr=False, default=False)
    _watchdog: threading.Thread | None = field(repr=False, default=None)


_active: Redirection | None = None
_state_lock = threading.RLock()


def helper_executable() -> str:
    """The helper program: $SKYRL_FDLOG_HELPER, else the one installed beside this module."""
    return os.environ.get(HELPER_VARIABLE) or str(Path(__file__).with_name("skyrl-fdlog-helper"))


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
                return context.current_actor._ray_actor_creation_function_descriptor.class_name
        except Exception:  # not a worker, or a Ray without these: fall back
            pass
    try:
        return Path(f"/proc/{os.getpid()}/comm").read_text().strip() or "python"
    except OSError:
        return Path(sys.argv[0]).name or "python"


def _check_choice(argument: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}")


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


def _start_helper(redirection: Redirection, restarted_after: int = 0) -> None:
    redirection._settings.restarted_after = restarted_after
    status_fd = ffi.new("int *")
    helper_pid = ffi.new("int *")
    out_read, err_read = redirection._channel_reads
    pipes = redirection._python_pipes
    pipe_out_read, pipe_err_read = pipes.reads if pipes is not None else (-1, -1)
    rc = lib.fdl_helper_start(redirection._settings, redirection._log_fd, out_read, err_read,
                              pipe_out_read, pipe_err_read, status_fd, helper_pid)
    if rc < 0:
        helper = helper_executable()
        raise FdlogError(-rc, f"cannot start the log helper {helper}: {os.strerror(-rc)}; "
                              f"reinstall skyrl_fdlog, or point {HELPER_VARIABLE} at a working "
                              f"skyrl-fdlog-helper", helper)
    redirection._status_fd = status_fd[0]
    redirection.helper_pid = helper_pid[0]


def _gather_us() -> int:
    text = os.environ.get(GATHER_VARIABLE, str(GATHER_US))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1_000_000:
        raise ValueError(f"{GATHER_VARIABLE} must be a whole number of microseconds from 0 to "
                         f"1000000, got {text!r}; unset it for the default ({GATHER_US})")
    return value


def _make_settings(redirection: Redirection, idle_flush: float, snapshot_interval: float,
                   buffer_bytes: int):
    strings = tuple(ffi.new("char[]", os.fsencode(text)) for text in
                    (helper_executable(), str(redirection.path), redirection.name, redirection.node))
    settings = ffi.new("struct fdl_helper_settings *")
    settings.helper_path, settings.log_path, settings.name, settings.node = strings
    settings.raw = redirection.fmt == "raw"
    settings.lock = redirection.locked
    settings.idle_ms = max(1, int(idle_flush * 1000))
    settings.snapshot_ms = max(0, int(snapshot_interval * 1000))
    settings.buffer_bytes = buffer_bytes
    settings.gather_us = _gather_us()
    settings.owner_pid = os.getpid()
    redirection._settings = settings
    redirection._keepalive = strings  # cffi frees the strings with their last reference


def _read_exit_reason(status_fd: int) -> str:
    """Block until the helper exits; return what it said on the way out ('' if killed)."""
    said = b""
    while True:
        try:
            chunk = os.read(status_fd, 256)
        except InterruptedError:
            continue
        if not chunk:
            break
        said += chunk
    for line in said.decode(errors="replace").splitlines():
        if line.startswith("EXIT "):
            return line[5:]
    return ""


def _drain_into_log(redirection: Redirection) -> None:
    """Append what the channels and pipes still hold, as it stands (no helper to read it)."""
    pipes = redirection._python_pipes
    for fd in (*redirection._channel_reads, *(pipes.reads if pipes is not None else ())):
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            os.write(redirection._log_fd, data)


def _fall_back_to_direct_writes(redirection: Redirection, reason: str) -> None:
    """No helper can run: append straight to the log (whole lines not guaranteed)."""
    _drain_into_log(redirection)
    for target in (1, 2):
        os.dup2(redirection._log_fd, target)
    if redirection._python_pipes is not None:
        redirection._python_pipes.send_to(redirection._log_fd)
    follow_fds_1_and_2()
    os.write(redirection._log_fd,
             f"skyrl_fdlog: no log helper could be started ({reason}); pid {os.getpid()} now "
             f"writes to this file directly, without records\n".encode())


def _watch_helper(redirection: Redirection) -> None:
    while True:
        status_fd = redirection._status_fd
        reason = _read_exit_reason(status_fd)
        os.close(status_fd)
        with _state_lock:
            if redirection._stopping or reason == "eof":
                return  # restore() in progress, or every writer has closed
            dead = redirection.helper_pid
            try:
                _start_helper(redirection, restarted_after=dead)
            except FdlogError as error:
                _fall_back_to_direct_writes(redirection, error.strerror or str(error))
                return


def redirect(path: str | os.PathLike | None = None, *, name: str | None = None,
             node: str | None = None, fmt: str = "prefixed", lock: str = "auto",
             idle_flush: float = 1.0, snapshot_interval: float = 5.0,
             buffer_bytes: int = 4 << 20) -> Redirection | None:
    """Send everything this process and its children write to fds 1 and 2 into `path`.

    path defaults to $SKYRL_LOG_FILE; with neither set, or with
    SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes, nothing changes and None is
    returned.  Records carry `name` (default: the Ray actor, else the process
    name), the writer's pid and `node` (default: the hostname); see
    docs/format.md.  fmt="raw" writes payloads only.  lock="auto" locks each
    append batch on network filesystems, "always"/"never" force it.
    A partial line is flushed after `idle_flush` seconds; a redrawn line
    (carriage return) is recorded at most every `snapshot_interval` seconds;
    up to `buffer_bytes` wait in memory while the log cannot be written.

    A second call with the same path returns the active Redirection; another
    path switches to it.  Raises FdlogError (nothing redirected) when the log
    cannot be opened safely or the helper cannot start.
    """
    _check_choice("fmt", fmt, FORMATS)
    _check_choice("lock", lock, LOCK_MODES)
    if dump_to_stdout():
        return None
    if path is None:
        path = os.environ.get(LOG_FILE_VARIABLE) or None
        if path is None:
            return None
    target = Path(os.path.abspath(os.fspath(path)))
    global _active
    with _state_lock:
        if _active is not None and _active.path == target:
            return _active
        log_fd = open_log(target)
        try:
            locked = lock == "always" or (lock == "auto" and lib.fdl_needs_lock(log_fd) == 1)
            redirection = Redirection(path=target, name=name or _default_name(),
                                      node=node or socket.gethostname(), fmt=fmt, locked=locked,
                                      helper_pid=0, _log_fd=log_fd)
            _make_settings(redirection, idle_flush, snapshot_interval, buffer_bytes)
            _connect(redirection)
        except BaseException:
            os.close(log_fd)
            raise
        if _active is not None:
            _restore_locked()
        _capture(redirection)
        _active = redirection
        return redirection


def _connect(redirection: Redirection) -> None:
    """Open the channels and pipes and start the helper on them; on failure leave nothing
    open."""
    reads, writes = [], []
    pipes = None
    try:
        for _ in ("out", "err"):
            read_fd, write_fd = ffi.new("int *"), ffi.new("int *")
            rc = lib.fdl_channel_open(read_fd, write_fd)
            if rc < 0:
                raise FdlogError(-rc, f"cannot create a capture channel: {os.strerror(-rc)}; "
                                      f"raise the open-file limit (ulimit -n)")
            reads.append(read_fd[0])
            writes.append(write_fd[0])
        redirection._channel_reads = tuple(reads)
        pipes = redirection._python_pipes = PythonPipes.open_if_useful()
        _start_helper(redirection)
    except BaseException:
        for fd in reads + writes:
            os.close(fd)
        if pipes is not None:
            pipes.abandon()
        raise
    redirection._channel_writes = tuple(writes)


def _capture(redirection: Redirection) -> None:
    _flush_python_streams()
    saved = ffi.new("int[2]")
    out_write, err_write = redirection._channel_writes
    rc = lib.fdl_capture(out_write, err_write, saved)
    redirection._nonblock_guard = _nonblock_guard.start((out_write, err_write)) if rc == 0 else None
    os.close(out_write)
    os.close(err_write)
    if rc < 0:
        raise FdlogError(-rc, f"cannot put the capture channels on fds 1 and 2: {os.strerror(-rc)}")
    redirection._saved_fds = saved
    _line_buffer_python_streams()
    if redirection._python_pipes is not None:
        redirection._python_pipes.install()
    follow_fds_1_and_2()
    redirection._watchdog = threading.Thread(target=_watch_helper, args=(redirection,),
                                             name="skyrl-fdlog-watchdog", daemon=True)
    redirection._watchdog.start()


def restore(timeout: float = RESTORE_WAIT_SECONDS) -> None:
    """Put the original fds 1 and 2 back and let the helper write what it holds.

    Waits up to `timeout` seconds for the helper to finish; children that
    still hold the channel keep being logged after that.  Does nothing when
    nothing is redirected.
    """
    with _state_lock:
        _restore_locked(timeout)


def _restore_locked(timeout: float = RESTORE_WAIT_SECONDS) -> None:
    global _active
    redirection = _active
    if redirection is None:
        return
    _active = None
    redirection._stopping = True
    _nonblock_guard.stop(redirection._nonblock_guard)
    _flush_python_streams()
    lib.fdl_release(redirection._saved_fds)
    if redirection._python_pipes is not None:
        redirection._python_pipes.uninstall()
    follow_fds_1_and_2()
    # The helper exits once every writer is gone; our copies of the reading
    # ends only matter for restarting it, which no longer happens.
    _close_quietly(*redirection._channel_reads)
    _state_lock.release()
    try:
        redirection._watchdog.join(timeout)
    finally:
        _state_lock.acquire()
    _close_quietly(redirection._log_fd)


def _close_quietly(*fds: int) -> None:
    """Close fds we own; a failing close (a network filesystem whose server went away
    reports ENOTCONN) must not turn restore() into a crash: the helper holds its own copies."""
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _forget_in_child() -> None:
    """A forked child keeps writing into the channel (attributed to its own pid) but
    owns neither the helper nor the saved fds, and must not write into the pipes."""
    global _active
    redirection = _active
    if redirection is None:
        return
    _active = None
    if redirection._python_pipes is not None:
        redirection._python_pipes.retire()
        redirection._python_pipes.close_reads()
    _close_quietly(redirection._log_fd, redirection._status_fd, *redirection._channel_reads,
                   *(redirection._saved_fds or ()))


def active() -> Redirection | None:
    """The redirection in force in this process, if any."""
    return _active


os.register_at_fork(after_in_child=_forget_in_child)
