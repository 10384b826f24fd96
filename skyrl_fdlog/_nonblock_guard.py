"""Clearing O_NONBLOCK that another process set on the capture channels.

fds 1 and 2 of the actor and of all its children are one open file description per stream,
and O_NONBLOCK belongs to the description: when one process sets it (libuv and node,
asyncio's connect_write_pipe(sys.stdout), os.set_blocking(1, False)), every writer's
write(2) fails with EAGAIN whenever the socket buffer is full, that is whenever the helper
is behind, and `seq` dies of "write error", Python output is lost.  With a regular file on
fd 1 (SkyRL's dup2) the flag does nothing.

The flag cannot be refused and no event says it was set, so a thread of the actor looks at
it every CHECK_SECONDS, through the redirection's own copies of the channels' writing ends
(the same descriptions, whatever the actor later puts on fds 1 and 2; _redirect.py owns and
closes them), clears it, and says so in the log (an `err` line of the actor).  A writer
blocked on a full channel stays blocked (the flag is read when a write begins), so a helper
held up for longer than CHECK_SECONDS costs nothing; what is left is a write that begins on a
full channel in the moment between the flag being set and cleared: it fails in its writer,
and the line says it may have.  The process that set the flag then writes blocking, as every
other writer does.

The guard lives as long as the actor: children that outlive it are unguarded.
"""

from __future__ import annotations

import fcntl
import os
import threading

CHECK_SECONDS = 0.01


class NonblockGuard:
    def __init__(self, write_fds: tuple[int, ...]) -> None:
        self._fds = write_fds
        self._stop = threading.Event()
        self.cleared = 0
        self._thread = threading.Thread(target=self._run, name="skyrl-fdlog-nonblock-guard", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            for stream, fd in zip(("stdout", "stderr"), self._fds):
                try:
                    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                    if flags & os.O_NONBLOCK:
                        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
                        self._report(stream)
                except OSError:
                    pass

    def _report(self, stream: str) -> None:
        self.cleared += 1
        if self.cleared & (self.cleared - 1) == 0:  # the 1st, 2nd, 4th, 8th... time
            os.write(
                self._fds[1],
                (
                    f"skyrl_fdlog: a process set O_NONBLOCK on the {stream} channel that this "
                    f"actor's processes share; cleared it ({self.cleared} times so far). A write "
                    f"that found the channel full meanwhile (at most {CHECK_SECONDS * 1000:.0f} ms) "
                    f"failed with EAGAIN in its writer\n"
                ).encode(),
            )


_guards: list[NonblockGuard] = []


def start(write_fds: tuple[int, ...]) -> NonblockGuard:
    """Guard the channels whose writing ends are write_fds (out, err); they must stay open
    until stop() returns."""
    guard = NonblockGuard(write_fds)
    _guards.append(guard)
    guard._thread.start()
    return guard


def stop(guard: NonblockGuard | None) -> None:
    if guard is None or guard not in _guards:
        return
    _guards.remove(guard)
    guard._stop.set()
    guard._thread.join()


# A forked child has no guard thread; its copies of the fds are closed by _redirect.py.
os.register_at_fork(after_in_child=_guards.clear)
