"""``--json``: one JSON object per logical line, for jq, Vector, Fluent Bit or Loki.

The schema is documented in docs/reader.md ("JSON lines").  Every object is one line of
ASCII (``json.dumps`` escapes the rest), so it cannot act on a terminal either.  The
message follows the rules of ``_message``: vLLM's decoration of the writer's own pid is
removed (its role is the ``role`` field) and colour sequences are dropped; ``raw_bytes``
keeps the payload as written.
"""

from __future__ import annotations

import base64
import json
from typing import BinaryIO

from ._dedup import Repeat
from ._message import drop_colours, level_of, undecorate
from ._records import Record
from ._terminal import BufferedPrinter

# The mark of a line (docs/format.md) as a word; skyrl_fdlog's own records are notes.
_KINDS = {":": "line", "+": "partial", "~": "snapshot"}


def line_object(line: Record, raw_bytes: bool = False) -> dict[str, object]:
    """The JSON object of one line (see the module)."""
    role, shown = undecorate(line.payload, line.pid) if line.parsed else (None, line.payload)
    shown = drop_colours(shown)
    message = line.payload if raw_bytes else shown
    try:
        text = message.decode("utf-8")
        binary = False
    except UnicodeDecodeError:
        text = message.decode("utf-8", "replace")
        binary = True
    parsed = line.parsed
    obj: dict[str, object] = {
        "time": line.ts if parsed else None,
        "node": line.node if parsed else None,
        "actor": line.name if parsed else None,
        "pid": line.pid if parsed else None,
        "role": role,
        "stream": line.stream if parsed else None,
        "kind": "note" if line.stream == "fdlog" else _KINDS[line.mark],
        "level": level_of(shown.decode("utf-8", "replace")),
        "message": text,
    }
    if binary:
        obj["message_b64"] = base64.b64encode(message).decode("ascii")
        obj["binary"] = True
    if line.malformed is not None:
        obj["malformed"] = line.malformed
    return obj


class JsonPrinter(BufferedPrinter):
    """Prints each line as a JSON object on its own line; a dedup summary as its latest
    line with ``"repeated": N``."""

    def __init__(self, out: BinaryIO, *, raw_bytes: bool, flush_each: bool = False) -> None:
        super().__init__(out, flush_each=flush_each)
        self._raw_bytes = raw_bytes

    def render(self, item: Record | Repeat) -> bytes:
        if isinstance(item, Repeat):
            obj = line_object(item.line, self._raw_bytes)
            obj["repeated"] = item.count
        else:
            obj = line_object(item, self._raw_bytes)
        return json.dumps(obj, separators=(",", ":")).encode("ascii")
