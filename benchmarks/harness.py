"""Running benchmark cases: writer processes, timing, helper cost, integrity and latency.

A case starts N writer processes (bench_writer.py), waits until each has set up its method
(interpreter start-up and imports are not timed), says "go" to all at once, and collects what
each measured inside itself: CLOCK_MONOTONIC when it started writing and when its drain
finished (for skyrl_fdlog: restore() returned, i.e. its helper wrote everything and exited).
Throughput = lines / (last drain end - first start).

The harness makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so the helpers,
which detach from their actor, are re-parented to it and wait4() returns their exact CPU time
and peak RSS (ru_maxrss, the VmHWM of the process) when they exit.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_lines import check_log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WRITER = HERE / "bench_writer.py"
C_WRITER_SOURCE = HERE / "c_writer.c"

METHODS = ("fdlog", "dup2", "filehandler", "clh", "wurlitzer", "devnull")
LABELS = {
    "fdlog": "skyrl_fdlog.redirect",
    "dup2": "os.dup2 O_APPEND (SkyRL)",
    "filehandler": "logging.FileHandler",
    "clh": "concurrent-log-handler",
    "wurlitzer": "wurlitzer (pipe + thread)",
    "devnull": "/dev/null (floor)",
}
FD_METHODS = ("fdlog", "dup2", "wurlitzer", "devnull")
# An experiment, not in METHODS (make bench leaves it out): every writer of the case writes
# into one redirect()'s sockets, so one helper serves them all, as a helper per node would
# serve every actor of the node (benchmarks/helper_count.py).
ONE_HELPER = "fdlog-one-helper"
LABELS[ONE_HELPER] = "skyrl_fdlog, one helper for all writers"
CHECKABLE = ("fdlog", "dup2", "filehandler", "clh", "wurlitzer", ONE_HELPER)

# Lines per case, all writers together, by line size: issue 16's tables (scaling.py, helper_count.py).
ISSUE16_LINES = {120: 200_000, 8192: 16_000}

PR_SET_CHILD_SUBREAPER = 36
_subreaper = None


def become_subreaper(on: bool = True) -> bool:
    """Adopt orphaned descendants (the detached helpers) so wait4() can measure them.

    Switched on only while a case runs: a process that stays a subreaper would keep the
    helpers of unrelated code (other tests in the same pytest run) as zombies."""
    global _subreaper
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        done = libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        done = False
    if on:
        _subreaper = done
    return done


def _reap_orphans() -> None:
    """Collect adopted processes that nobody waits for (after a failed case)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def build_c_writer(workdir: Path) -> Path:
    """Compile c_writer.c with cc (once per work directory)."""
    target = workdir / "c_writer"
    if not target.exists():
        subprocess.run(
            [os.environ.get("CC", "cc"), "-O2", "-o", str(target), str(C_WRITER_SOURCE)], check=True
        )
    return target


class CaseError(RuntimeError):
    pass


def _writer_env(buffering: str, gather_us: int | None, helper: str | None, python_pipes: bool | None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    env.pop("SKYRL_LOG_FILE", None)
    env.pop("SKYRL_DUMP_INFRA_LOG_TO_STDOUT", None)
    if buffering == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    if gather_us is not None:
        env["SKYRL_FDLOG_GATHER_US"] = str(gather_us)
    if helper:
        env["SKYRL_FDLOG_HELPER"] = helper
    env.pop("SKYRL_FDLOG_PYTHON_PIPES", None)
    if python_pipes is not None:
        env["SKYRL_FDLOG_PYTHON_PIPES"] = "1" if python_pipes else "0"
    return env


_counter = 0


@dataclass
class Case:
    """One run of N writers of one method; prepare() -> go() -> finish()."""

    method: str
    writers: int
    size: int = 120
    lines: int = 100_000  # in all, split between the writers
    max_seconds: float = 5.0  # each writer stops early at this (throughput stays valid)
    buffering: str = "line"
    workdir: Path = Path("/tmp/skyrl-fdlog-bench")
    gather_us: int | None = None
    python_pipes: bool | None = None  # None: redirect()'s default (on)
    helper: str | None = None
    role: str = "write"
    probe: dict = field(default_factory=dict)
    keep_log: bool = False
    # filled in while running
    path: Path | None = None
    procs: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    result: dict = field(default_factory=dict)

    def prepare(self) -> Case:
        global _counter
        become_subreaper()
        self.workdir.mkdir(parents=True, exist_ok=True)
        _counter += 1
        self.path = (
            self.workdir / f"{_counter:04d}-{self.method}-{self.writers}w-{self.size}B-{self.buffering}.log"
        )
        for stale in (self.path, self._clh_lock()):
            if stale.exists():
                stale.unlink()
        self.path.touch()
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        result_r, result_w = os.pipe()
        self._pipes = (ready_r, go_w, result_r)
        env = _writer_env(self.buffering, self.gather_us, self.helper, self.python_pipes)
        c_writer = str(build_c_writer(self.workdir)) if self.buffering in ("cstdio", "cline") else None
        self._stderr_path = self.path.with_suffix(".stderr")
        stderr = open(self._stderr_path, "wb")
        share, extra = divmod(self.lines, self.writers)
        specs = []
        try:
            for wid in range(self.writers):
                spec = {
                    "method": "inherit" if self.method == ONE_HELPER else self.method,
                    "path": str(self.path),
                    "wid": wid,
                    "size": self.size,
                    "lines": share + (wid < extra),
                    "max_seconds": self.max_seconds,
                    "buffering": self.buffering,
                    "role": self.role,
                    "c_writer": c_writer,
                    "fds": [ready_w, go_r, result_w],
                } | self.probe
                specs.append(spec)
            # one writer process each, or one hub that redirects and starts them all
            commands = (
                [[str(WRITER), "--hub", json.dumps({"path": str(self.path), "writers": specs})]]
                if self.method == ONE_HELPER
                else [[str(WRITER), json.dumps(spec)] for spec in specs]
            )
            for command in commands:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, *command],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        env=env,
                        pass_fds=(ready_w, go_r, result_w),
                        cwd=str(self.workdir),
                    )
                )
        finally:
            stderr.close()
            for fd in (ready_w, go_r, result_w):
                os.close(fd)
        got = 0
        deadline = time.monotonic() + 60 + 2 * self.writers
        while got < self.writers:
            chunk = self._read(ready_r, deadline, "set up")
            got += len(chunk)
        os.close(ready_r)
        return self

    def _read(self, fd: int, deadline: float, what: str) -> bytes:
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                self._fail(f"writers did not {what} in time")
            if select.select([fd], [], [], min(timeout, 0.5))[0]:
                chunk = os.read(fd, 65536)
                if chunk:
                    return chunk
                self._fail(f"a writer exited before it {what}")
            if any(p.poll() not in (None, 0) for p in self.procs):
                self._fail(f"a writer failed before it {what}")

    def _fail(self, message: str):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        time.sleep(0.2)  # helpers exit once their writers are gone
        _reap_orphans()
        become_subreaper(False)
        errors = self._stderr_path.read_text(errors="replace")[-3000:] if self._stderr_path.exists() else ""
        raise CaseError(f"{self.method} {self.writers}w {self.size}B {self.buffering}: {message}\n{errors}")

    def go(self) -> None:
        """Start every writer at once and wait until all have drained."""
        _, go_w, result_r = self._pipes
        os.write(go_w, b"g" * self.writers)
        os.close(go_w)
        buffer = b""
        deadline = time.monotonic() + max(120.0, self.max_seconds * 4 + 60)
        reports = self.writers + (self.method == ONE_HELPER)  # the hub's, once it has drained
        while buffer.count(b"\n") < reports:
            buffer += self._read(result_r, deadline, "finish")
        os.close(result_r)
        self.reports = [json.loads(line) for line in buffer.splitlines()]

    def finish(self) -> dict:
        """Reap writers and helpers, check the log, return the measurements."""
        for p in self.procs:
            if p.wait(timeout=120) != 0:
                self._fail(f"writer exited with {p.returncode}")
        helpers = [r["helper_pid"] for r in self.reports if r.get("helper_pid")]
        helper_usage = [u for u in (_wait_helper(pid) for pid in helpers) if u is not None]
        become_subreaper(False)
        hub = [r for r in self.reports if r.get("hub")]
        reports = [r for r in self.reports if not r.get("hub")]
        lines = sum(r["lines"] for r in reports)
        start = min(r["t0"] for r in reports)
        end = max(r["t1"] for r in reports + hub)  # a hub's writers drain when it restores
        elapsed = end - start
        payload = lines * self.size
        res = {
            "method": self.method,
            "writers": self.writers,
            "size": self.size,
            "buffering": self.buffering,
            "gather_us": self.gather_us,
            "python_pipes": self.python_pipes,
            "lines": lines,
            "seconds": elapsed,
            "lines_per_s": lines / elapsed if elapsed > 0 else 0.0,
            "mb_per_s": payload / elapsed / 1e6 if elapsed > 0 else 0.0,
            "write_seconds": max(r["t_written"] for r in reports) - start,
            "writer_cpu_s": sum(r["cpu_write"] + r["cpu_drain"] for r in reports),
            "stopped_early": any(r["lines"] < self.lines // self.writers for r in reports)
            and self.role == "write",
        }
        res["writer_cpu_us_per_line"] = res["writer_cpu_s"] / lines * 1e6 if lines else None
        if helper_usage:
            cpu = sum(u["cpu_s"] for u in helper_usage)
            res |= {
                "helpers": len(helper_usage),
                "helper_cpu_s": cpu,
                "helper_cpu_s_per_gb": cpu / (payload / 1e9) if payload else None,
                "helper_cpu_us_per_line": cpu / lines * 1e6 if lines else None,
                "helper_maxrss_kib": max(u["maxrss_kib"] for u in helper_usage),
            }
        if self.role == "write" and self.method in CHECKABLE:
            counts = {r["wid"]: r["lines"] for r in reports}
            data = self.path.read_bytes()
            res["file_bytes"] = len(data)
            # issue 16: every record of at most PIPE_BUF (4096) bytes, its newline included
            res["max_record_bytes"] = max(map(len, data.split(b"\n")), default=0) + 1
            res["check"] = check_log(data, counts, self.size, prefixed="fdlog" in self.method).as_dict()
        self.result = res
        self.cleanup()
        return res

    def _clh_lock(self) -> Path:
        return self.path.parent / f".__{self.path.stem}.lock" if self.path else Path("/nonexistent")

    def cleanup(self) -> None:
        if self.keep_log:
            return
        for p in (self.path, self._clh_lock(), getattr(self, "_stderr_path", None)):
            if p is not None and p.exists():
                p.unlink()


def _wait_helper(pid: int, timeout: float = 30.0) -> dict | None:
    """CPU seconds and peak RSS of an exited helper (it is our child: we are its subreaper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return None  # not adopted by us (no subreaper): not measurable this way
        if got == pid:
            return {"cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def run_case(method: str, writers: int, **kwargs) -> dict:
    case = Case(method, writers, **kwargs)
    case.prepare()
    case.go()
    return case.finish()


# ---------------------------------------------------------------- latency

IN_MODIFY = 0x00000002


class FileWatcher(threading.Thread):
    """Wakes on every write to `path` (inotify) and timestamps each PROBE line it finds."""

    def __init__(self, path: Path, expected: int):
        super().__init__(daemon=True)
        libc = ctypes.CDLL(None, use_errno=True)
        self.ifd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.ifd < 0 or libc.inotify_add_watch(self.ifd, os.fsencode(path), IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.expected = expected
        self.arrivals: dict[int, int] = {}
        self.sent: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        offset = 0
        carry = b""
        poller = select.poll()
        poller.register(self.ifd, select.POLLIN)
        while len(self.arrivals) < self.expected and not self.stop.is_set():
            if not poller.poll(100):
                continue
            try:
                os.read(self.ifd, 65536)
            except BlockingIOError:
                pass
            while True:
                chunk = os.pread(self.fd, 1 << 20, offset)
                if not chunk:
                    break
                now = time.monotonic_ns()
                offset += len(chunk)
                data = carry + chunk
                end = data.rfind(b"\n") + 1
                carry = data[end:]
                at = data.find(b"PROBE ", 0, end)
                while at >= 0:
                    fields = data[at + 6 : at + 6 + 27].split(b" ")
                    try:
                        probe_id, sent = int(fields[0]), int(fields[1])
                        self.arrivals.setdefault(probe_id, now)
                        self.sent[probe_id] = sent
                    except (ValueError, IndexError):
                        pass
                    at = data.find(b"PROBE ", at + 6, end)
        os.close(self.fd)
        os.close(self.ifd)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_latency(
    method: str, load: bool, probes: int = 300, interval: float = 0.005, size: int = 120, **kwargs
) -> dict:
    """p50/p99 from write(2) to the line being readable in the file, idle or under load
    (a forked child of the probing process writing at full speed through the same method)."""
    case = Case(
        method,
        1,
        size=size,
        lines=0,
        role="probe",
        probe={"probes": probes, "interval": interval, "load": load, "duration": probes * interval},
        **kwargs,
    )
    case.prepare()
    watcher = FileWatcher(case.path, probes)
    watcher.start()
    case.go()
    watcher.join(timeout=30)
    watcher.stop.set()
    watcher.join()
    res = case.finish()
    latencies_us = [(watcher.arrivals[i] - watcher.sent[i]) / 1000 for i in watcher.arrivals]
    return {
        "method": method,
        "load": load,
        "probes": probes,
        "received": len(latencies_us),
        "p50_us": percentile(latencies_us, 0.50),
        "p99_us": percentile(latencies_us, 0.99),
        "max_us": max(latencies_us) if latencies_us else float("nan"),
        "gather_us": kwargs.get("gather_us"),
        "helper_maxrss_kib": res.get("helper_maxrss_kib"),
    }


# ---------------------------------------------------------------- the machine


def _filesystem_of(path: Path) -> str:
    path = path.resolve()
    best, kind, source = "", "?", "?"
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            dev, mount, fstype = line.split()[:3]
            mount = mount.replace("\\040", " ")
            if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > len(
                best
            ):
                best, kind, source = mount, fstype, dev
    return f"{kind} ({source} on {best})"


def machine_info(workdir: Path) -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    helper = os.environ.get("SKYRL_FDLOG_HELPER")
    if not helper:
        try:
            from skyrl_fdlog._redirect import helper_executable

            helper = helper_executable()
        except Exception:
            helper = "?"
    # The in-tree build is named relative to the repository: results.json names no local path.
    if helper.startswith(f"{REPO}{os.sep}"):
        helper = os.path.relpath(helper, REPO)

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return "?"

    def read(path):
        try:
            return Path(path).read_text().strip()
        except OSError:
            return "?"

    import importlib.metadata as md

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": _filesystem_of(workdir),
        "workdir": str(workdir),
        "loadavg": os.getloadavg(),
        "memory": read("/proc/meminfo").splitlines()[0] if read("/proc/meminfo") != "?" else "?",
        "wmem_max": read("/proc/sys/net/core/wmem_max"),
        "helper": helper,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "csrc_dirty": bool(git("status", "--porcelain", "csrc")),
        "versions": {n: version(n) for n in ("concurrent-log-handler", "wurlitzer", "pytest-benchmark")},
        "subreaper": become_subreaper() and become_subreaper(False),
    }


def fresh_workdir(workdir: Path) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    return workdir


def write_results(path: Path, saved: dict) -> None:
    """The raw results as JSON, one line per case after one line for the rest: a re-run's diff
    shows the cases that changed, not thousands of lines of indentation."""
    compact = functools.partial(json.dumps, separators=(",", ":"), default=str)
    rest = compact({key: value for key, value in saved.items() if key != "results"})
    cases = ",\n".join(compact(result) for result in saved["results"])
    path.write_text(f'{rest[:-1]},"results":[\n{cases}\n]}}\n')
