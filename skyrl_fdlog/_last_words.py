"""Last words for a Ray actor whose __init__ raised.

Ray ends such an actor's process in order (its Python exits, atexit handlers run), so crash.c's
signal handlers see nothing.  The actor says it instead: it leaves the same mark a fatal signal
leaves (lib.fdl_mark_exception, crash.c), and the helper prints the actor's last lines once the
process is gone (helper.c, "Last words").

Two ways in, one mark:
  - @redirected wraps __init__ in guarded_init(): an Exception escaping it is marked at once,
    then re-raised for Ray to report.
  - A plain redirect() called inside an actor's __init__ (watch_actor_init) finds the frame of
    the __init__ that Ray called (the outermost frame of that name on the stack) and checks it
    once it has ended: a frame that ended at a return instruction returned, any other (one
    that raised) did not.  A thread looks every CHECK_SECONDS whether the frame is still on
    its thread's stack, and an atexit handler decides in its place if the process ends first
    (Ray 2.60 runs atexit handlers after a failed creation task, and not after ray.kill, which
    ends the process at once).  Either drops the frame once it has decided: a finished frame
    holds __init__'s locals, which must not outlive it (a loaded checkpoint, a GPU tensor).
    Python 3.11 has no cheaper way to see a frame unwind (sys.monitoring's PY_UNWIND came in
    3.12), and tracing every call of __init__ would slow it down.
"""

from __future__ import annotations

import atexit
import contextlib
import dis
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

from skyrl_fdlog._fdlog import lib

# The instructions a frame that returned ended at: RETURN_CONST exists from Python 3.12 on.
_RETURNS = {dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap}
_guarding = False  # a guarded_init() is running: it marks an exception itself
CHECK_SECONDS = 0.1  # how often the watch looks whether __init__ is still running


def _in_ray_actor() -> bool:
    ray = sys.modules.get("ray")
    # Only a connected worker: asking an uninitialised Ray for its context starts a cluster.
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return False
    try:
        return ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # a Ray too old or too new for the question: no actor to speak of
        return False


def mark_exception() -> None:
    """Ask the helper for this actor's last words once this process is gone."""
    lib.fdl_mark_exception()


@contextlib.contextmanager
def guarded_init() -> Iterator[None]:
    """Around @redirected's call of the actor's __init__: an Exception escaping it inside a
    Ray actor is marked, then goes on to Ray.  SystemExit and KeyboardInterrupt (the actor
    exiting on purpose, ray.actor.exit_actor(), Ray's SIGTERM) are orderly ends."""
    global _guarding
    outer, _guarding = _guarding, True
    try:
        yield
    except Exception:
        if _in_ray_actor():
            mark_exception()
            # Ray writes its report of the exception next: after the mark in the log, among
            # the lines after it, rather than in place of the actor's own before it.
            import skyrl_fdlog  # here: the package imports this module while it loads

            skyrl_fdlog.flush(timeout=1.0)
        raise
    finally:
        _guarding = outer


def _outermost_init(frame: FrameType | None) -> FrameType | None:
    found = None
    while frame is not None:
        if frame.f_code.co_name == "__init__":
            found = frame
        frame = frame.f_back
    return found


def _returned(frame: FrameType) -> bool:
    """Whether a frame that is no longer running ended by returning."""
    return frame.f_lasti >= 0 and frame.f_code.co_code[frame.f_lasti] in _RETURNS


class _InitWatch:
    """One actor __init__ frame, until it is known whether it returned."""

    def __init__(self, frame: FrameType, thread_id: int) -> None:
        self._frame: FrameType | None = frame
        self._thread_id = thread_id
        self._pid = os.getpid()  # a child forked inside __init__ inherits the atexit handler
        self._lock = threading.Lock()

    def _running(self) -> bool:
        current = sys._current_frames().get(self._thread_id)
        while current is not None:
            if current is self._frame:
                return True
            current = current.f_back
        return False

    def wait(self) -> None:
        """The watching thread: decide once the frame has left its thread's stack."""
        while self._frame is not None and self._running():
            time.sleep(CHECK_SECONDS)
        self.decide()

    def decide(self) -> None:
        """Mark an __init__ that raised; either way, let go of its frame.  Once."""
        with self._lock:
            frame, self._frame = self._frame, None
        if frame is not None and os.getpid() == self._pid and not _returned(frame):
            mark_exception()


def watch_actor_init() -> None:
    """Called by redirect() once in force: inside a Ray actor's __init__ not guarded by
    @redirected, check at exit whether that __init__ returned (see the module's doc)."""
    if _guarding or not _in_ray_actor():
        return
    frame = _outermost_init(sys._getframe(1))
    if frame is None:
        return
    watch = _InitWatch(frame, threading.get_ident())
    atexit.register(watch.decide)  # when the process ends before the thread has looked
    threading.Thread(target=watch.wait, name="skyrl-fdlog-init-watch", daemon=True).start()
