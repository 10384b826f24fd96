"""One benchmark writer process: set up a logging method, wait for "go", write, drain, report.

Run by harness.py as `python bench_writer.py '<json spec>'` with three pipe fds inherited:
ready (we write one byte once set up), go (we read one byte to start) and result (we write
one JSON line at the end; fds 1 and 2 belong to the method under test).

Methods (the same Python loop writes the lines in every one of them):
  fdlog        skyrl_fdlog.redirect(path): fds 1, 2 -> sockets -> helper -> file
  dup2         SkyRL's way: an O_APPEND file dup2'ed onto fds 1 and 2
  filehandler  logging.FileHandler(path), one logger.info() per line
  clh          concurrent_log_handler.ConcurrentRotatingFileHandler (a file lock per record)
  wurlitzer    wurlitzer.pipes(): fds 1, 2 -> pipe -> reader thread -> os.write into the file
  devnull      fds 1, 2 -> /dev/null: the writer's own cost, the floor

Buffering modes of the fd methods (filehandler and clh do not use fds 1 and 2):
  line         sys.stdout line buffered: one write(2) per print() (what redirect() sets)
  unbuffered   started with PYTHONUNBUFFERED=1: print() is two write(2)s (text, newline)
  default      Python's default for a non-tty: up to 8 KiB per write(2) (the text layer
               flushes before a piece that would not fit, so blocks end on print() calls);
               redirect() switches to line buffering, so for fdlog this equals `line`
  block        the idea measured for fdlog: stdout left block-buffered after redirect()
  cstdio       a C program (printf in a loop, stdio's default buffering) inherits fds 1, 2
  cline        the same C program line-buffered (one write(2) per line, at C speed: this
               loads the helper far more than a Python writer can)
Roles: "write" (throughput / integrity), "probe" (latency: timestamped lines, optionally
with a forked child writing at full speed through the same method) and "order" (print() and
os.write(1, ...) in turn, numbered, for the order between the two; see order.py).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from bench_lines import line_parts


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its waited-for children
    (the C writer; not the helper, which is not our child)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Method:
    """Set up in __init__, `emit` writes one line (str, no newline), `drain` makes it durable."""

    uses_stdout = True
    helper_pid = 0

    def __init__(self, spec: dict):
        self.spec = spec

    def emit_function(self):
        return print

    def flush(self) -> None:
        sys.stdout.flush()

    def drain(self) -> None:
        self.flush()


class Inherit(Method):
    """Fds 1 and 2 as the parent left them: the sockets of a hub's redirect()."""


class Dup2(Method):
    target = None

    def __init__(self, spec):
        super().__init__(spec)
        fd = os.open(self.target or spec["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        sys.stdout.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


class DevNull(Dup2):
    target = os.devnull


class Fdlog(Method):
    def __init__(self, spec):
        super().__init__(spec)
        import skyrl_fdlog

        self.fdlog = skyrl_fdlog
        self.redirection = skyrl_fdlog.redirect(spec["path"], name=f"bench{spec['wid']}", node="bench")
        self.helper_pid = self.redirection.helper_pid
        if spec["buffering"] == "unbuffered":
            # redirect() turns on line buffering; keep PYTHONUNBUFFERED's two writes per print
            sys.stdout.reconfigure(line_buffering=False, write_through=True)
        elif spec["buffering"] == "block":
            # an idea measured, not what redirect() does: the helper keeps lines whole
            # whatever the write boundaries, so Python's stdout could stay block-buffered
            sys.stdout.reconfigure(line_buffering=False)

    def drain(self):
        self.flush()
        watchdog = self.redirection._watchdog
        self.fdlog.restore(timeout=600)
        if watchdog is not None and watchdog.is_alive():
            raise RuntimeError("restore() returned before the helper finished")


class Wurlitzer(Method):
    class Sink:
        """A stream without fileno(), so wurlitzer uses its pipe and thread; each chunk the
        thread reads is one write(2) to the O_APPEND file, as a raw file object would do."""

        def __init__(self, fd):
            self.fd = fd

        def write(self, data):
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]

        def flush(self):
            pass

    def __init__(self, spec):
        super().__init__(spec)
        import wurlitzer

        self.fd = os.open(spec["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        sink = self.Sink(self.fd)
        self.context = wurlitzer.pipes(stdout=sink, stderr=sink, encoding=None)
        self.context.__enter__()

    def drain(self):
        self.flush()
        self.context.__exit__(None, None, None)
        os.close(self.fd)


class LoggingHandler(Method):
    uses_stdout = False

    def make_handler(self, path):
        import logging

        return logging.FileHandler(path)

    def __init__(self, spec):
        super().__init__(spec)
        import logging

        self.handler = self.make_handler(spec["path"])
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.logger = logging.getLogger(f"bench{spec['wid']}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)

    def emit_function(self):
        return self.logger.info

    def flush(self):
        self.handler.flush()

    def drain(self):
        self.handler.flush()
        self.handler.close()


class ConcurrentLogHandler(LoggingHandler):
    def make_handler(self, path):
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        return ConcurrentRotatingFileHandler(path, "a", maxBytes=0, backupCount=0)


METHODS = {
    "fdlog": Fdlog,
    "dup2": Dup2,
    "filehandler": LoggingHandler,
    "clh": ConcurrentLogHandler,
    "wurlitzer": Wurlitzer,
    "devnull": DevNull,
    "inherit": Inherit,
}


def write_lines(emit, wid: int, size: int, lines: int, deadline: float) -> int:
    """Write up to `lines` lines, stopping early at `deadline`; return how many were written."""
    a, b = line_parts(wid, size)
    seq = 0
    monotonic = time.monotonic
    while seq < lines:
        stop = min(lines, seq + 256)
        for s in range(seq, stop):
            emit(f"{a}{s:09d}{b}{s:09d}")
        seq = stop
        if monotonic() >= deadline:
            break
    return seq


def run_c_writer(spec: dict, lines: int) -> int:
    """The C program (printf in a loop) writes through the inherited fds 1 and 2."""
    args = [spec["c_writer"], str(spec["wid"]), str(spec["size"]), str(lines)]
    if spec["buffering"] == "cline":
        args.append("line")
    result = subprocess.run(args, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"C writer exited with {result.returncode}")
    return lines


def probe(method: Method, emit, spec: dict) -> dict:
    """Latency probes: lines carrying their write time; a forked child loads the same path."""
    size = spec["size"]
    load_pid = 0
    if spec.get("load"):
        method.flush()
        load_pid = os.fork()
        if load_pid == 0:
            try:
                write_lines(emit, spec["wid"] + 500, size, 1 << 40, time.monotonic() + spec["duration"] + 0.2)
                method.flush()
            finally:
                os._exit(0)
    interval = spec["interval"]
    count = spec["probes"]
    pad = "x" * max(0, size - 40)
    sent = 0
    next_time = time.monotonic()
    for i in range(count):
        next_time += interval
        pause = next_time - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        emit(f"PROBE {i:06d} {time.monotonic_ns():020d} {pad}")
        sent += 1
    if load_pid:
        os.waitpid(load_pid, 0)
    return {"probes": sent}


def order(spec: dict) -> dict:
    """Alternate print() and os.write(1, ...), numbering the lines in the order written, so
    the log shows how often the actor's Python and fd-level lines swap places (order.py)."""
    wid, interval = spec["wid"], spec["interval"]
    for s in range(spec["pairs"]):
        print(f"ORD W{wid:03d} S{2 * s:09d} py")
        os.write(1, b"ORD W%03d S%09d fd\n" % (wid, 2 * s + 1))
        if interval:
            time.sleep(interval)
    return {"lines": 2 * spec["pairs"]}


def hub(spec: dict) -> None:
    """One redirect() whose sockets every writer of the case inherits, so that one helper
    serves them all; reports (as the last line) once restore() has drained it."""
    import skyrl_fdlog

    fds = spec["writers"][0]["fds"]
    for fd in fds:
        os.set_inheritable(fd, False)
    redirection = skyrl_fdlog.redirect(spec["path"], name="hub", node="bench")
    writers = [
        subprocess.Popen([sys.executable, __file__, json.dumps(w)], stdin=subprocess.DEVNULL, pass_fds=fds)
        for w in spec["writers"]
    ]
    failed = [w.returncode for w in writers if w.wait() != 0]
    skyrl_fdlog.restore(timeout=600)
    if failed:
        raise SystemExit(f"writers failed: {failed}")
    report = {
        "hub": True,
        "wid": -1,
        "lines": 0,
        "helper_pid": redirection.helper_pid,
        "t1": time.monotonic(),
    }
    os.write(fds[2], (json.dumps(report) + "\n").encode())
    for fd in fds:
        os.close(fd)


def main() -> None:
    if sys.argv[1] == "--hub":
        hub(json.loads(sys.argv[2]))
        return
    spec = json.loads(sys.argv[1])
    ready_fd, go_fd, result_fd = spec["fds"]
    for fd in (ready_fd, go_fd, result_fd):
        os.set_inheritable(fd, False)  # not into the helper, the C writer or the load child
    method = METHODS[spec["method"]](spec)
    if spec["buffering"] == "block" and method.uses_stdout:
        sys.stdout.reconfigure(line_buffering=False)
    elif spec["buffering"] == "line" and method.uses_stdout:
        sys.stdout.reconfigure(line_buffering=True)
    emit = method.emit_function()
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    os.read(go_fd, 1)
    os.close(go_fd)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    report = {"wid": spec["wid"], "helper_pid": method.helper_pid, "t0": t0}
    if spec["role"] == "probe":
        report |= probe(method, emit, spec)
        report["lines"] = 0
    elif spec["role"] == "order":
        report |= order(spec)
    elif spec["buffering"] in ("cstdio", "cline"):
        report["lines"] = run_c_writer(spec, spec["lines"])
    else:
        report["lines"] = write_lines(
            emit, spec["wid"], spec["size"], spec["lines"], t0 + spec["max_seconds"]
        )
    cpu1, t1 = cpu_seconds(), time.monotonic()
    method.drain()
    cpu2, t2 = cpu_seconds(), time.monotonic()
    report |= {"t_written": t1, "t1": t2, "cpu_write": cpu1 - cpu0, "cpu_drain": cpu2 - cpu1}
    os.write(result_fd, (json.dumps(report) + "\n").encode())
    os.close(result_fd)


if __name__ == "__main__":
    main()
