"""Which lines the CLI shows: writer filters, time bounds, a payload regex.

Writer fields (actor, pid, node, stream) are the same for every record of a chain, so
they are tested on records, before joining, which spares the joiner the rest; time and
regex need the whole line, so they are tested after it.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .reader import Record

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class FilterError(ValueError):
    """A filter value that cannot be used; the message names the value and the fix."""


def parse_time(text: str, option: str, now: _dt.datetime) -> int:
    """Milliseconds since the epoch for an ISO 8601 time or a duration ago (``10m``).

    A time without a zone is UTC, like every timestamp in the log.  Durations take
    ``s``, ``m``, ``h`` or ``d`` and count back from ``now``.
    """
    duration = _DURATION.fullmatch(text.strip())
    if duration is not None:
        seconds = float(duration.group(1)) * _UNIT_SECONDS[duration.group(2)]
        return int((now.timestamp() - seconds) * 1000)
    try:
        when = _fromisoformat(text.strip())
    except ValueError:
        raise FilterError(
            f"invalid {option} value {text!r}: expected an ISO 8601 time such as "
            f"2026-11-27T02:47:06Z (UTC when no zone is given) or a duration ago such as "
            f"30s, 10m, 2h, 1d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp() * 1000)


# Python 3.11's datetime.fromisoformat reads most of ISO 8601; before it, it read only what
# isoformat() writes (no "Z", no basic format, 3 or 6 fraction digits).  This is the 3.11
# grammar, for older Pythons.  Where 3.11 is laxer still, on malformed input (a fraction
# after the hour or the minutes, a stray character before the zone that it ignores), this
# refuses; it never reads a string otherwise than 3.11 does.
_ISO_DATETIME = re.compile(
    r"""
    (\d{4}) (-)?                            # year; the date has dashes throughout or none
    (?: (\d\d) (?(2)-) (\d\d)                # month, day
      | W (\d\d) (?: (?(2)-) (\d)             # or ISO week and weekday; like 3.11, read
                  (?(2)(?!\d)) )? )          # 2026-W48-512 as 2026-W48, "-", 512
    (?: .                                    # any one character, then the time:
        (\d\d) (?: (:?) (\d\d) (?: \8 (\d\d) (?: [.,] (\d+) )? )? )?
        (?: (Z)                              # and the zone
          | ([+-]) (\d\d) (?: (:?) (\d\d) (?: \15 (\d\d) (?: [.,] (\d+) )? )? )? )?
    )?
    """,
    re.ASCII | re.DOTALL | re.VERBOSE,
)


def _parse_iso_before_3_11(text: str) -> _dt.datetime:
    """``datetime.fromisoformat`` as Python 3.11 reads ISO 8601; see _ISO_DATETIME."""
    match = _ISO_DATETIME.fullmatch(text)
    if match is None:
        raise ValueError(f"Invalid isoformat string: {text!r}")
    (year, _, month, day, week, weekday, hour, _, minute, second, fraction,
     zulu, sign, tz_hour, _, tz_minute, tz_second, tz_fraction) = match.groups()
    if week is not None:
        date = _dt.date.fromisocalendar(int(year), int(week), int(weekday or 1))
    else:
        date = _dt.date(int(year), int(month), int(day))
    zone = None
    if zulu is not None:
        zone = _dt.timezone.utc
    elif sign is not None:
        offset = _dt.timedelta(hours=int(tz_hour), minutes=int(tz_minute or 0),
                               seconds=int(tz_second or 0),
                               microseconds=_microseconds(tz_fraction))
        zone = _dt.timezone(-offset if sign == "-" else offset)
    return _dt.datetime(date.year, date.month, date.day, int(hour or 0), int(minute or 0),
                        int(second or 0), _microseconds(fraction), zone)


def _microseconds(fraction: str | None) -> int:
    """A decimal fraction of a second in microseconds; digits past the sixth are dropped."""
    return int(fraction[:6].ljust(6, "0")) if fraction else 0


_fromisoformat: Callable[[str], _dt.datetime] = (
    _dt.datetime.fromisoformat if sys.version_info >= (3, 11) else _parse_iso_before_3_11
)


def compile_grep(pattern: str) -> re.Pattern[str]:
    """Compile a ``--grep`` regex, or raise FilterError naming it and the cause."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FilterError(f"invalid --grep regex {pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Filters:
    """The CLI's selection.  Empty sequences and None mean "no constraint".

    Actor and node values are shell-style patterns (``VLLM*``); several values of one
    option are alternatives.  Time bounds are inclusive and apply to a line's first
    record.  ``grep`` searches the payload decoded as UTF-8 (invalid bytes as U+FFFD).
    Lines without a writer (unparsable) pass only when no writer or time filter is set.
    """

    actors: Sequence[str] = ()
    pids: Sequence[int] = ()
    nodes: Sequence[str] = ()
    streams: Sequence[str] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    grep: re.Pattern[str] | None = None

    def record_test(self) -> Callable[[Record], bool] | None:
        """A predicate on records for the writer fields; None when nothing to test."""
        if not (self.actors or self.pids or self.nodes or self.streams):
            return None
        actor_ok = _matcher(self.actors)
        node_ok = _matcher(self.nodes)
        pids = frozenset(self.pids)
        streams = frozenset(self.streams)

        def test(record: Record) -> bool:
            return (
                record.parsed
                and (not pids or record.pid in pids)
                and (not streams or record.stream in streams)
                and actor_ok(record.name)
                and node_ok(record.node)
            )

        return test

    def line_test(self) -> Callable[[Record], bool] | None:
        """A predicate on joined lines for time and regex; None when nothing to test."""
        if self.since_ms is None and self.until_ms is None and self.grep is None:
            return None
        since = self.since_ms
        until = self.until_ms
        search = self.grep.search if self.grep is not None else None

        def test(line: Record) -> bool:
            if since is not None or until is not None:
                if not line.parsed:
                    return False
                if since is not None and line.time_ms < since:
                    return False
                if until is not None and line.time_ms > until:
                    return False
            return search is None or search(line.payload.decode("utf-8", "replace")) is not None

        return test


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A cached test of a name against shell patterns; always true for no patterns."""
    if not patterns:
        return lambda name: True

    # Names repeat on every record; the cache is bounded for files with many writers.
    @functools.lru_cache(maxsize=4096)
    def matches(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    return matches
