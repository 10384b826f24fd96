"""The ``skyrl-fdlog`` console script: cat, tail, stats and demo over infra logs.

Exit status: 0 on success; 1 when ``stats`` finds malformed records; 2 for a usage error
(a missing file, a bad regex or time), reported in one line that names the value, never
as a traceback; 130 on Ctrl-C; 141 when the reader of our output goes away (like a
command killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import errno
import json
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .reader import LEVELS, LineJoiner, Record, iter_records, merge_by_time, read_back
from .reader._dedup import DEFAULT_WINDOW_S, Deduplicator
from .reader._filters import FilterError, Filters, RecordTest, compile_grep, parse_time
from .reader._follow import Follower, last_newline_end, run_files
from .reader._jsonl import JsonPrinter
from .reader._stats import collect
from .reader._terminal import BufferedPrinter, Printer, use_color

PROG = "skyrl-fdlog"
# The lnav format for the record format, shipped as package data (docs/reader.md, "lnav").
LNAV_FORMAT = Path(__file__).resolve().parent / "lnav" / "skyrl_fdlog.json"
# In follow mode a line whose writer went quiet mid-line is shown as a partial line
# after this long (the writer itself flushes a partial line after 1 s idle).
PARTIAL_AFTER_S = 2.0
# The longest --dedup-window: past it, a window outlasts any log (about 31 years).
MAX_WINDOW_S = 1e9


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # demo hands everything after it to the demo, Hydra-style overrides included, so it is
    # dispatched before argparse could take an override for one of its own options.
    if args[:1] == ["demo"]:
        return _demo(args[1:])
    try:
        options = _parser().parse_args(args)
    except SystemExit as exc:  # --help (0), or argparse's own usage error (2)
        return 0 if exc.code is None else int(exc.code)
    run: Callable[[argparse.Namespace], int] = options.run
    try:
        return run(options)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read skyrl_fdlog infra logs: rejoined, filtered, safe to print."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    selection = argparse.ArgumentParser(add_help=False)
    group = selection.add_argument_group("selection (repeat an option for alternatives)")
    group.add_argument(
        "--actor",
        action="append",
        default=[],
        metavar="NAME",
        help="actor name or shell pattern such as 'VLLM*'",
    )
    group.add_argument("--pid", action="append", type=int, default=[])
    group.add_argument(
        "--node", action="append", default=[], metavar="NAME", help="node name or shell pattern"
    )
    group.add_argument("--stream", action="append", default=[], choices=("out", "err", "fdlog"))
    group.add_argument(
        "--since",
        metavar="TIME",
        help="ISO 8601 time (UTC unless it has a zone) or a duration ago (30s, 10m, 2h, 1d); inclusive",
    )
    group.add_argument("--until", metavar="TIME", help="like --since")
    group.add_argument("--grep", metavar="REGEX", help="Python regex searched in the payload")
    group.add_argument(
        "--level",
        choices=LEVELS,
        metavar="LEVEL",
        help="only lines of this level or graver: "
        + ", ".join(LEVELS)
        + " (a Python traceback counts as one error)",
    )

    display = argparse.ArgumentParser(add_help=False)
    group = display.add_argument_group("display")
    group.add_argument(
        "--no-prefix", action="store_true", help="print payloads only, one line per original line"
    )
    group.add_argument(
        "--json", action="store_true", help="print one JSON object per line (schema: docs/reader.md)"
    )
    group.add_argument(
        "--raw-bytes",
        action="store_true",
        help="print payload bytes as written, escape sequences and vLLM's (Name pid=N) included",
    )
    group.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour per actor, and the colours of payloads; auto: on a terminal, unless NO_COLOR is set",
    )
    group.add_argument(
        "--dedup", action="store_true", help="collapse a line that several writers repeat, as Ray does"
    )
    group.add_argument(
        "--dedup-window",
        type=_seconds,
        default=DEFAULT_WINDOW_S,
        metavar="SECONDS",
        help="how long repeats are held (default 5; by the log's time for cat "
        "and tail, by the reader's clock for tail -f)",
    )

    cat = commands.add_parser(
        "cat", parents=[selection, display], help="print logs, merged by time when several are given"
    )
    cat.add_argument("files", nargs="+", metavar="FILE", help="a log file, or - for stdin")
    cat.set_defaults(run=_cat)

    tail = commands.add_parser(
        "tail", parents=[selection, display], help="print the end of a log and follow it"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, metavar="N", help="how many lines to print first (default 10)"
    )
    tail.add_argument(
        "target",
        metavar="FILE|DIR",
        help="a log file, a log directory (its newest infra-*.log), or a pipe "
        "(- for stdin): read to its end, even with -f",
    )
    tail.set_defaults(run=_tail)

    stats = commands.add_parser("stats", help="counts per writer; status 1 if any record is malformed")
    stats.add_argument("files", nargs="+", metavar="FILE")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(run=_stats)

    lnav = commands.add_parser(
        "lnav-format",
        help='print the path of the lnav format file, for: lnav -i "$(skyrl-fdlog lnav-format)"',
    )
    lnav.set_defaults(run=_lnav_format)

    commands.add_parser(
        "demo",
        help="run the demo with every later argument (Hydra-style overrides such as trainer.log_path=/x)",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WINDOW_S:  # also false for nan and inf
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected seconds from 0 to {MAX_WINDOW_S:.0f}"
        )
    return seconds


# --- commands ---------------------------------------------------------------------------


def _cat(options: argparse.Namespace) -> int:
    filters = _filters(options)
    record_test = filters.record_test()
    output = _Output(options)
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(_open_input(name)) for name in options.files]
        per_file = [iter_records(stream) for stream in streams]
        records = per_file[0] if len(per_file) == 1 else merge_by_time(*per_file)
        output.show(_select(records, record_test, filters, LineJoiner(), finish=True))
    output.close()
    _tell_unmatched(record_test, output)
    return 0


def _tail(options: argparse.Namespace) -> int:
    if options.lines < 0:
        raise UsageError(f"invalid -n value {options.lines}: expected 0 or more lines")
    count = min(options.lines, sys.maxsize)  # more lines than a file can hold: all of them
    filters = _filters(options)
    record_test = filters.record_test()
    output = _Output(options)
    name = options.target
    mode = 0 if name == "-" else _mode(name)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # A pipe, a terminal or a FIFO (/dev/stdin, <(...)): no end to read back from, so
        # read it to its end, as GNU tail does; -f ends there too.
        with _open_input(name) as stream:
            last = collections.deque(
                _select(iter_records(stream), record_test, filters, LineJoiner(), True), count
            )
        output.show(last)
        output.close()
        _tell_unmatched(record_test, output)
        return 0
    target = Path(name)
    directory = target if stat.S_ISDIR(mode) else None
    files: list[Path] = []
    path: Path | None = target
    if directory is not None:
        files = run_files(directory)
        path = files[-1] if files else None
        if path is None and not options.follow:
            raise UsageError(f"no infra-*.log in {name!r}")

    joiner = LineJoiner()
    offset = 0
    if path is not None:
        lines, joiner, offset, whole = _last_lines(path, count, record_test, filters, options.follow)
        output.show(lines)
        if whole or not options.follow:  # every writer of the file was seen
            _tell_unmatched(record_test, output)
    if options.follow:
        follower = Follower(path, offset, directory=directory, known=files, on_notice=output.notice)
        _follow(follower, record_test, filters, joiner, output)
    output.close()
    return 0


def _mode(name: str) -> int:
    """The file type and mode of ``name``, or a UsageError naming it and why not."""
    try:
        return os.stat(name).st_mode
    except OSError as exc:
        raise UsageError(f"cannot read {name!r}: {exc.strerror or exc}") from None


def _follow(
    follower: Follower, record_test: RecordTest | None, filters: Filters, joiner: LineJoiner, output: _Output
) -> None:
    """Show what the follower reads until interrupted; idle polls release waiting lines."""
    line_test = filters.line_test()
    lines: Iterable[Record]
    for batch in follower:
        if batch:
            records = filter(record_test, batch) if record_test else batch
            lines = joiner.lines(records, finish=False)
        else:
            lines = joiner.flush_idle(PARTIAL_AFTER_S)
        output.show(filter(line_test, lines) if line_test else lines)
        output.tick(idle=not batch)


def _tell_unmatched(record_test: RecordTest | None, output: _Output) -> None:
    """Say on stderr which --actor and --node values matched no writer: an empty output
    then says nothing was written, not that the name was mistyped or cleaned."""
    for message in record_test.unmatched() if record_test is not None else ():
        output.notice(message)


def _stats(options: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(_open_input(name)) for name in options.files]
        stats = collect(merge_by_time(*map(iter_records, streams)))
    if options.json:
        print(json.dumps(stats.to_json(), indent=2))
    else:
        print(stats.render(), end="")
        if stats.records and stats.unparsable == stats.records:
            print('no record has the prefixed format: is this a fmt="raw" log?')
    if stats.malformed:
        print(f"{PROG}: {stats.malformed} malformed records", file=sys.stderr)
        return 1
    return 0


def _lnav_format(options: argparse.Namespace) -> int:
    print(LNAV_FORMAT)
    return 0


def _demo(overrides: list[str]) -> int:
    try:
        from .demo import main as demo_main  # imported here: it pulls in the capture core
    except ImportError as exc:
        print(f"{PROG}: error: the demo cannot start: {exc}", file=sys.stderr)
        return 2
    return demo_main(overrides)


# --- shared plumbing --------------------------------------------------------------------


def _filters(options: argparse.Namespace) -> Filters:
    now = _dt.datetime.now(_dt.timezone.utc)
    try:
        return Filters(
            actors=options.actor,
            pids=options.pid,
            nodes=options.node,
            streams=options.stream,
            since_ms=parse_time(options.since, "--since", now) if options.since else None,
            until_ms=parse_time(options.until, "--until", now) if options.until else None,
            grep=compile_grep(options.grep) if options.grep is not None else None,
            level=options.level,
        )
    except FilterError as exc:
        raise UsageError(str(exc)) from None


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class _Output:
    """The end of every command's pipeline: optional dedup, then the printer."""

    def __init__(self, options: argparse.Namespace) -> None:
        out = sys.stdout.buffer
        live = getattr(options, "follow", False)
        self._printer: BufferedPrinter
        if options.json:
            if options.no_prefix:
                raise UsageError(
                    "--json and --no-prefix cannot be combined: a JSON object "
                    "holds the payload as 'message'; give one of them"
                )
            # A log shipper reading tail -f --json gets every object as soon as it is read.
            self._printer = JsonPrinter(out, raw_bytes=options.raw_bytes, flush_each=live)
        else:
            self._printer = Printer(
                out,
                prefix=not options.no_prefix,
                raw_bytes=options.raw_bytes,
                color=use_color(options.color, out),
            )
        # Lines that arrive live are deduplicated by the reader's clock: a writer's clock
        # that is off must not hold repeats back or release them at once.
        self._dedup = (
            Deduplicator(options.dedup_window, clock=_monotonic_ms if live else None)
            if options.dedup
            else None
        )
        # While idle, nothing is written that could fail on a closed pipe; polling stdout
        # notices that its reader went away (POLLERR on a pipe, POLLHUP on a socket).
        self._closed_poll: select.poll | None = None
        with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test's buffer)
            poll = select.poll()
            poll.register(out.fileno(), 0)
            self._closed_poll = poll

    def show(self, lines: Iterable[Record]) -> None:
        write = self._printer.write
        if self._dedup is None:
            for line in lines:
                write(line)
        else:
            push = self._dedup.push
            for line in lines:
                for item in push(line):
                    write(item)

    def tick(self, idle: bool) -> None:
        """Make output visible; when idle, also close dedup windows that ended by the clock
        (no later line may come to close them)."""
        if idle and self._dedup is not None:
            for item in self._dedup.expire(_monotonic_ms()):
                self._printer.write(item)
        self._printer.flush()
        if idle and self._closed_poll is not None and self._closed_poll.poll(0):
            raise BrokenPipeError("the reader of the output went away")

    def notice(self, message: str) -> None:
        """Tell the user something about the reading itself, on stderr."""
        self._printer.flush()
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Print what dedup still holds, and flush."""
        if self._dedup is not None:
            for item in self._dedup.flush():
                self._printer.write(item)
        self._printer.flush()


@contextlib.contextmanager
def _open_input(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    if os.path.isdir(name):
        raise UsageError(f"{name!r} is a directory; give its log files, or use: {PROG} tail {name!r}")
    try:
        stream = open(name, "rb", buffering=0)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENXIO and stat.S_ISSOCK(os.stat(name).st_mode):
            reason = "it is a socket, not a file"  # open's ENXIO says "No such device"
        raise UsageError(f"cannot read {name!r}: {reason}") from None
    with stream:
        yield stream


def _select(
    records: Iterable[Record],
    record_test: RecordTest | None,
    filters: Filters,
    joiner: LineJoiner,
    finish: bool,
) -> Iterator[Record]:
    """The lines of ``records`` that pass ``record_test`` (made from ``filters``) and the
    filters' line test, joined by ``joiner``."""
    if record_test is not None:
        records = filter(record_test, records)
    lines = joiner.lines(records, finish)
    line_test = filters.line_test()
    return filter(line_test, lines) if line_test is not None else lines


def _last_lines(
    path: Path, count: int, record_test: RecordTest | None, filters: Filters, follow: bool
) -> tuple[list[Record], LineJoiner, int, bool]:
    """The last ``count`` selected lines of ``path``, the joiner holding the chains still
    open, the offset where reading stopped and whether the whole file was read.  When
    following, a record still being written is left for the follower."""
    with _open_input(str(path)) as stream:
        size = os.fstat(stream.fileno()).st_size
        end = last_newline_end(stream, size) if follow else size
        found, joiner, whole = read_back(
            stream,
            end,
            count,
            lambda records, joiner: _select(records, record_test, filters, joiner, not follow),
        )
    return found, joiner, end, whole
