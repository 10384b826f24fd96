"""Every setting of redirect(), once: its argument, its environment variable, its default and
what it accepts, with the error that names the value at fault.

redirect() takes each of its settings from here: the argument when given, else the variable
when set, else the default.  Those passed on to the helper program are also rows of
csrc/shared/settings.h, which writes and parses its command line; the helper has no defaults
of its own.  Adding a setting: a row here and, when the helper needs it, a row there (plus the
field in csrc/fdlog.h).

Pure Python: skyrl_fdlog._paths needs MODE where the C core is not built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: `argument` of redirect() (None: the variable alone sets it), `variable`
    (None: the argument alone), `default`, `valid` (whether a value is acceptable), `parse`
    (the variable's text into a value; ValueError when it is none), and the words of the
    errors: an argument `must be` ..., a variable `written` ..., `unset` gives ..., an argument
    is shown by `show`."""

    argument: str | None
    variable: str | None
    default: T
    valid: Callable[[Any], bool]
    parse: Callable[[str], T]
    must_be: str
    written: str
    unset: str
    show: Callable[[Any], str] = repr  # an argument in an error

    def value(self, given: T | None = None) -> T:
        """given when it is not None (checked), else the variable's value when it is set and
        not blank, else the default."""
        if given is not None:
            if not self.valid(given):
                raise ValueError(f"{self.argument} must be {self.must_be}, got {self.show(given)}")
            return given
        text = os.environ.get(self.variable, "").strip() if self.variable else ""
        if not text:
            return self.default
        try:
            value = self.parse(text)
        except ValueError:
            pass
        else:
            if self.valid(value):
                return value
        raise ValueError(f"{self.variable} must be {self.written}, got {text!r}; unset it for {self.unset}")


def check_choice(argument: str, value: str, choices: tuple[str, ...]) -> None:
    """ValueError naming argument unless value is one of choices."""
    if value not in choices:
        raise ValueError(f"{argument} must be {_one_of(choices, repr)}, got {value!r}")


def _one_of(choices: tuple[str, ...], show: Callable[[str], str] = str) -> str:
    return "one of " + ", ".join(map(show, choices))


def _choice(argument: str | None, variable: str | None, choices: tuple[str, ...]) -> Setting[str]:
    return Setting(
        argument,
        variable,
        choices[0],
        lambda value: value in choices,
        str,
        must_be=_one_of(choices, repr),
        written=_one_of(choices),
        unset=f"the default ({choices[0]})",
    )


def _argument_only(argument: str, default: T, valid: Callable[[Any], bool], must_be: str) -> Setting[T]:
    """A setting of redirect() that no variable sets."""
    return Setting(argument, None, default, valid, type(default), must_be=must_be, written="", unset="")


def _variable_only(
    variable: str,
    default: T,
    valid: Callable[[Any], bool],
    parse: Callable[[str], T],
    written: str,
    unset: str,
) -> Setting[T]:
    """A setting that only its environment variable sets (no argument of redirect())."""
    return Setting(None, variable, default, valid, parse, must_be="", written=written, unset=unset)


def _switch(variable: str, default: bool, meaning: str) -> Setting[bool]:
    def parse(text: str) -> bool:
        if text.lower() in _TRUE_WORDS + _FALSE_WORDS:
            return text.lower() in _TRUE_WORDS
        raise ValueError(text)

    return Setting(
        None,
        variable,
        default,
        lambda value: isinstance(value, bool),
        parse,
        must_be="True or False",
        written="1 or 0 (true/false, yes/no, on/off)",
        unset=f"the default ({int(default)}: {meaning})",
    )


def _whole(value: Any, low: int, high: float = float("inf")) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _size(text: str) -> int:
    """Bytes, or with a K, M, G or T suffix: 20G."""
    number = text.rstrip("KMGTkmgt")
    unit = text[len(number) :].upper()
    if not number.isdigit() or unit not in _SIZE_UNITS:
        raise ValueError(text)
    return int(number) * _SIZE_UNITS[unit]


def _mode(value: Any) -> bool:
    """A file mode that lets the owner read and write: a helper reopens the file after
    logrotate."""
    return _whole(value, 0, 0o777) and value & 0o600 == 0o600


FMT = _choice("fmt", None, ("prefixed", "raw"))
LOCK = _choice("lock", None, ("auto", "always", "never"))
# Which lines the helper also copies to the original stderr (the terminal, through Ray):
# "error" (records of level error or graver, skyrl_fdlog/levels.json) or "off".
SURFACE_CHOICES = ("error", "off")
SURFACE = _choice("surface", "SKYRL_FDLOG_SURFACE", SURFACE_CHOICES)
IDLE_FLUSH = _argument_only("idle_flush", 1.0, _seconds, "a number of seconds, 0 or more")
SNAPSHOT_INTERVAL = _argument_only("snapshot_interval", 5.0, _seconds, "a number of seconds, 0 or more")
BUFFER_BYTES = _argument_only(
    "buffer_bytes", 4 << 20, lambda value: _whole(value, 1), "a positive number of bytes"
)
# New log files get this mode and new directories the same plus search permission where it
# grants read (0640 -> 0750), both masked by the umask.  0640 keeps other users out; nodes
# that write one shared filesystem under different uids need group or world write, e.g. 0664.
MODE: Setting[int] = Setting(
    "mode",
    "SKYRL_FDLOG_MODE",
    0o640,
    _mode,
    lambda text: int(text, 8),
    must_be="a file mode from 0o600 to 0o777 that lets the owner read and write (0o640, 0o664, ...)",
    written="an octal file mode from 0600 to 0777 that lets the owner read and write, such as 0640 or 0664",
    unset="the default (0640)",
    show=lambda value: oct(value) if isinstance(value, int) else repr(value),
)
# 0: no cap.
MAX_BYTES: Setting[int] = Setting(
    "max_bytes",
    "SKYRL_FDLOG_MAX_BYTES",
    0,
    lambda value: _whole(value, 1),
    _size,
    must_be="a positive number of bytes, or None for no cap (or SKYRL_FDLOG_MAX_BYTES)",
    written="a number of bytes, optionally with a K, M, G or T suffix (20G)",
    unset="no cap",
)
# The longest the helper lets output gather after a wakeup before reading it; it adapts below
# this to the writers (csrc/helper/helper.c, "The gather window adapts"; benchmarks/ tune it).
GATHER_US = _variable_only(
    "SKYRL_FDLOG_GATHER_US",
    2000,
    lambda value: _whole(value, 0, 1_000_000),
    int,
    "a whole number of microseconds from 0 to 1000000",
    "the default (2000)",
)
HELPER = _variable_only(
    "SKYRL_FDLOG_HELPER",
    str(Path(__file__).with_name("skyrl-fdlog-helper")),
    lambda value: isinstance(value, str),
    str,
    "the path of a skyrl-fdlog-helper program",
    "the one installed with skyrl_fdlog",
)
PYTHON_PIPES = _switch("SKYRL_FDLOG_PYTHON_PIPES", True, "Python output through pipes")
# The helper's stderr, else /dev/null, kept in LOG.helper-PID.stderr for diagnosis.
DEBUG = _switch("SKYRL_FDLOG_DEBUG", False, "the helper's stderr goes to /dev/null")
