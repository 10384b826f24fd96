"""What a line's payload says, beyond its bytes: colours, vLLM's decoration, a level.

Every output format of the CLI (the record format, ``--no-prefix``, ``--json``, ``--dedup``)
reads a payload through this one module, so they all follow the same rules:

* **Colours.**  vLLM and Ray colour parts of their lines with SGR sequences
  (``ESC [ 36 m``).  :data:`COLOUR` matches the ones that only set colours and text
  attributes; :func:`drop_colours` removes them.  Every other escape sequence, including an
  SGR that hides text (``ESC [ 8 m``, conceal) or blinks, is not a colour and is left for
  the escaping of ``_terminal``.
* **vLLM's decoration.**  vLLM starts each of its log lines with ``(EngineCore pid=123)``
  (``(VllmWorker rank=0 pid=123)`` in older vLLM), possibly coloured.  When that pid is
  the record's own, the decoration only repeats what the record says: :func:`undecorate`
  removes it and returns vLLM's process name as the line's *role*.  A decoration naming
  another pid (a line relayed from elsewhere) is text and stays.
* **Level.**  :func:`level_of` recognises the level of the common log line formats
  (Python logging, vLLM, Ray's Python and C++ logs, glog and torch's C++ warnings) and
  error messages that stand anywhere in a line (NCCL WARN, Segmentation fault), and says
  ``None`` for anything else; :class:`LevelTracker` also reads a traceback as one block.
  The patterns are one table, levels.json, that the log helper is built from too.

The file is never changed: these are views for reading, and ``--raw-bytes`` shows the
bytes as written.  Standard library only, like the reader.
"""

from __future__ import annotations

import re

from .. import _levels

# One SGR parameter list that only sets colours or attributes a reader wants: reset (0 or
# empty), bold, dim, italic, underline and their resets (1-4, 22-24), the 8 + 8 basic and
# bright fore- and background colours, default colours (39, 49), and 256-colour and
# true-colour (38/48;5;N, 38/48;2;R;G;B).  Not conceal (8), blink (5, 6) or reverse (7):
# they hide or disguise text, so they stay escaped.
_PARAM = (
    r"(?:[0-4]|2[2-4]|3[0-79]|4[0-79]|9[0-7]|10[0-7]|0[0-4]"
    r"|[34]8;5;\d{1,3}|[34]8;2;\d{1,3};\d{1,3};\d{1,3})"
)
_COLOUR_TEXT = rf"\x1b\[(?:{_PARAM}(?:;{_PARAM})*)?m"
#: An SGR sequence that only sets colours or text attributes.
COLOUR = re.compile(_COLOUR_TEXT.encode(), re.ASCII)
_COLOUR_STR = re.compile(_COLOUR_TEXT, re.ASCII)

# vLLM's decoration at the start of a payload: "(NAME pid=N) " or "(NAME rank=R pid=N) ",
# with the colours vLLM puts around it.  NAME is a multiprocessing process name
# (EngineCore, EngineCore_DP0, Worker_TP1, MainProcess, APIServer).
_DECORATION = re.compile(
    rb"(?:" + _COLOUR_TEXT.encode() + rb")*"
    rb"\(([A-Za-z_][A-Za-z0-9_.-]{0,63})(?: rank=(\d{1,9}))? pid=(\d{1,10})\)"
    rb"(?:" + _COLOUR_TEXT.encode() + rb")* ?",
    re.ASCII,
)

# The level of a line in the formats met in a training run, tried at the line's start
# (colours gone), after vLLM's decoration where it is still there (it named another pid):
#   Python logging's default format   WARNING:root:message
#   vLLM                              INFO 11-27 02:47:06 [core.py:100] message
#   Ray's Python logs, and formats    2026-11-27 02:47:06,123\tINFO worker.py:1 -- message
#     with a date first
#   Ray's C++ logs                    [2026-11-27 02:47:06,123 W 123 456] file.cc:12: message
#   glog, torch's C++ warnings        W1127 02:47:06.123456  1234 file.cc:12] message
#                                     [rank0]:[W1127 02:47:06.123456789 x.cpp:1] message
# and, in a line that none of those formats claims, messages that are errors wherever they
# stand (NCCL WARN, CUDA out of memory, Segmentation fault, ...).  The patterns live in one
# table, levels.json (expanded by _levels), that the log helper is built from too
# (csrc/shared/levels.h), and the lnav format (skyrl_fdlog/lnav/skyrl_fdlog.json) holds the
# at-start patterns as LNAV_LEVELS; tests check that all three agree.
#: The level patterns of the lnav format, one anchored regex per lnav level.
LNAV_LEVELS = dict(_levels.AT_START)
_AT_START = re.compile(
    "|".join(f"(?P<{level}>{pattern})" for level, pattern in _levels.AT_START.items()), re.ASCII
)
# Highest first: a line that holds two such messages has the graver level.
_ANYWHERE = [
    (level, re.compile(pattern, re.ASCII).search) for level, pattern in reversed(_levels.ANYWHERE.items())
]
_TRACEBACK_START = re.compile(_levels.TRACEBACK_START, re.ASCII).match
_TRACEBACK_INSIDE = re.compile(_levels.TRACEBACK_INSIDE, re.ASCII).match
#: The levels from the lowest to the highest.
LEVELS = _levels.ORDER


def drop_colours(payload: bytes) -> bytes:
    """``payload`` without its colour sequences (see :data:`COLOUR`)."""
    return COLOUR.sub(b"", payload) if b"\x1b[" in payload else payload


def undecorate(payload: bytes, pid: int) -> tuple[str | None, bytes]:
    """vLLM's role and the payload without its decoration, when the decoration names
    ``pid`` (the record's writer); else ``(None, payload)``."""
    if not payload.startswith((b"(", b"\x1b[")):  # the common case: one byte compare
        return None, payload
    match = _DECORATION.match(payload)
    if match is None or int(match.group(3)) != pid:
        return None, payload
    name, rank = match.group(1).decode("ascii"), match.group(2)
    role = f"{name}_rank{int(rank)}" if rank is not None else name
    return role, payload[match.end() :]


def view(payload: bytes, pid: int) -> tuple[str | None, bytes]:
    """The role and the payload as every output format shows it: vLLM's decoration
    removed (see :func:`undecorate`) and colours dropped."""
    role, payload = undecorate(payload, pid)
    return role, drop_colours(payload)


def level_of(text: str) -> str | None:
    """``debug``, ``info``, ``warning``, ``error`` or ``critical`` for a line in a known
    format, or holding a known error message (see the module), else None; colours in
    ``text`` are ignored.  One line alone: :class:`LevelTracker` also knows tracebacks."""
    if "\x1b[" in text:
        text = _COLOUR_STR.sub("", text)
    match = _AT_START.match(text)
    if match is not None:
        return match.lastgroup
    for level, search in _ANYWHERE:
        if search(text) is not None:
            return level
    return None


def at_least(level: str | None, threshold: str) -> bool:
    """Whether ``level`` (as :func:`level_of` gives it) is ``threshold`` or graver."""
    return level is not None and LEVELS.index(level) >= LEVELS.index(threshold)


class LevelTracker:
    """Levels of the lines of many writers read in order, a Python traceback as one block
    of level ``error``: its ``Traceback (most recent call last):`` line, the indented lines
    after it and the first line that is not indented (the exception), all of one writer
    (node, pid, stream).  The log helper follows the same rule (csrc/shared/levels.c)."""

    def __init__(self) -> None:
        self._in_traceback: set[tuple[str, int, str]] = set()

    def level(self, text: str, writer: tuple[str, int, str]) -> str | None:
        """The level of ``text``, the next line of ``writer``."""
        if "\x1b[" in text:
            text = _COLOUR_STR.sub("", text)
        if writer in self._in_traceback:
            if _TRACEBACK_INSIDE(text) is None:
                self._in_traceback.discard(writer)
            return _levels.TRACEBACK_LEVEL
        if _TRACEBACK_START(text) is not None:
            self._in_traceback.add(writer)
            return _levels.TRACEBACK_LEVEL
        return level_of(text)
