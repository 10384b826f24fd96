"""The redirected process's own Python output: sys.stdout and sys.stderr through pipes.

fds 1 and 2 are sockets with SO_PASSCRED, so the helper knows which process wrote each
chunk. The actor's own Python streams need no such help: a pipe that only this process
writes carries its pid by construction, a write(2) into it costs the writer about half of
one into the socket, and the helper reads it without one kernel buffer per write
(benchmarks/notes.md). So while redirected, sys.stdout and sys.stderr are replaced by
text streams on two such pipes; C code and children keep writing to fds 1 and 2.

The price: an actor's Python lines and the lines its C code writes to the same fd are each
in order, but between the two, order holds only to within the helper's gather window
(docs/format.md). SKYRL_FDLOG_PYTHON_PIPES=0 keeps one channel per stream and exact order.

Guards, so nothing is misattributed or lost:
  * only a TextIOWrapper on fd 1 (2) is replaced, as sys.stdout or as the `.stream` of a
    wrapper around it (Ray's workers wrap sys.stdout to flush after every write; the wrapper
    stays and keeps doing so): a sys.stdout that something else put there (pytest's
    capture, a notebook) is left alone;
  * fileno() of the replacement answers 1 (2): subprocess.Popen(stdout=sys.stdout) and
    faulthandler use the socket, and a child writes under its own pid;
  * a forked child points the pipe's fd number at its fd 1 (2), so the stream objects it
    inherited write through the socket under the child's pid;
  * restore() puts the original objects back and points the pipe's fd number at the
    restored fd 1 (2), so a stream object kept meanwhile (a logging handler) goes on
    working. Those two fd numbers are reused by the next redirect(), not leaked per cycle.
"""

from __future__ import annotations

import io
import os
import sys

from skyrl_fdlog._errors import FdlogError
from skyrl_fdlog._fdlog import ffi, lib

ENABLE_VARIABLE = "SKYRL_FDLOG_PYTHON_PIPES"
STREAMS = (("stdout", 1), ("stderr", 2))

# fd numbers that once held a pipe's writing end, by the fd they stand in for (see above).
_kept_numbers: dict[int, int] = {}


class PipedStream(io.TextIOWrapper):
    """sys.stdout or sys.stderr while redirected: text into this process's own pipe."""

    def __init__(self, binary, original: io.TextIOWrapper, inherited_fd: int):
        super().__init__(binary, encoding=original.encoding, errors=original.errors,
                         line_buffering=True, write_through=original.write_through)
        self.inherited_fd = inherited_fd

    def fileno(self) -> int:
        """The fd a child should get for this stream: the socket, which tells its pid."""
        return self.inherited_fd


def enabled() -> bool:
    text = os.environ.get(ENABLE_VARIABLE, "1").strip().lower()
    if text in ("1", "true", "yes", "on", ""):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENABLE_VARIABLE} must be 1 or 0 (true/false, yes/no, on/off), got "
                     f"{text!r}; unset it for the default (1: Python output through pipes)")


def _place_of(name: str, target: int) -> tuple[object, str] | None:
    """Where the replaceable stream for sys.<name> sits: (sys, name), or (wrapper, "stream")
    for a wrapper around it, such as Ray's worker's `Unbuffered`; None when there is none."""
    stream = getattr(sys, name)
    if _replaceable(stream, target):
        return sys, name
    if "stream" in getattr(stream, "__dict__", {}) and _replaceable(stream.stream, target):
        return stream, "stream"
    return None


def _replaceable(stream, target: int) -> bool:
    """A plain text stream on the fd (or the replacement of a redirection being switched)."""
    if isinstance(stream, PipedStream):
        return True
    if type(stream) is not io.TextIOWrapper:
        return False
    try:
        return stream.fileno() == target
    except (OSError, ValueError):
        return False


class PythonPipes:
    """The two pipes and the stream objects they replace; see the module docstring."""

    def __init__(self):
        self.reads: tuple[int, int] = (-1, -1)
        self.writes: tuple[int, int] = (-1, -1)
        # (holder, attribute, original stream, its replacement) for each stream replaced
        self.replaced: list[tuple[object, str, io.TextIOWrapper, PipedStream]] = []

    @classmethod
    def open_if_useful(cls) -> PythonPipes | None:
        """Open the pipes when enabled and sys.stdout or sys.stderr can be replaced."""
        if not enabled() or not any(_place_of(name, target) for name, target in STREAMS):
            return None
        pipes = cls()
        reads, writes = [], []
        try:
            for _, target in STREAMS:
                read_fd, write_fd = ffi.new("int *"), ffi.new("int *")
                rc = lib.fdl_pipe_open(read_fd, write_fd)
                if rc < 0:
                    raise FdlogError(-rc, f"cannot create a pipe for Python's output: "
                                          f"{os.strerror(-rc)}; raise the open-file limit "
                                          f"(ulimit -n) or set {ENABLE_VARIABLE}=0")
                reads.append(read_fd[0])
                writes.append(_settle(write_fd[0], target))
        except BaseException:
            for fd in reads + writes:
                os.close(fd)
            raise
        pipes.reads, pipes.writes = tuple(reads), tuple(writes)
        return pipes

    def install(self) -> None:
        """Replace sys.stdout and sys.stderr (those that qualify) by streams on the pipes."""
        for (name, target), write_fd in zip(STREAMS, self.writes):
            place = _place_of(name, target)
            if place is None:
                continue
            holder, attribute = place
            original = getattr(holder, attribute)
            raw = io.FileIO(write_fd, "w", closefd=False)
            raw.name = f"<{name}>"
            # Unbuffered (PYTHONUNBUFFERED=1) stays unbuffered: each write is one write(2).
            binary = raw if isinstance(original.buffer, io.RawIOBase) else io.BufferedWriter(raw)
            replacement = PipedStream(binary, original, target)
            self.replaced.append((holder, attribute, original, replacement))
            setattr(holder, attribute, replacement)

    def flush(self) -> None:
        for _, _, _, stream in self.replaced:
            try:
                stream.flush()
            except (ValueError, OSError):
                pass  # the pipe's reader is gone for good: nothing left to save

    def uninstall(self) -> None:
        """Put the original streams back (fds 1 and 2 already restored) and close the pipes,
        leaving their fd numbers on the restored fds 1 and 2."""
        self.flush()
        for holder, attribute, original, replacement in self.replaced:
            if getattr(holder, attribute) is replacement:  # else someone replaced it since
                setattr(holder, attribute, original)
        self.point_writes_at_fds_1_and_2()
        self.close_reads()

    def point_writes_at_fds_1_and_2(self) -> None:
        """Close the pipes' writing ends by putting fds 1 and 2 on their numbers (a forked
        child's inherited streams then write through its own fds; the helper sees EOF)."""
        for (_, target), write_fd in zip(STREAMS, self.writes):
            os.dup2(target, write_fd, inheritable=False)
            _kept_numbers[target] = write_fd

    def send_to(self, fd: int) -> None:
        """No helper reads the pipes any more: point their writing ends at fd (the log)."""
        for write_fd in self.writes:
            os.dup2(fd, write_fd, inheritable=False)

    def close_reads(self) -> None:
        for fd in self.reads:
            try:
                os.close(fd)
            except OSError:
                pass
        self.reads = (-1, -1)


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _settle(write_fd: int, target: int) -> int:
    """Move a new pipe's writing end onto the number kept from an earlier redirection for
    the same stream, so stream objects from then write into this pipe.  Only while that
    number still stands for the fd: code that closed it may have reused the number."""
    kept = _kept_numbers.pop(target, None)
    if kept is None or not _same_file(kept, target):
        return write_fd
    os.dup2(write_fd, kept, inheritable=False)
    os.close(write_fd)
    return kept
