"""Follow a growing log like ``tail -f``, or the newest run file of a log directory.

Guarantees:

* A record still being written (no ``\\n`` yet) is held until its ``\\n`` arrives, so no
  record is ever read in halves.
* A file that shrinks (truncated in place) is read again from its start, with a notice.
* Given a directory, the follower reads the newest ``infra-*.log`` and, when a run file
  that was not there before appears, drains the current file to its end and moves on to
  the new one from its start.  Like ``tail -f`` (not ``-F``), it keeps reading the file
  it opened even if that is renamed or deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .reader import CHUNK_BYTES, LineSplitter, Record, RecordParser

RUN_FILE_GLOB = "infra-*.log"


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
    ``on_notice`` gets a message for the user when the follower moves to a newer run file
    or finds its file truncated.
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

    def __iter__(self) -> Iterator[list[Record]]:
        parser = RecordParser()
        splitter = LineSplitter()
        stream = self._open(self._path, self._offset) if self._path is not None else None
        last_scan = 0.0
        try:
            while True:
                if stream is not None:
                    data = stream.read(CHUNK_BYTES)
                    if data:
                        yield [parser.parse(line) for line in splitter.feed(data)]
                        continue
                    if os.fstat(stream.fileno()).st_size < stream.tell():
                        self._notice(f"{self._path} was truncated; reading it from the start")
                        stream.seek(0)
                        splitter = LineSplitter()
                        continue
                if self._directory is not None and time.monotonic() - last_scan >= self._rescan_s:
                    last_scan = time.monotonic()
                    newer = self._newer_run_file()
                    if newer is not None:
                        if splitter.rest:  # the old run's last record never got its end
                            yield [parser.parse(splitter.rest, truncated=True)]
                            splitter = LineSplitter()
                        if stream is not None:
                            stream.close()
                        self._path = newer
                        self._notice(f"following {newer} (a newer run)")
                        stream = self._open(newer, 0)
                        continue
                yield []
                time.sleep(self._poll_s)
        finally:
            if stream is not None:
                stream.close()

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
