"""redirect() and restore(): fds 1 and 2 of this process into the infra log.

The pieces, in the order redirect() puts them together:
  1. the log is opened safely (_paths.open_log) before anything changes, so
     an FdlogError leaves the process as it was;
  2. two capture channels (socket pairs: one for out, one for err), two pipes
     for this process's own Python output (_python_pipes.py), and a helper
     process (csrc/helper/helper.c) that reads them all and writes records;
  3. the channels' writing ends go onto fds 1 and 2, inherited by every
     child, and sys.stdout and sys.stderr onto the pipes.
A watchdog thread waits on the helper's status pipe.  This process keeps
copies of the channels' reading ends, so when the helper dies (even by
SIGKILL) nothing written in the meantime is lost and no writer sees
BrokenPipeError or SIGPIPE: the watchdog starts a new helper on the same
channels, at once the first time, after a wait that doubles while helpers keep
dying young, and says why in a note.  It keeps doing so after restore() until
every writer (children that outlive restore() included) has closed the
channels.  If no helper can be started it falls back to writing straight into
the log file, and keeps copying what older children still write into the
channels there.

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
import resource
import select
import socket
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from skyrl_fdlog._errors import FdlogError
from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._node import default_node
from skyrl_fdlog._paths import LOG_FILE_VARIABLE, dump_to_stdout, log_mode, open_log
from skyrl_fdlog._python_pipes import PythonPipes, flush_quietly, follow_fds_1_and_2
from skyrl_fdlog import _last_words, _nonblock_guard

FORMATS = ("prefixed", "raw")
LOCK_MODES = ("auto", "always", "never")
HELPER_VARIABLE = "SKYRL_FDLOG_HELPER"
RESTORE_WAIT_SECONDS = 5.0
# After a wakeup the helper lets output gather this long before reading it (benchmarks/ tune it).
GATHER_US = 300
GATHER_VARIABLE = "SKYRL_FDLOG_GATHER_US"
MAX_BYTES_VARIABLE = "SKYRL_FDLOG_MAX_BYTES"
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Which lines the helper also copies to the original stderr (the terminal, through Ray):
# "error" (records of level error or graver, skyrl_fdlog/levels.json) or "off".
SURFACE_VARIABLE = "SKYRL_FDLOG_SURFACE"
SURFACE_CHOICES = ("error", "off")
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
    _was_closed: tuple = field(repr=False, default=())  # of fds 0-2, before capture began
    _settings: object = field(repr=False, default=None)
    _keepalive: tuple = field(repr=False, default=())
    _status_fd: int = field(repr=False, default=-1)
    _direct: bool = field(repr=False, default=False)  # fds 1 and 2 append to the log itself (PID 1, fallback)
    _on_fds: tuple = field(repr=False, default=())  # (st_dev, st_ino) of fds 1 and 2 once captured
    # Copies of the channels' writing ends while in force, whatever is later put on fds 1 and
    # 2: the O_NONBLOCK guard watches them, flush() sends its requests through them.
    _own_writes: tuple = field(repr=False, default=())
    _nonblock_guard: object = field(repr=False, default=None)
    _restored: bool = field(repr=False, default=False)
    _surface: str = field(repr=False, default="error")
    _lock: threading.Lock = field(repr=False, default_factory=threading.Lock)
    _started_at: float = field(repr=False, default=0.0)
    _restarts: int = field(repr=False, default=0)
    _watchdog: threading.Thread | None = field(repr=False, default=None)


_active: Redirection | None = None
# Being set up: holds descriptors, not yet _active.
_setting_up: Redirection | None = None
# Restored (or switched away from) while a helper still serves writers that outlive it; the
# watchdog keeps the reading ends and the log until they are gone.  By id(): not hashable.
_lingering: dict[int, Redirection] = {}
# Serialises redirect() and restore(), waits included.  The watchdog never takes it.
_state_lock = threading.RLock()
# Held while descriptors are made and recorded, never while waiting on a helper; a fork
# waits for it (see the end of this module).
_fd_lock = threading.Lock()


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
    redirection._settings.surface = redirection._surface != "off"
    redirection._settings.surface_fd = _original_stderr(redirection)
    rc = lib.fdl_helper_start(redirection._settings, redirection._log_fd, out_read, err_read,
                              pipe_out_read, pipe_err_read, status_fd, helper_pid)
    if rc < 0:
        helper = helper_executable()
        raise FdlogError(-rc, f"cannot start the log helper {helper}: {os.strerror(-rc)}; "
                              f"reinstall skyrl_fdlog, or point {HELPER_VARIABLE} at a working "
                              f"skyrl-fdlog-helper", helper)
    redirection._status_fd = status_fd[0]
    redirection.helper_pid = helper_pid[0]
    redirection._started_at = time.monotonic()


def _original_stderr(redirection: Redirection) -> int:
    """The fd 2 from before any capture: once captured, the saved copy (a restarted helper's
    case), or the one that the redirection being replaced saved (a path switch); else fd 2."""
    for holder in (redirection, _active):
        saved = holder._saved_fds if holder is not None else None
        if saved is not None and saved[1] >= 0:
            return saved[1]
    return 2


def _surface_choice(surface: str | None) -> str:
    if surface is not None:
        _check_choice("surface", surface, SURFACE_CHOICES)
        return surface
    text = os.environ.get(SURFACE_VARIABLE) or "error"
    if text not in SURFACE_CHOICES:
        raise ValueError(f"{SURFACE_VARIABLE} must be one of {', '.join(SURFACE_CHOICES)}, got "
                         f"{text!r}; unset it for the default (error)")
    return text


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


def _max_bytes(max_bytes: int | None) -> int:
    """The cap on the log's size: max_bytes, else $SKYRL_FDLOG_MAX_BYTES (bytes, or with a
    K, M, G or T suffix: 20G), else 0 (no cap)."""
    if max_bytes is None:
        text = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
        if not text:
            return 0
        number, unit = text.rstrip("KMGTkmgt"), text[len(text.rstrip("KMGTkmgt")):].upper()
        if not number.isdigit() or unit not in _SIZE_UNITS:
            raise ValueError(f"{MAX_BYTES_VARIABLE} must be a number of bytes, optionally with a "
                             f"K, M, G or T suffix (20G), got {text!r}; unset it for no cap")
        return int(number) * _SIZE_UNITS[unit]
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive number of bytes, or None for no cap "
                         f"(or {MAX_BYTES_VARIABLE}), got {max_bytes!r}")
    return max_bytes


def _make_settings(redirection: Redirection, idle_flush: float, snapshot_interval: float,
                   buffer_bytes: int, max_bytes: int):
    strings = tuple(ffi.new("char[]", os.fsencode(text)) for text in
                    (helper_executable(), str(redirection.path), redirection.name, redirection.node))
    settings = ffi.new("struct fdl_helper_settings *")
    settings.helper_path, settings.log_path, settings.name, settings.node = strings
    settings.raw = redirection.fmt == "raw"
    settings.lock = redirection.locked
    settings.idle_ms = max(1, int(idle_flush * 1000))
    settings.snapshot_ms = max(0, int(snapshot_interval * 1000))
    settings.buffer_bytes = buffer_bytes
    settings.max_bytes = max_bytes
    settings.gather_us = _gather_us()
    settings.owner_pid = os.getpid()
    redirection._settings = settings
    redirection._keepalive = strings  # cffi frees the strings with their last reference


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
    return [line for line in said.decode(errors="replace").splitlines()
            if not line.startswith("READY ")]


def _note(redirection: Redirection, text: str) -> None:
    """An 'fdlog' record from this process, written while no helper runs.  When the log
    refuses it (full, at the file size limit) it goes to the original stderr instead."""
    rc = lib.fdl_write_note(redirection._log_fd, redirection._settings, os.getpid(),
                            text.encode(errors="replace"))
    if rc == 0:
        return
    with redirection._lock:  # restore() changes the saved fds only after taking it
        saved = redirection._saved_fds
        stderr = 2 if redirection._restored or saved is None else saved[1]
        try:
            _write_all(stderr, f"skyrl_fdlog: {text} (this note could not be written to "
                               f"{redirection.path}: {os.strerror(-rc)})\n".encode(errors="replace"))
        except OSError:
            pass  # no stderr either: nowhere left to say it


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
        why += (f"; the log ({size} bytes) has reached the file size limit (ulimit -f) of "
                f"{limit} bytes that the helper inherits from this process")
    return why


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
            _write_all(redirection._log_fd, data)


def _fall_back_to_direct_writes(redirection: Redirection, reason: str) -> None:
    """No helper can run: this process appends straight to the log (whole lines not
    guaranteed, no records), and what older children write into the channels is copied there
    line by line until they are gone, so none of them waits forever."""
    redirection._direct = True  # flush() has no helper to ask
    with redirection._lock:
        if not redirection._restored:  # after restore() fds 1 and 2 are no longer ours
            with _fd_lock:
                for target in (1, 2):
                    os.dup2(redirection._log_fd, target)
                if redirection._python_pipes is not None:
                    redirection._python_pipes.send_to(redirection._log_fd)
                follow_fds_1_and_2()
            _drain_pipes_into_log(redirection)
        _note(redirection, f"no log helper could be started ({reason}); pid {os.getpid()} "
                           f"now writes to this file directly, without records, and copies "
                           f"what its children still write into the channels here line by line")
    _copy_channels_until_eof(redirection)


def _copy_channels_until_eof(redirection: Redirection) -> None:
    """The fallback's reader: whole lines per writer (the channel tells each chunk's pid)."""
    sockets = {fd: socket.socket(fileno=fd) for fd in redirection._channel_reads}
    poller = select.poll()
    for fd in sockets:
        poller.register(fd, select.POLLIN)
    pending: dict[tuple, bytes] = {}  # (channel, pid) -> unfinished line
    credentials = socket.CMSG_SPACE(struct.calcsize("3i"))
    lost = [0, ""]  # bytes the log refused, and why: counted, never a reason to stop reading

    def append(data: bytes) -> None:
        try:
            _write_all(redirection._log_fd, data)
        except OSError as error:
            lost[0] += len(data)
            lost[1] = error.strerror
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
                pid = next((struct.unpack("3i", item)[0] for level, kind, item in ancillary
                            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), 0)
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
    if lost[0]:
        _note(redirection, f"dropped {lost[0]} bytes that children wrote while no log helper "
                           f"ran: the log could not take them ({lost[1]})")


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
    with _fd_lock:
        os.dup2(fresh, redirection._log_fd, inheritable=False)
        os.close(fresh)
    _note(redirection, f"{redirection.path} was moved or removed; reopened it")


def _restart_wait(young: int) -> float:
    """Seconds to wait before a restart after `young` helpers in a row died young."""
    if young <= FREE_RESTARTS:
        return 0.0
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (young - FREE_RESTARTS - 1))


def _watch_helper(redirection: Redirection) -> None:
    """Restart the helper whenever it dies before every writer is gone, during the
    redirection and after it; in the end close what the redirection still holds."""
    young = 0
    try:
        while True:
            words = _read_last_words(redirection._status_fd)
            with _fd_lock:
                os.close(redirection._status_fd)
                redirection._status_fd = -1
            if "EXIT eof" in words:
                return  # every writer has closed the channels
            lived = time.monotonic() - redirection._started_at
            young = young + 1 if lived < YOUNG_SECONDS else 0
            wait = _restart_wait(young)
            redirection._restarts += 1
            _follow_log_path(redirection)
            when = "at once" if wait == 0 else (
                f"after waiting {wait:g} s (the last {young} helpers each lived under "
                f"{YOUNG_SECONDS:g} s; the wait doubles up to {BACKOFF_CAP:g} s)")
            _note(redirection, f"log helper {redirection.helper_pid} ended after {lived:.1f} s: "
                               f"{_why_it_ended(redirection, words)}; restart "
                               f"{redirection._restarts} of this redirection, {when}")
            time.sleep(wait)
            try:
                with _fd_lock:
                    _start_helper(redirection, restarted_after=redirection.helper_pid)
            except FdlogError as error:
                _fall_back_to_direct_writes(redirection, error.strerror or str(error))
                return
    finally:
        with _fd_lock:
            _close_quietly(redirection._log_fd, *redirection._channel_reads)
            redirection._log_fd, redirection._channel_reads = -1, ()
            _lingering.pop(id(redirection), None)


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


def redirect(path: str | os.PathLike | None = None, *, name: str | None = None,
             node: str | None = None, fmt: str = "prefixed", lock: str = "auto",
             idle_flush: float = 1.0, snapshot_interval: float = 5.0,
             buffer_bytes: int = 4 << 20, mode: int | None = None,
             max_bytes: int | None = None, surface: str | None = None) -> Redirection | None:
    """Send everything this process and its children write to fds 1 and 2 into `path`.

    path defaults to $SKYRL_LOG_FILE; with neither set, or with
    SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes, nothing changes and None is
    returned.  Records carry `name` (default: the Ray actor, else the process
    name), the writer's pid and `node` (default: Ray's node IP in Ray, else the hostname); see
    docs/format.md.  fmt="raw" writes payloads only.  lock="auto" locks each
    append batch on network filesystems, "always"/"never" force it.
    A partial line is flushed after `idle_flush` seconds; a redrawn line
    (carriage return) is recorded at most every `snapshot_interval` seconds;
    up to `buffer_bytes` wait in memory while the log cannot be written.
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
    over them), it captures them again.  Another path switches to it.  Raises FdlogError (nothing redirected) when the log
    cannot be opened safely or the helper cannot start.
    """
    _check_choice("fmt", fmt, FORMATS)
    _check_choice("lock", lock, LOCK_MODES)
    surface = _surface_choice(surface)
    mode = log_mode(mode)
    max_bytes = _max_bytes(max_bytes)
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
        redirection = Redirection(path=target, name=name or _default_name(),
                                  node=node or default_node(), fmt=fmt, locked=False,
                                  helper_pid=0, _surface=surface)
        # A path switch keeps the originals of the first capture; restore() puts them back.
        was_closed = previous._was_closed if previous is not None else _fill_closed_standard_fds()
        _setting_up = redirection  # a fork from now on closes what it holds in the child
        try:
            _connect(redirection, lock, idle_flush, snapshot_interval, buffer_bytes, mode,
                     max_bytes)
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
        with _fd_lock:  # a fork sees each redirection in one of the lists, never in none
            _active, _setting_up = redirection, None
            if previous is not None:
                _linger(previous)
        if previous is not None:
            _wait_for(previous)
        return redirection


def _connect(redirection: Redirection, lock: str, idle_flush: float, snapshot_interval: float,
             buffer_bytes: int, mode: int, max_bytes: int) -> None:
    """Open the log, the channels and pipes and start the helper on them (none as PID 1)."""
    with _fd_lock:  # each descriptor is recorded on the redirection as it is made
        redirection._log_fd = open_log(redirection.path, mode=mode)
        log_fd = redirection._log_fd
        redirection.locked = lock == "always" or (lock == "auto" and lib.fdl_needs_lock(log_fd) == 1)
        _make_settings(redirection, idle_flush, snapshot_interval, buffer_bytes, max_bytes)
        if os.getpid() == 1:
            redirection._direct = True
            return
        for _ in ("out", "err"):
            read_fd, write_fd = ffi.new("int *"), ffi.new("int *")
            rc = lib.fdl_channel_open(read_fd, write_fd)
            if rc < 0:
                raise FdlogError(-rc, f"cannot create a capture channel: {os.strerror(-rc)}; "
                                      f"raise the open-file limit (ulimit -n)")
            redirection._channel_reads += (read_fd[0],)
            redirection._channel_writes += (write_fd[0],)
        redirection._python_pipes = PythonPipes.open_if_useful()
        _start_helper(redirection)


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
    with _fd_lock:
        if redirection._python_pipes is not None:
            redirection._python_pipes.abandon()
        _close_quietly(redirection._log_fd, redirection._status_fd, *redirection._channel_reads,
                       *redirection._channel_writes)
        redirection._log_fd, redirection._status_fd = -1, -1
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
    with _fd_lock:
        if rc == 0 and redirection._channel_writes:
            redirection._own_writes = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                                            for fd in redirection._channel_writes)
        _close_quietly(*redirection._channel_writes)
        redirection._channel_writes = ()
        if rc < 0:
            raise FdlogError(-rc, f"cannot put the capture channels on fds 1 and 2: "
                                  f"{os.strerror(-rc)}")
        if previous is not None:  # what was saved now are the previous redirection's channels
            _close_quietly(*saved)
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
    with _fd_lock:  # stand-ins change hands: a fork must not see them in between
        if redirection._python_pipes is not None:
            redirection._python_pipes.install()  # ... which the new pipes take over
        follow_fds_1_and_2()
    if redirection._direct:
        _note(redirection, "this process is PID 1 of its pid namespace: a log helper would be "
                           "killed together with it, so fds 1 and 2 of it and its children "
                           "append straight to this file, as a plain >> redirection does: no "
                           "records, lines of different processes kept apart only per "
                           "write(2), no reopening after logrotate (docs/reliability.md)")
        return
    redirection._watchdog = threading.Thread(target=_watch_helper, args=(redirection,),
                                             name="skyrl-fdlog-watchdog", daemon=True)
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
        _close_quietly(answer_read, answer_write)


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
        with _fd_lock:
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
    with _fd_lock:
        lib.fdl_mark_fatal_signals(-1)  # its copy of the err channel goes too
        _close_quietly(*redirection._own_writes)
        redirection._own_writes, redirection._nonblock_guard = (), None
    if redirection._python_pipes is not None:
        redirection._python_pipes.flush()
    with _fd_lock:  # stand-ins change hands: a fork must not see them in between
        if redirection._python_pipes is not None:
            redirection._python_pipes.uninstall()
        follow_fds_1_and_2()


def _linger(redirection: Redirection) -> None:
    """Called with _fd_lock held when the redirection stops being active: what it holds
    lingers with its watchdog until every writer is gone (as PID 1 there is only the log)."""
    if redirection._watchdog is None:
        _close_quietly(redirection._log_fd)
        redirection._log_fd = -1
    elif redirection._log_fd >= 0:  # else its watchdog has finished and closed it all
        _lingering[id(redirection)] = redirection


def _wait_for(redirection: Redirection, timeout: float = RESTORE_WAIT_SECONDS) -> None:
    if redirection._watchdog is not None:
        redirection._watchdog.join(timeout)


def _close_quietly(*fds: int) -> None:
    """Close fds we own; a failing close (a network filesystem whose server went away
    reports ENOTCONN) must not turn restore() into a crash: the helper holds its own copies."""
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


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
    _close_quietly(redirection._log_fd, redirection._status_fd, *redirection._channel_reads,
                   *redirection._channel_writes, *redirection._own_writes,
                   *(redirection._saved_fds or ()))


def _before_fork() -> None:
    _fd_lock.acquire()


def _after_fork_in_parent() -> None:
    _fd_lock.release()


def _after_fork_in_child() -> None:
    """Fresh locks (a lock held by another thread of the parent would never be released
    here), and none of the parent's redirections."""
    global _active, _setting_up, _state_lock, _fd_lock
    _state_lock, _fd_lock = threading.RLock(), threading.Lock()
    for redirection in (_active, _setting_up, *_lingering.values()):
        if redirection is not None:
            _forget(redirection)
    _active = _setting_up = None
    _lingering.clear()
    lib.fdl_mark_fatal_signals(-1)  # the parent's copy of its err channel
    follow_fds_1_and_2()  # stand-ins of a redirection caught half made or half undone


def active() -> Redirection | None:
    """The redirection in force in this process, if any."""
    return _active


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
