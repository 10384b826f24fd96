"""Ray's own lines on the driver: into the infra log, failures excepted.

Two kinds of lines that Ray prints on a driver's terminal are not the user's:

  1. records of the `ray` loggers of the driver ("Started a local Ray instance", "Token
     authentication is enabled..."), which Ray's handler on the `ray` logger writes to stderr;
  2. lines that Ray forwards from its own processes: the log monitor's batches from
     raylet.err, gcs_server.err, the autoscaler's events and runtime_env logs (their `pid` is
     a process name, not a number), and the raylet's messages on the GCS error channel
     ("N PYTHON worker processes have been started", "A worker died...").

While capture() is in force both go into the infra log, named after where they come from
(ray-driver, raylet, gcs, autoscaler, ...), except failures, which stay on the terminal:
records at ERROR and above ("Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1')"),
error-channel messages other than the worker-pool notice, and forwarded lines that say that
something died, was killed, ran out of memory or failed. Lines of actors and tasks (a numeric
pid) are never touched.

The driver is not redirected, so these records are written here, by the driver: formatted by
the helper's own C (fdl_format_line; docs/format.md), under the driver's pid, which writes
them, and each appended with one write(2) of at most PIPE_BUF on the log's O_APPEND
descriptor, under the helper's lock where the log is on a network filesystem.

Ray has no public hook for (2). The narrowest private one is
ray._private.worker.print_worker_logs(data, print_file, ignore_prefix): the log dispatcher's
handler and the error-channel listener both call it, through the module's global name, for
every batch they print (after Ray's deduplication, so "[repeated 5x across cluster]" lines
come through too), and so does ray.shutdown() for what deduplication held back. It is
replaced while capturing. A Ray without it, or with other parameters, keeps printing (2) as
before, and one note in the infra log says so.
"""

from __future__ import annotations

import fcntl
import inspect
import logging
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._paths import open_log

DRIVER_NAME = "ray-driver"
# Ray's names for its processes in forwarded batches, as records name them.
PROCESS_NAMES = {"gcs_server": "gcs"}
# The records' streams as fdl_format_line numbers them.
STREAMS = {"out": 1, "err": 2, "fdlog": 3}
HOOK_PARAMETERS = ("data", "print_file", "ignore_prefix")

# A forwarded line of Ray's own processes that says something failed stays on the terminal.
FAILURE = re.compile(
    r"\b(died|dead|killed|kill|crash(ed)?|OOM|out of memory|memory pressure|"
    r"[Ee]rror|ERROR|[Ff]ail(ed|ure)?|FATAL|[Ff]atal|Traceback|Check failed|"
    r"Segmentation fault|SIG[A-Z]+|core dumped|[Ee]xception)\b"
)
# Ray's C++ lines carry their severity: "[2026-12-02 04:44:01,123 E 4321 4321] ...".
SEVERE_CXX_LINE = re.compile(r"^\[\S+ \S+ [EF] \d+ \d+\]")
# The raylet's error channel carries failures, and one notice that is not one.
ERROR_CHANNEL_NOTICE = re.compile(r"worker processes have been started")
# Ray colours its deduplication's "[repeated Nx across cluster]"; the record needs no colour.
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class LogWriter:
    """Appends whole records to one infra log from this process."""

    def __init__(self, path: Path, hold: bool = False) -> None:
        self.path = path
        self._fd = open_log(path)
        self._locked = lib.fdl_needs_lock(self._fd) == 1
        self._lock = threading.Lock()  # POSIX locks do not keep this process's threads apart
        # While held: (records, text) of each line, written by commit() or handed back.
        self._held: list[tuple[list[bytes], str]] | None = [] if hold else None

    def write_line(self, name: str, node: str, stream: str, text: str) -> None:
        """One line as records of this process: split into `+` records when it does not fit
        in one, each record one write(2) of at most PIPE_BUF bytes."""
        records = format_line(name, node, stream, text)
        with self._lock:
            if self._held is not None:
                self._held.append((records, text))
                return
            self._append(records)

    def commit(self) -> None:
        """Write the held lines, and every later one at once."""
        with self._lock:
            held, self._held = self._held or [], None
            for records, _ in held:
                self._append(records)

    def held_lines(self) -> list[str]:
        with self._lock:
            return [text for _, text in self._held or []]

    def _append(self, records: list[bytes]) -> None:
        if self._locked:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            for record in records:
                os.write(self._fd, record)
            if self._locked:
                os.fdatasync(self._fd)
        finally:
            if self._locked:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


def format_line(name: str, node: str, stream: str, text: str) -> list[bytes]:
    """The records of one line of this process, stamped now, as the helper formats them: the C
    core formats them (fdl_format_line), so the format is written once. Newlines inside the
    text become spaces, as a record holds one line."""
    payload = text.rstrip("\r\n").replace("\n", " ").encode(errors="replace")
    out = ffi.new("unsigned char[]", 2 * len(payload) + 4096)  # always enough, fdlog.h says
    size = lib.fdl_format_line(
        name.encode(errors="replace"),
        node.encode(errors="replace"),
        os.getpid(),
        STREAMS[stream],
        time.time_ns() // 1_000_000,
        payload,
        len(payload),
        out,
        len(out),
    )
    if size < 0:  # cannot happen with the text and room given: a bug, said plainly
        raise OSError(-size, f"fdl_format_line refused a line of {len(payload)} bytes: {os.strerror(-size)}")
    return [record + b"\n" for record in ffi.buffer(out, size)[:].split(b"\n")[:-1]]


def _node() -> str:
    """Ray's node IP address, as actors' records have it (the hostname if Ray cannot say)."""
    import ray

    try:
        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


class _InfraLogHandler(logging.Handler):
    """Records of the `ray` loggers below ERROR, as lines of ray-driver in the infra log."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(logging.NOTSET)
        self.writer = writer
        # Its own: ray.init() gives every handler of the `ray` logger Ray's format, whose
        # time stamp the record has already.
        self.line_format = logging.Formatter("%(levelname)s %(filename)s:%(lineno)s -- %(message)s")
        self.addFilter(lambda record: record.levelno < logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        text = self.line_format.format(record)
        try:
            for line in text.splitlines() or [""]:
                self.writer.write_line(DRIVER_NAME, _node(), "err", line)
        except OSError as error:  # the log refuses it (full disk...): the terminal, then
            print(f"{text} (not in {self.writer.path}: {error.strerror})", file=sys.stderr)


def _errors_only(record: logging.LogRecord) -> bool:
    """The filter put on Ray's own handlers while capturing: they print failures only."""
    return record.levelno >= logging.ERROR


class _Capture:
    """What capture() has put in place, so that release() can take it out again."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer
        self.handler = _InfraLogHandler(writer)
        self.filtered: list[logging.Handler] = []


_capture: _Capture | None = None
_original_print_worker_logs: Callable | None = None
_state_lock = threading.Lock()


def capture(log_file: Path, hold: bool = False) -> None:
    """Send Ray's own lines on this driver into log_file (see the module's docstring), in
    place of any earlier capture. Safe to call before or after ray.init(). With hold, lines
    are kept in memory until commit(): a ray.init() that fails leaves the file empty (and
    release(replay=True) prints them where Ray would have)."""
    global _capture
    writer = LogWriter(log_file, hold)
    with _state_lock:
        _release_locked()
        _capture = _Capture(writer)
        ray_logger = logging.getLogger("ray")
        for handler in ray_logger.handlers:
            handler.addFilter(_errors_only)
            _capture.filtered.append(handler)
        ray_logger.addHandler(_capture.handler)
        missing = _hook_print_worker_logs()
    if missing:
        import ray

        writer.write_line(
            DRIVER_NAME,
            _node(),
            "fdlog",
            f"Ray {ray.__version__} has no {missing}: the lines Ray forwards from "
            f"its own processes (raylet, gcs_server, autoscaler) go on reaching the "
            f"terminal as before",
        )


def commit() -> None:
    """Write the lines held since capture(hold=True) into the file, and later ones at once."""
    with _state_lock:
        if _capture is not None:
            _capture.writer.commit()


def release(replay: bool = False) -> None:
    """Stop capturing: Ray's lines reach the terminal as they did before capture(). With
    replay, lines still held are printed on stderr first."""
    with _state_lock:
        if replay and _capture is not None:
            for line in _capture.writer.held_lines():
                print(line, file=sys.stderr)
        _release_locked()


def _release_locked() -> None:
    global _capture
    if _capture is None:
        return
    logging.getLogger("ray").removeHandler(_capture.handler)
    for handler in _capture.filtered:
        handler.removeFilter(_errors_only)
    _capture.writer.close()
    _capture = None


def _hook_print_worker_logs() -> str | None:
    """Put _print_worker_logs in place of Ray's (once per process); None when done, else
    what this Ray lacks."""
    global _original_print_worker_logs
    if _original_print_worker_logs is not None:
        return None
    from ray._private import worker

    original = getattr(worker, "print_worker_logs", None)
    wanted = f"ray._private.worker.print_worker_logs({', '.join(HOOK_PARAMETERS)})"
    if not callable(original):
        return wanted
    try:
        parameters = tuple(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return wanted
    if parameters != HOOK_PARAMETERS:
        return wanted
    _original_print_worker_logs = original
    worker.print_worker_logs = _print_worker_logs
    return None


def _print_worker_logs(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
    """Ray's print_worker_logs, less the lines of Ray's own processes that are not failures,
    which go into the infra log instead."""
    capture_now = _capture
    origin = data.get("pid")
    if capture_now is not None and isinstance(origin, str) and not origin.isdigit():
        lines = _lines_of(data)
        failures = [line for line in lines if _is_failure(data, line)]
        # The autoscaler's raw events are turned into messages by Ray's own printing, so a
        # batch of them with a failure reaches the terminal whole.
        if not failures or origin != "autoscaler":
            terminal = []
            for line in lines:
                try:
                    if line in failures:
                        terminal.append(line)
                    else:
                        capture_now.writer.write_line(
                            PROCESS_NAMES.get(origin, origin),
                            data.get("ip") or _node(),
                            "err" if data.get("is_err") else "out",
                            COLOUR.sub("", line),
                        )
                except OSError:  # the log refuses it (full disk...): the terminal, then
                    terminal.append(line)
            if not terminal:
                return
            data = {**data, "lines": terminal}
    assert _original_print_worker_logs is not None  # set before this replacement is installed
    _original_print_worker_logs(data, print_file, ignore_prefix)


def _lines_of(data: dict) -> list[str]:
    """The batch's lines as Ray would print them: the autoscaler's events as their messages."""
    lines = data.get("lines") or []
    if data.get("pid") == "autoscaler":
        from ray._private import worker

        events = getattr(worker, "filter_autoscaler_events", None)
        return list(events(lines)) if events is not None else list(lines)
    return list(lines)


def _is_failure(data: dict, line: str) -> bool:
    # The error channel's batches are the only ones without the node's IP address.
    if "ip" not in data:
        return not ERROR_CHANNEL_NOTICE.search(line)
    return bool(SEVERE_CXX_LINE.match(line) or FAILURE.search(line))
