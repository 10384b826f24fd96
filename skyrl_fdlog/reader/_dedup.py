"""Collapse a line repeated across the cluster, after Ray's log deduplicator.

The rules (Ray's ``LogDeduplicator``), on a clock chosen by the caller: log time (each
line's own timestamp, for a finished log read at any speed) or a clock of the reader (for
lines that arrive live, as in ``tail -f``: then a writer whose clock is off changes
nothing, as in Ray, which times windows by arrival):

* A line is matched by its pattern: the stream and the payload's words, where every word
  that holds a digit (numbers, hex ids, addresses, timestamps) counts as the same word.
  The payload is read as every output shows it (``_message.view``): without vLLM's
  ``(Name pid=N)`` decoration of its own writer and without colour sequences, so a
  coloured and a plain copy of a line match.
* The first sighting of a pattern prints at once and opens a window (default 5 s).
* Repeats from the same writer (node, pid) alone print as usual.  Once a second writer
  has sent the pattern in the window, every further repeat is held.
* When the window closes, held repeats come out as one line, the latest repeat with
  ``[repeated Nx across cluster]`` (a single held repeat prints as itself), and a new
  window opens for the pattern; a pattern that saw no repeat is forgotten.
* A line whose words all hold digits (say ``0.31 0.29``) is never collapsed: the numbers
  are all it says.  Neither are unparsable lines, which have no writer.

Memory: at most ``max_patterns`` open windows; past that the oldest closes early.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ._message import view
from ._records import Record

DEFAULT_WINDOW_S = 5.0
DEFAULT_MAX_PATTERNS = 100_000

# Both run on the payload's words joined by single spaces, so a space is the only white
# space left, and a plain byte set ([^ ]) is faster to test than the class \S.  Whole words
# only: a match starts where no non-space precedes it.  Each word is tried once, from its
# start; the engine gives back at most the word's letters before it fails (Python 3.9 has
# no possessive quantifiers to spare it even that).
_WORD_WITH_DIGIT = re.compile(rb"(?<![^ ])[^ 0-9]*[0-9][^ ]*")
_WORD_WITHOUT_DIGIT = re.compile(rb"(?<![^ ])[^ 0-9]+(?![^ ])")


@dataclass
class Repeat:
    """``count`` held repeats of a pattern, shown as ``line`` (the latest of them)."""

    __slots__ = ("line", "count")  # by hand: dataclass(slots=True) needs Python 3.10

    line: Record
    count: int


@dataclass
class _Window:
    __slots__ = ("opened_ms", "count", "latest", "sources")
    opened_ms: int
    count: int
    latest: Record
    sources: set[tuple[str, int]]


def pattern_of(payload: bytes) -> bytes | None:
    """The matching key of a payload, or None when it must never be collapsed."""
    words = b" ".join(payload.split())
    if _WORD_WITHOUT_DIGIT.search(words) is None:
        return None
    return _WORD_WITH_DIGIT.sub(b"#", words)


class Deduplicator:
    """Applies the module's rules to lines in log order; see :meth:`push`."""

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        max_patterns: int = DEFAULT_MAX_PATTERNS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """``clock`` gives the time in milliseconds that windows run on; None: log time.
        Whichever it is, :meth:`expire` must be given times of the same clock."""
        self._window_ms = int(window_s * 1000)
        self._max_patterns = max_patterns
        self._clock = clock
        # Insertion order is window-opening order, so the first entry closes first.
        self._windows: dict[tuple[str, bytes], _Window] = {}

    def push(self, line: Record) -> list[Record | Repeat]:
        """Take the next line; return what to print now (closed windows first)."""
        if not line.parsed:
            return [line]
        now_ms = line.time_ms if self._clock is None else self._clock()
        out = self.expire(now_ms)
        pattern = pattern_of(view(line.payload, line.pid)[1])
        if pattern is None:
            out.append(line)
            return out
        key = (line.stream, pattern)
        source = (line.node, line.pid)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._max_patterns:
                # Evicted for room: closed for good, even if it repeated.
                out.extend(_held(self._windows.pop(next(iter(self._windows)))))
            self._windows[key] = _Window(now_ms, 0, line, {source})
            out.append(line)
            return out
        window.sources.add(source)
        if len(window.sources) > 1:
            window.count += 1
            window.latest = line
        else:
            out.append(line)
        return out

    def expire(self, now_ms: int) -> list[Record | Repeat]:
        """Close the windows opened ``window_s`` or more before ``now_ms``."""
        out: list[Record | Repeat] = []
        windows = self._windows
        while windows:
            key = next(iter(windows))
            if now_ms - windows[key].opened_ms < self._window_ms:
                break
            window = windows.pop(key)
            out.extend(_held(window))
            if window.count > 1:
                # Ray keeps collecting a pattern that repeated: a fresh window, same sources.
                window.opened_ms, window.count = now_ms, 0
                windows[key] = window
        return out

    def flush(self) -> list[Record | Repeat]:
        """Close every window (end of input)."""
        out: list[Record | Repeat] = []
        for window in self._windows.values():
            out.extend(_held(window))
        self._windows.clear()
        return out


def _held(window: _Window) -> list[Record | Repeat]:
    if window.count > 1:
        return [Repeat(window.latest, window.count)]
    if window.count == 1:
        return [window.latest]
    return []
