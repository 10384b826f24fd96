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
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(
            f"invalid {option} value {text!r}: expected an ISO 8601 time such as "
            f"2026-11-27T02:47:06Z (UTC when no zone is given) or a duration ago such as "
            f"30s, 10m, 2h, 1d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp() * 1000)


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
