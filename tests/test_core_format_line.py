"""Records that Python writes itself (Ray's own lines on the driver, skyrl_fdlog/_ray_logs.py)
are formatted by the helper's own C (fdl_format_line in csrc/shared/record.c), so the record
format is written once: for the same lines they are the records the helper writes."""

from __future__ import annotations

from pathlib import Path

from conftest import run_python
from records import parse

# A short line, an empty one, one of exactly one record's payload (3,840 bytes), a long one
# that the helper leaves in fragments, and non-ASCII text.
LINES = ["hello", "", "x" * 3840, "y" * 9000, "caf\u00e9 \u2603 done"]


def written_by(log: Path, writer: str, name: str, node: str) -> list[tuple]:
    """Each line of LINES written to log (by the helper through redirect(), or by
    _ray_logs.LogWriter) from a child; the records' fields that do not depend on the writer
    or the time."""
    if writer == "helper":
        code = f"""
import os, skyrl_fdlog
skyrl_fdlog.redirect({str(log)!r}, name={name!r}, node={node!r})
for line in {LINES!r}:
    os.write(1, line.encode() + b"\\n")
skyrl_fdlog.restore()
"""
    else:
        code = f"""
from pathlib import Path
from skyrl_fdlog._ray_logs import LogWriter
writer = LogWriter(Path({str(log)!r}))
for line in {LINES!r}:
    writer.write_line({name!r}, {node!r}, "out", line)
writer.close()
"""
    run_python(code)
    records, bad = parse(log.read_bytes())
    assert bad == []
    assert len({record.pid for record in records}) == 1
    return [(r.node, r.name, r.stream, r.mark, r.payload) for r in records]


def test_driver_records_are_the_helpers(tmp_path):
    """The same lines, names and node give the same records (fragments cut at the same byte,
    names sanitised alike) whether the helper or _ray_logs writes them."""
    name, node = "ray driver/1", "node:10.0.0.1"
    by_python = written_by(tmp_path / "python.log", "python", name, node)
    assert by_python == written_by(tmp_path / "helper.log", "helper", name, node)
    assert [(mark, len(payload)) for *_, mark, payload in by_python[2:5]] == [
        (":", 3840),
        ("+", 3840),
        ("+", 3840),
    ]


def test_the_formatter_refuses_a_newline_and_a_short_buffer():
    """fdl_format_line refuses text with a newline (-EINVAL: a reader would take its rest for
    a record) and less room than its records may need (-ENOSPC); twice the text plus
    PIPE_BUF is always enough (fdlog.h)."""
    run_python("""
import errno
from skyrl_fdlog._fdlog import ffi, lib
out = ffi.new("unsigned char[]", 2 * 4000 + 4096)
def format(text, room):
    return lib.fdl_format_line(b"n", b"h", 1, 1, 0, text, len(text), out, room)
assert format(b"a\\nb", len(out)) == -errno.EINVAL
assert format(b"z" * 4000, 4096) == -errno.ENOSPC
assert format(b"z" * 4000, len(out)) > 0
""")
