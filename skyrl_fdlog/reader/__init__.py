"""Read infra logs: parse records, rejoin split lines, merge per-node files by time.

The record format is specified in docs/format.md; this package is its reference reader, and
the reading half of skyrl_fdlog (the capture half writes the log).  It needs nothing but the
standard library of CPython 3.9 or later: reading a log needs no compiled capture core.

Where things are:

* ``_records``: :class:`Record`, the parser of the record format, and :class:`RecordReader`,
  the one read loop (read a block, split it into lines, parse them) every reader uses.
* ``_lines``: ``+`` chains rejoined into lines, levels, files merged by time.
* ``_tail``: reading back from the end of a file (:func:`tail`, :func:`read_back`).
* For the ``skyrl-fdlog`` CLI (skyrl_fdlog/cli.py): ``_follow`` (``tail -f``), ``_filters``
  (``--actor``, ``--since``, ``--grep``, ``--level``...), ``_dedup`` (``--dedup``),
  ``_terminal`` (printing safely), ``_jsonl`` (``--json``), ``_stats`` (``stats``) and
  ``_message`` (what a payload says: colours, vLLM's decoration, its level).

Guarantees:

* Streaming: memory is bounded by one read chunk (``CHUNK_BYTES``), the longest line of
  the file held whole (``CUT_BYTES``), the longest joined line (``MAX_LINE_BYTES``) and
  the joiner's pending chains (``max_pending_bytes``), never by the size of the file.
* Total: any bytes parse.  A line that does not match the format becomes a record with
  ``malformed="unparsable"`` whose payload is the whole line; a last line without its
  ``\\n`` (a cut file, or a record still being written) has ``malformed="truncated"``.
* Exact: joining the payloads of a ``+`` chain gives the original line's bytes; payloads
  are never decoded, so invalid UTF-8, NUL and escape sequences come back unchanged.

Typical use::

    from skyrl_fdlog.reader import iter_lines, tail

    for line in iter_lines("/tmp/skyrl-logs/infra-....log"):
        if line.name == "VLLMEngine" and not line.malformed:
            print(line.datetime, line.payload.decode(errors="replace"))

    for line in tail("/tmp/skyrl-logs/infra-....log", 20, actor="VLLMEngine*"):
        ...   # the engine's last 20 lines, read from the end of a file of any size
"""

from __future__ import annotations

from ._lines import (
    MAX_LINE_BYTES,
    MAX_PENDING_BYTES,
    LineJoiner,
    iter_lines,
    join_lines,
    merge_by_time,
    with_levels,
)
from ._message import LEVELS
from ._records import (
    CHUNK_BYTES,
    CUT_BYTES,
    LineSplitter,
    Malformed,
    Record,
    RecordParser,
    RecordReader,
    Source,
    iter_records,
    open_source,
)
from ._tail import Select, read_back, records_between, tail

__all__ = [
    "CHUNK_BYTES",
    "CUT_BYTES",
    "LEVELS",
    "MAX_LINE_BYTES",
    "MAX_PENDING_BYTES",
    "LineJoiner",
    "LineSplitter",
    "Malformed",
    "Record",
    "RecordParser",
    "RecordReader",
    "Select",
    "Source",
    "iter_lines",
    "iter_records",
    "join_lines",
    "merge_by_time",
    "open_source",
    "read_back",
    "records_between",
    "tail",
    "with_levels",
]
