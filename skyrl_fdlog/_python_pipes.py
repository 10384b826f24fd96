"""The redirected process's own Python output: sys.stdout and sys.stderr through pipes.

fds 1 and 2 are sockets with SO_PASSCRED, so the helper knows which process wrote each
chunk. The actor's own Python streams need no such help: a pipe that only this process
writes carries its pid by construction, a write(2) into it costs the writer less than one
into the socket, and the helper reads it without one kernel buffer per write
(benchmarks/notes.md). So while redirected, sys.stdout and sys.stderr are replaced by text
streams on two such pipes; C code and children keep writing to fds 1 and 2.

The price (docs/format.md, "Order"): an actor's Python lines and the lines its C code
writes to the same fd are each in order, but not exactly between the two; and fd-level
tricks on fd 1 (dup2 of /dev/null onto it, fd capture) no longer reach the actor's Python
output. SKYRL_FDLOG_PYTHON_PIPES=0 keeps one channel per stream.

Guards, so nothing is misattributed or lost:
  * only a TextIOWrapper on fd 1 (2) is replaced, as sys.stdout or as the `.stream` of a
    wrapper around it (Ray's workers wrap sys.stdout to flush after every write; the wrapper
    stays and keeps doing so): a sys.stdout that something else put there (pytest's
    capture, a notebook) is left alone;
  * fileno() of the stream, of its buffer and of its raw file answers 1 (2):
    subprocess.Popen(stdout=sys.stdout) and faulthandler use the socket, and a child writes
    under its own pid;
  * a stream object writes to a fd number of its own, which stays valid after the pipe is
    gone: restore() and a forked child turn the pipe's numbers into *stand-ins* that
    follow fds 1 and 2 wherever skyrl_fdlog moves them, and the next redirection's pipes
    take the stand-ins over. So a stream kept meanwhile (a logging handler made while
    redirected) keeps writing where sys.stdout would, a forked child's lines carry its own
    pid, and repeated redirect()/restore() hold no more fds than one.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from typing import Any

from skyrl_fdlog._errors import ensure
from skyrl_fdlog._fdlog import ffi, lib
from skyrl_fdlog._settings import PYTHON_PIPES

ENABLE_VARIABLE = PYTHON_PIPES.variable
STREAMS = (("stdout", 1), ("stderr", 2))

# Stand-ins, by the fd they stand in for: fd number -> (st_dev, st_ino) of what we last put
# there. A number that no longer holds that file was closed (and maybe reused) by someone
# else: it is dropped, never written over.
_stand_ins: dict[int, dict[int, tuple[int, int] | None]] = {1: {}, 2: {}}


def flush_quietly(streams: Iterable[Any]) -> None:
    for stream in streams:
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass  # closed, replaced by something without flush, or its reader is gone for good


def _identity(fd: int) -> tuple | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _take_stand_ins(target: int) -> list[int]:
    """Remove and return the stand-ins of target that still hold what we put there."""
    numbers = [number for number, put in _stand_ins[target].items() if _identity(number) == put]
    _stand_ins[target] = {}
    return numbers


def _keep_as_stand_ins(target: int, numbers: list[int]) -> None:
    """Point numbers at target; at /dev/null while target is closed (restore() closes fds
    1 and 2 again when they were closed before redirect()), so they never write elsewhere."""
    if not numbers:
        return
    target_closed = _identity(target) is None
    source = os.open(os.devnull, os.O_WRONLY) if target_closed else target
    for number in numbers:
        os.dup2(source, number, inheritable=False)
        _stand_ins[target][number] = _identity(number)
    if target_closed:
        os.close(source)  # even when it took the closed target's number: that stays closed


def follow_fds_1_and_2() -> None:
    """Point every stand-in at what fds 1 and 2 are now; called after each change of them."""
    for target in _stand_ins:
        _keep_as_stand_ins(target, _take_stand_ins(target))


class PipeFile(io.FileIO):
    """The writing end of a pipe; fileno() answers the fd a child should get instead."""

    def __init__(self, fd: int, name: str, inherited_fd: int):
        super().__init__(fd, "w", closefd=False)
        self.name = name
        self.inherited_fd = inherited_fd

    def fileno(self) -> int:
        return self.inherited_fd


class PipedStream(io.TextIOWrapper):
    """sys.stdout or sys.stderr while redirected: text into this process's own pipe."""

    # binary: PipeFile, or a BufferedWriter over it (typeshed names their common type privately)
    def __init__(self, binary: Any, original: io.TextIOWrapper, inherited_fd: int) -> None:
        super().__init__(
            binary,
            encoding=original.encoding,
            errors=original.errors,
            line_buffering=True,
            write_through=original.write_through,
        )
        self.inherited_fd = inherited_fd

    def fileno(self) -> int:
        """The fd a child should get for this stream: the socket, which tells its pid."""
        return self.inherited_fd


def enabled() -> bool:
    """Whether the actor's Python output gets pipes of its own ($SKYRL_FDLOG_PYTHON_PIPES)."""
    return PYTHON_PIPES.value()


def _place_of(name: str, target: int) -> tuple[object, str] | None:
    """Where the replaceable stream for sys.<name> sits: (sys, name), or (wrapper, "stream")
    for a wrapper around it, such as Ray's worker's `Unbuffered`; None when there is none."""
    stream = getattr(sys, name)
    if _replaceable(stream, target):
        return sys, name
    if "stream" in getattr(stream, "__dict__", {}) and _replaceable(stream.stream, target):
        return stream, "stream"
    return None


def _replaceable(stream: object, target: int) -> bool:
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

    def __init__(self) -> None:
        self.reads: tuple[int, ...] = (-1, -1)
        # fd numbers writing into each pipe, by target; new streams use the first
        self.numbers: dict[int, list[int]] = {1: [], 2: []}
        # (holder, attribute, original stream, its replacement) for each stream replaced
        self.replaced: list[tuple[Any, str, Any, Any]] = []

    @classmethod
    def open_if_useful(cls) -> PythonPipes | None:
        """Open the pipes when enabled and sys.stdout or sys.stderr can be replaced."""
        if not enabled() or not any(_place_of(name, target) for name, target in STREAMS):
            return None
        pipes = cls()
        reads = []
        try:
            for _, target in STREAMS:
                read_fd, write_fd = ffi.new("int *"), ffi.new("int *")
                ensure(
                    lib.fdl_pipe_open(read_fd, write_fd),
                    "cannot create a pipe for Python's output",
                    advice=f"raise the open-file limit (ulimit -n) or set {ENABLE_VARIABLE}=0",
                )
                reads.append(read_fd[0])
                pipes.numbers[target] = [write_fd[0]]
        except BaseException:
            pipes.reads = tuple(reads)
            pipes.abandon()
            raise
        pipes.reads = tuple(reads)
        return pipes

    def abandon(self) -> None:
        """Close everything of pipes that were never installed (redirect() failed)."""
        for fd in [*self.reads, *self.numbers[1], *self.numbers[2]]:
            os.close(fd)
        self.reads, self.numbers = (-1, -1), {1: [], 2: []}

    def install(self) -> None:
        """Take over the stand-ins of earlier redirections, then replace sys.stdout and
        sys.stderr (those that qualify) by streams on the pipes."""
        for name, target in STREAMS:
            taken_over = _take_stand_ins(target)
            if taken_over:
                fresh = self.numbers[target][0]
                for number in taken_over:
                    os.dup2(fresh, number, inheritable=False)
                os.close(fresh)
                self.numbers[target] = taken_over
            place = _place_of(name, target)
            if place is None:
                continue
            holder, attribute = place
            original = getattr(holder, attribute)
            raw = PipeFile(self.numbers[target][0], f"<{name}>", target)
            # Unbuffered (PYTHONUNBUFFERED=1) stays unbuffered: each write is one write(2).
            binary = raw if isinstance(original.buffer, io.RawIOBase) else io.BufferedWriter(raw)
            replacement = PipedStream(binary, original, target)
            self.replaced.append((holder, attribute, original, replacement))
            setattr(holder, attribute, replacement)

    def flush(self) -> None:
        """Before uninstall(), apart from it: a flush can wait for a helper, uninstall() is
        done where a fork waits for it to finish."""
        flush_quietly(replacement for _, _, _, replacement in self.replaced)

    def uninstall(self) -> None:
        """Put the original streams back (fds 1 and 2 already restored) and close the pipes,
        leaving their numbers as stand-ins."""
        for holder, attribute, original, replacement in self.replaced:
            if getattr(holder, attribute) is replacement:  # else someone replaced it since
                setattr(holder, attribute, original)
        self.retire()
        self.close_reads()

    def retire(self) -> None:
        """The pipes' numbers become stand-ins for fds 1 and 2; that closes the pipes'
        writing ends in this process (the helper sees EOF once no process holds one)."""
        for target, numbers in self.numbers.items():
            _keep_as_stand_ins(target, numbers)
        self.numbers = {1: [], 2: []}

    def send_to(self, fd: int) -> None:
        """No helper reads the pipes any more: their numbers write into fd (the log)."""
        for number in [*self.numbers[1], *self.numbers[2]]:
            os.dup2(fd, number, inheritable=False)

    def close_reads(self) -> None:
        for fd in self.reads:
            try:
                os.close(fd)
            except OSError:
                pass
        self.reads = (-1, -1)
