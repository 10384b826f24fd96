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
  says ``None`` for anything else.

The file is never changed: these are views for reading, and ``--raw-bytes`` shows the
bytes as written.  Standard library only, like the reader.
"""

from __future__ import annotations

import re

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
# Written once, per level, in the regex dialect that Python's re and lnav's PCRE2 share:
# the lnav format (skyrl_fdlog/lnav/skyrl_fdlog.json) holds LNAV_LEVELS, and a test
# checks that it matches this table.
_LEVEL_START = r"(?:\([A-Za-z_][A-Za-z0-9_.-]*(?: rank=\d+)? pid=\d+\) )?"


def _level_formats(words: str, letter: str, dated_words: str) -> str:
    return (
        rf"(?:{words}):"
        rf"|(?:{words}) \d\d-\d\d \d\d:\d\d:\d\d\b"
        rf"|\d{{4}}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?\s+(?:{dated_words})\b"
        rf"|\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+ {letter} \d+ \d+\]"
        rf"|(?:\[rank\d+\]:)?\[?{letter}\d{{4}} \d\d:\d\d:\d\d\.\d{{6,9}}[ \]]"
    )


_LEVEL_FORMATS = {
    "debug": _level_formats("DEBUG", "D", "DEBUG"),
    "info": _level_formats("INFO", "I", "INFO"),
    "warning": _level_formats("WARNING", "W", "WARNING|WARN"),
    "error": _level_formats("ERROR", "E", "ERROR"),
    "critical": _level_formats("CRITICAL", "F", "CRITICAL|FATAL"),
}
#: The level patterns of the lnav format, one anchored regex per lnav level.
LNAV_LEVELS = {level: f"^{_LEVEL_START}(?:{formats})" for level, formats in _LEVEL_FORMATS.items()}
_LEVEL = re.compile(
    _LEVEL_START + "(?:" + "|".join(f"(?P<{level}>{formats})"
                                    for level, formats in _LEVEL_FORMATS.items()) + ")",
    re.ASCII,
)


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
    return role, payload[match.end():]


def view(payload: bytes, pid: int) -> tuple[str | None, bytes]:
    """The role and the payload as every output format shows it: vLLM's decoration
    removed (see :func:`undecorate`) and colours dropped."""
    role, payload = undecorate(payload, pid)
    return role, drop_colours(payload)


def level_of(text: str) -> str | None:
    """``debug``, ``info``, ``warning``, ``error`` or ``critical`` for a line in a known
    format (see the module), else None; colours in ``text`` are ignored."""
    if "\x1b[" in text:
        text = _COLOUR_STR.sub("", text)
    match = _LEVEL.match(text)
    return match.lastgroup if match is not None else None
