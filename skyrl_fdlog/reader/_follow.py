"""Follow a growing log like ``tail -f``, or the newest run file of a log directory.

Guarantees:

* A record still being written (no ``\\n`` yet) is held until its ``\\n`` arrives, so no
  record is ever read in halves.
* A file cut back in place (logrotate's ``copytruncate``) is read again from its start,
  with a notice, even when it grew past the follower's offset again before the next poll:
  the follower keeps the last bytes it read (``BOUNDARY_BYTES``, a whole record) and
  checks they are still there before each read.  Lines written between the last read and
  the cut are in the copy, not in this file: the notice says they may be missing.
* Like ``tail -F``, it follows the path: when idle, it compares the file it reads with
  the one the path names (device and inode), and when the path names another file
  (logrotate's ``create`` mode, or a delete and re-create), it moves to that file from its
  start, with a notice, having read the old one to its end; it also reads on in the old
  one until that has been quiet for ``LEFT_QUIET_S``, for the writers that reopen the path
  late.  While the path names nothing it reads on in the file it has.
* Given a directory, the follower reads the newest ``infra-*.log`` and, when a run file
  that was not there before appears, drains the current file to its end and moves on to
  the new one from its start.
* Paths in notices are escaped as payloads are, so a file name cannot act on a terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ._records import Record, RecordReader
from ._terminal import shown_path

RUN_FILE_GLOB = "infra-*.log"
# A rotated file the follower moved away from is read on until it has been quiet this
# long: each actor's helper reopens the path on its own, about a second or two after the
# rotation, and writes to the old file until then.
LEFT_QUIET_S = 5.0
# How many bytes before its read position the follower checks to see that the file was
# not cut back and rewritten: one record at most (PIPE_BUF), so a whole record with its
# timestamp and pid, which a new file will hardly repeat at the same offset.
BOUNDARY_BYTES = 4096


def run_files(directory: Path) -> list[Path]:
    """The run files (``infra-*.log``) in ``directory``, oldest first by mtime, then name."""
    files = []
    for path in directory.glob(RUN_FILE_GLOB):
        try:
            files.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:  # removed between the listing and the stat
            continue
    return [path for _, _, path in sorted(files)]


def last_newline_end(stream: BinaryIO, size: int, block: int = 1 << 16) -> int:
    """The offset just after the last ``\\n`` in the first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        stream.seek(start)
        data = stream.read(end - start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


class Follower:
    """Iterates over the records appended to a file: a batch of records per read, and an
    empty batch after every idle poll (the caller's cue to flush and expire).

    ``path`` is the file to start with (None: wait for a run file in ``directory``) and
    ``offset`` where to start in it; it must be the start of a line.  ``known`` are the
    run files that were there when ``path`` was chosen: any other is a newer run.
    ``on_notice`` gets a message for the user when the follower moves to another file or
    finds its file truncated or gone.
    """

    def __init__(
        self,
        path: Path | None,
        offset: int,
        *,
        directory: Path | None,
        known: Iterable[Path] = (),
        on_notice: Callable[[str], None],
        poll_s: float = 0.2,
        rescan_s: float = 1.0,
    ) -> None:
        self._path = path
        self._offset = offset
        self._directory = directory
        self._known = set(known)
        self._notice = on_notice
        self._poll_s = poll_s
        self._rescan_s = rescan_s
        self._boundary = b""  # the last bytes read, up to BOUNDARY_BYTES
        self._path_gone = False  # said that the path names nothing

    def __iter__(self) -> Iterator[list[Record]]:
        reading = RecordReader(self._open(self._path, self._offset)) if self._path is not None else None
        if reading is not None:
            self._boundary = self._bytes_before(reading.stream)
        left: _LeftFile | None = None
        last_scan = 0.0
        try:
            while True:
                if reading is not None:
                    if not self._still_there(reading.stream):
                        cut_off = reading.finish()  # a record cut off by the truncation
                        if cut_off:
                            yield cut_off
                        self._notice(
                            f"{self._shown_path()} was truncated; reading it again "
                            f"from its start (lines written to it just before it was "
                            f"cut may be missing here)"
                        )
                        reading.stream.seek(0)
                        self._boundary = b""
                        continue
                    records = reading.read()
                    if records is not None:
                        self._boundary = (self._boundary + reading.data[-BOUNDARY_BYTES:])[-BOUNDARY_BYTES:]
                        yield list(records)
                        continue
                    replacement = self._replacement(reading.stream)
                    if replacement is not None:
                        yield from _close(left)
                        left = _LeftFile(reading)
                        reading, self._boundary = RecordReader(replacement), b""
                        self._notice(
                            f"{self._shown_path()} now names another file (rotated "
                            f"or re-created); following it from its start"
                        )
                        continue
                if left is not None:
                    records = left.reading.read()
                    if records is not None:
                        left.last_data = time.monotonic()
                        yield list(records)
                        continue
                    if time.monotonic() - left.last_data >= LEFT_QUIET_S:
                        yield from _close(left)
                        left = None
                if self._directory is not None and time.monotonic() - last_scan >= self._rescan_s:
                    last_scan = time.monotonic()
                    newer = self._newer_run_file()
                    opened = self._open_newer(newer) if newer is not None else None
                    if newer is not None and opened is not None:
                        # Another run is another log: the old one is not read on.
                        yield from _close(left)
                        left = None
                        if reading is not None:
                            yield from _close(_LeftFile(reading))
                        self._path = newer
                        self._notice(f"following {shown_path(newer)} (a newer run)")
                        reading, self._boundary = RecordReader(opened), b""
                        continue
                yield []
                time.sleep(self._poll_s)
        finally:
            for open_reading in (reading, left.reading if left is not None else None):
                if open_reading is not None:
                    open_reading.stream.close()

    def _shown_path(self) -> str:
        """The path being read, as safe to print."""
        return shown_path(self._path) if self._path is not None else "no file"

    def _still_there(self, stream: BinaryIO) -> bool:
        """Whether the bytes last read still lie just before the read position: false when
        the file was cut back, whether or not it has grown past the position since."""
        return self._bytes_before(stream, len(self._boundary)) == self._boundary

    @staticmethod
    def _bytes_before(stream: BinaryIO, count: int = BOUNDARY_BYTES) -> bytes:
        position = stream.tell()
        count = min(count, position)
        return os.pread(stream.fileno(), count, position - count) if count else b""

    def _replacement(self, stream: BinaryIO) -> BinaryIO | None:
        """The file the path names now, opened, when it is not the one being read."""
        assert self._path is not None
        try:
            named = os.stat(self._path)
        except OSError as exc:
            if not self._path_gone:
                self._notice(
                    f"{shown_path(self._path)} is gone ({exc.strerror}); reading on in "
                    f"the file it named until a file appears at its path"
                )
            self._path_gone = True
            return None
        self._path_gone = False
        reading = os.fstat(stream.fileno())
        if (named.st_dev, named.st_ino) == (reading.st_dev, reading.st_ino):
            return None
        try:
            return self._open(self._path, 0)
        except OSError:  # gone again, or not readable yet: look again at the next poll
            return None

    def _open_newer(self, path: Path) -> BinaryIO | None:
        """A newer run file opened, or None (said on stderr) when it cannot be read."""
        try:
            return self._open(path, 0)
        except OSError as exc:
            self._notice(
                f"cannot read {shown_path(path)} ({exc.strerror or exc}); staying with {self._shown_path()}"
            )
            return None

    def _newer_run_file(self) -> Path | None:
        assert self._directory is not None
        files = run_files(self._directory)
        new = [path for path in files if path not in self._known]
        self._known.update(new)
        return new[-1] if new else None

    @staticmethod
    def _open(path: Path, offset: int) -> BinaryIO:
        stream = open(path, "rb", buffering=0)
        stream.seek(offset)
        return stream


class _LeftFile:
    """A rotated file the follower moved away from, still read for what its writers add
    before they reopen the path."""

    def __init__(self, reading: RecordReader) -> None:
        self.reading = reading
        self.last_data = time.monotonic()


def _close(left: _LeftFile | None) -> Iterator[list[Record]]:
    """Stop reading a left file: its last record, if it never got its end, comes out."""
    if left is None:
        return
    cut_off = left.reading.finish()
    if cut_off:
        yield cut_off
    left.reading.stream.close()
