"""Which lines the CLI shows: writer filters, time bounds, a payload regex.

Writer fields (actor, pid, node, stream) are the same for every record of a chain, so
they are tested on records, before joining, which spares the joiner the rest; time and
regex need the whole line, so they are tested after it.

Actor and node patterns are cleaned as the writer cleans names before it writes them
(csrc/shared/record.c, docs/format.md), so the name a user knows (the Ray actor name
``policy worker/0``) finds the records, where the name is ``policy_worker_0``.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._message import LevelTracker, at_least
from ._records import Record

# The bytes a written name keeps (docs/format.md); every other byte became "_".  Node
# names cannot hold ":".  Names are cut to NAME_MAX bytes (FDL_NAME_MAX in csrc).
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ACTOR_NAME_BYTES = _NAME_BYTES | {ord(":")}
NAME_MAX = 64
# The wildcards of fnmatch: *, ? and a bracket set ("[!...]", "[]...]" included); a "["
# without its "]" is a plain character.
_WILDCARD = re.compile(r"(\*|\?|\[!?\]?[^\]]*\])")

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
    (
        year,
        _,
        month,
        day,
        week,
        weekday,
        hour,
        _,
        minute,
        second,
        fraction,
        zulu,
        sign,
        tz_hour,
        _,
        tz_minute,
        tz_second,
        tz_fraction,
    ) = match.groups()
    if week is not None:
        date = _dt.date.fromisocalendar(int(year), int(week), int(weekday or 1))
    else:
        date = _dt.date(int(year), int(month), int(day))
    zone = None
    if zulu is not None:
        zone = _dt.timezone.utc
    elif sign is not None:
        offset = _dt.timedelta(
            hours=int(tz_hour),
            minutes=int(tz_minute or 0),
            seconds=int(tz_second or 0),
            microseconds=_microseconds(tz_fraction),
        )
        zone = _dt.timezone(-offset if sign == "-" else offset)
    return _dt.datetime(
        date.year,
        date.month,
        date.day,
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        _microseconds(fraction),
        zone,
    )


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
    record.  ``grep`` searches the payload as every output shows it (``_message.view``:
    without vLLM's decoration of its own pid and without colour sequences), decoded as
    UTF-8 (invalid bytes as U+FFFD), so ``^ERROR`` finds vLLM's coloured error lines.
    Lines without a writer (unparsable) pass only when no writer or time filter is set.
    """

    actors: Sequence[str] = ()
    pids: Sequence[int] = ()
    nodes: Sequence[str] = ()
    streams: Sequence[str] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    grep: re.Pattern[str] | None = None
    level: str | None = None
    """Only lines of this level or graver (a traceback as one block of level error)."""

    def record_test(self) -> RecordTest | None:
        """A predicate on records for the writer fields; None when nothing to test."""
        if not (self.actors or self.pids or self.nodes or self.streams):
            return None
        return RecordTest(self)

    def line_test(self) -> Callable[[Record], bool] | None:
        """A predicate on joined lines for time and regex; None when nothing to test."""
        if self.since_ms is None and self.until_ms is None and self.grep is None and self.level is None:
            return None
        since = self.since_ms
        until = self.until_ms
        search = self.grep.search if self.grep is not None else None
        threshold = self.level
        # Every line passes the tracker, whatever else rejects it: a traceback's block
        # is known only from its first line on.
        tracker = LevelTracker()

        def test(line: Record) -> bool:
            if threshold is not None:
                level = tracker.level(line.shown_text(), (line.node, line.pid, line.stream))
                if not at_least(level, threshold):
                    return False
            if since is not None or until is not None:
                if not line.parsed:
                    return False
                if since is not None and line.time_ms < since:
                    return False
                if until is not None and line.time_ms > until:
                    return False
            return search is None or search(line.shown_text()) is not None

        return test


def written_as(pattern: str, option: str) -> str:
    """``pattern`` as the writer would have written it: outside wildcards, every byte of
    its UTF-8 that a name cannot hold becomes ``_``; a pattern without wildcards is also
    cut to NAME_MAX bytes.  ``option`` is ``--actor`` or ``--node``."""
    keep = _ACTOR_NAME_BYTES if option == "--actor" else _NAME_BYTES
    parts = _WILDCARD.split(pattern)
    for i in range(0, len(parts), 2):  # the even parts are plain text
        raw = parts[i].encode("utf-8", "surrogateescape")
        parts[i] = "".join(chr(byte) if byte in keep else "_" for byte in raw)
    cleaned = "".join(parts)
    return cleaned[:NAME_MAX] if len(parts) == 1 else cleaned


class _NameMatcher:
    """Tests a name against the patterns of one option, remembering which of them
    matched some name, to tell the user about those that never did."""

    def __init__(self, option: str, patterns: Sequence[str]) -> None:
        self.option = option
        self._patterns = {pattern: written_as(pattern, option) for pattern in patterns}
        self._matched: set[str] = set()
        self.active = bool(patterns)
        # Names repeat on every record; the cache is bounded for files with many writers.
        self.matches = functools.lru_cache(maxsize=4096)(self._match)

    def _match(self, name: str) -> bool:
        hits = {given for given, cleaned in self._patterns.items() if fnmatch.fnmatchcase(name, cleaned)}
        self._matched |= hits
        return bool(hits)

    def unmatched(self) -> list[str]:
        """A message for each pattern that matched no name so far."""
        return [
            f"{self.option} {given!r} matched no writer"
            + (f" (names are written as {cleaned!r})" if cleaned != given else "")
            for given, cleaned in self._patterns.items()
            if given not in self._matched
        ]


class RecordTest:
    """The writer-field test on records, with what it found: see :meth:`unmatched`."""

    def __init__(self, filters: Filters) -> None:
        self._actors = _NameMatcher("--actor", filters.actors)
        self._nodes = _NameMatcher("--node", filters.nodes)
        self._pids = frozenset(filters.pids)
        self._streams = frozenset(filters.streams)

    def __call__(self, record: Record) -> bool:
        return (
            record.parsed
            and (not self._pids or record.pid in self._pids)
            and (not self._streams or record.stream in self._streams)
            and (not self._actors.active or self._actors.matches(record.name))
            and (not self._nodes.active or self._nodes.matches(record.node))
        )

    def unmatched(self) -> list[str]:
        """Messages naming each --actor and --node value that matched no writer among the
        records tested so far (those that passed --pid and --stream)."""
        return self._actors.unmatched() + self._nodes.unmatched()
