"""The level table (levels.json) expanded into whole patterns, for every side that classifies.

Standard library only, and importable on its own by path: the reader (``_message``) uses it
through the package, the build (``_build.py``, run by path before the package exists) to
generate csrc/shared/levels.h for the log helper.  So the helper and the reader read one table.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # the standard library's own regex parser, which reads the table's dialect too
    sre = importlib.import_module("re._constants")
    sre_parse = importlib.import_module("re._parser")
except ImportError:  # Python 3.9 and 3.10 name it so
    sre = importlib.import_module("sre_constants")
    sre_parse = importlib.import_module("sre_parse")

TABLE_PATH = Path(__file__).resolve().with_name("levels.json")
_TABLE = json.loads(TABLE_PATH.read_text(encoding="utf-8"))

#: The levels from the lowest to the highest.
ORDER: tuple[str, ...] = tuple(_TABLE["order"])
_DECORATION = "^" + _TABLE["decoration"]


def _filled(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"<{key}>", value)
    return template


#: Per level, in ORDER, the pattern that recognises it at a line's start (anchored).
AT_START: dict[str, str] = {
    level: _DECORATION
    + "("
    + "|".join(
        _filled(template, _TABLE["at_start"]["levels"][level]) for template in _TABLE["at_start"]["formats"]
    )
    + ")"
    for level in ORDER
    if level in _TABLE["at_start"]["levels"]
}
#: Per level, a pattern searched anywhere in lines that AT_START left without a level.
ANYWHERE: dict[str, str] = {
    level: "(" + "|".join(_TABLE["anywhere"][level]) + ")" for level in ORDER if level in _TABLE["anywhere"]
}
#: The first line of a Python traceback, and the lines that go on with it.
TRACEBACK_START = _DECORATION + _TABLE["traceback"]["start"]
TRACEBACK_INSIDE = _DECORATION + _TABLE["traceback"]["inside"]
TRACEBACK_LEVEL = "error"


# The cheap test before a pattern (see c_header): how far a shape follows a line's start.
SHAPE_LENGTH = 8


def _byte_set(op: Any, argument: Any) -> frozenset[int] | None:
    """The bytes one position of a pattern can be: only for a literal or a small set of
    printable bytes (a negated set or a class can be a multi-byte character: None)."""
    if op is sre.LITERAL:
        found: set[int] = {argument}
    elif op is sre.IN:
        found = set()
        for kind, value in argument:
            if kind is sre.LITERAL:
                found.add(value)
            elif kind is sre.RANGE:
                found.update(range(value[0], value[1] + 1))
            else:
                return None
    else:
        return None
    return frozenset(found) if all(0x20 <= b <= 0x7E or b == 0x09 for b in found) else None


Shape = tuple[frozenset[int], ...]


def _shapes(items: list[Any], shape: Shape = ()) -> Iterator[Shape]:
    """For an anchored pattern, every way a match can start: per path through it, the set of
    bytes each of its first positions can be, cut short (never wrong, only less strict) where
    the path stops being one byte per position or after SHAPE_LENGTH positions."""
    if not items or len(shape) == SHAPE_LENGTH:
        yield shape
        return
    (op, argument), rest = items[0], items[1:]
    if op is sre.AT:
        yield from _shapes(rest, shape) if argument is sre.AT_BEGINNING else iter([shape])
    elif op is sre.SUBPATTERN:
        yield from _shapes(list(argument[-1]) + rest, shape)
    elif op is sre.BRANCH:
        for alternative in argument[1]:
            yield from _shapes(list(alternative) + rest, shape)
    elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, item = argument
        if (low, high) == (0, 1):
            yield from _shapes(rest, shape)
            yield from _shapes(list(item) + rest, shape)
        else:  # a fixed count goes on; after a variable one the next position is unknown
            yield from _shapes(list(item) * low + (rest if high == low else []), shape)
    else:
        byte_set = _byte_set(op, argument)
        if byte_set is None:
            yield shape
        else:
            yield from _shapes(rest, shape + (byte_set,))


def _literals(items: list[Any]) -> list[bytes] | None:
    """For a searched pattern, strings one of which every match holds: per alternative, the
    literal characters right after a '^' (marked by a leading byte 3: at the line's start),
    else its longest run of literal characters; None when an alternative has no run of 3."""
    if len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        return _literals(list(items[0][1][-1]))
    if len(items) == 1 and items[0][0] is sre.BRANCH:
        found = [_literals(list(alternative)) for alternative in items[0][1][1]]
        return None if any(f is None for f in found) else [s for f in found if f for s in f]
    runs: list[list[int]] = [[]]
    for op, argument in items:
        if op is sre.LITERAL:
            runs[-1].append(argument)
        else:
            runs.append([])
    anchored = items[:1] == [(sre.AT, sre.AT_BEGINNING)] and len(runs[1]) >= 3
    longest = runs[1] if anchored else max(runs, key=len)
    return [b"\3" * anchored + bytes(longest)] if len(longest) >= 3 else None


def gate(pattern: str) -> tuple[str, list[bytes]] | None:
    """What a line needs before the pattern can match it: ("shapes", [...]) a start like one of
    the shapes (each its byte sets, each set followed by a byte 1), ("literals", [...]) one of
    the strings somewhere in it; None: nothing cheap to test."""
    items = list(sre_parse.parse(pattern))
    if items and items[0] == (sre.AT, sre.AT_BEGINNING):
        shapes = sorted({b"".join(bytes(sorted(s)) + b"\1" for s in shape) for shape in _shapes(items)})
        return None if b"" in shapes else ("shapes", shapes)
    literals = _literals(items)
    return None if literals is None else ("literals", sorted(set(literals)))


def _c_bytes(data: bytes) -> str:
    """A C string literal of data: printable ASCII as is, other bytes as octal escapes."""
    return (
        '"' + "".join(chr(b) if 0x20 <= b <= 0x7E and b not in b'"\\?' else f"\\{b:03o}" for b in data) + '"'
    )


def c_header() -> str:
    """csrc/shared/levels.h: the same patterns as C string literals, levels numbered from 1 in
    ORDER, each with its gate (see gate()): levels.c runs a pattern only on lines that pass."""

    def literal(pattern: str) -> str:
        if any(not (" " <= ch <= "~" or ch == "\t") for ch in pattern):
            raise ValueError(
                f"{TABLE_PATH}: pattern {pattern!r} holds a character other than "
                f"printable ASCII or a tab; write it as a bracket set or escape"
            )
        return json.dumps(pattern)  # for printable ASCII and tab, a valid C string literal

    def entry(level: str, anywhere: int, pattern: str) -> str:
        kind, strings = gate(pattern) or ("", [])
        shapes = _c_bytes(b"".join(s + b"\2" for s in strings)) if kind == "shapes" else "NULL"
        literals = _c_bytes(b"".join(s + b"\1" for s in strings)) if kind == "literals" else "NULL"
        return (
            f"{{{ORDER.index(level) + 1}, {anywhere}, {literal(pattern)},\n     {shapes},\n     {literals}}}"
        )

    every = [*AT_START.values(), *ANYWHERE.values(), TRACEBACK_START, TRACEBACK_INSIDE]
    gates = [gate(pattern) or ("", []) for pattern in every]
    most = {kind: max(len(strings) for k, strings in gates if k == kind) for kind in ("shapes", "literals")}
    rows = [f"    {entry(level, 0, pattern)}," for level, pattern in AT_START.items()]
    rows += [f"    {entry(level, 1, pattern)}," for level, pattern in ANYWHERE.items()]
    return "\n".join(
        [
            "/* Generated by skyrl_fdlog/_build.py from skyrl_fdlog/levels.json at every build: edit",
            " * the table there, not this file.  Levels: "
            + ", ".join(f"{i + 1} {level}" for i, level in enumerate(ORDER))
            + ". */",
            "#ifndef FDLOG_LEVELS_H",
            "#define FDLOG_LEVELS_H",
            "",
            *(f"#define FDL_LEVEL_{level.upper()} {i + 1}" for i, level in enumerate(ORDER)),
            f"#define FDL_LEVEL_TRACEBACK FDL_LEVEL_{TRACEBACK_LEVEL.upper()}",
            "",
            "#ifdef FDL_LEVELS_TABLE /* the table itself, for levels.c alone */",
            "struct fdl_level_pattern {",
            "    int level;",
            "    int anywhere; /* 0: matched at the line's start (anchored), 1: searched */",
            "    const char *pattern;",
            "    /* Every line the pattern matches passes this test (none when both are NULL): */",
            "    const char *shapes;   /* it starts like one shape: byte sets each ended by \\1,",
            "                           * shapes each ended by \\2 */",
            "    const char *literals; /* it holds one of these, each ended by \\1; one that starts",
            "                           * with \\3 only at its start */",
            "};",
            "",
            f"#define FDL_LEVEL_SHAPE_LENGTH {SHAPE_LENGTH} /* positions in a shape, at most */",
            f"#define FDL_LEVEL_SHAPES_MAX {most['shapes']} /* shapes of one pattern, at most */",
            f"#define FDL_LEVEL_LITERALS_MAX {most['literals']} /* literals of one pattern, at most */",
            "",
            "static const struct fdl_level_pattern fdl_level_patterns[] = {",
            *rows,
            "};",
            "static const struct fdl_level_pattern fdl_traceback_start =",
            f"    {entry(TRACEBACK_LEVEL, 0, TRACEBACK_START)};",
            "static const struct fdl_level_pattern fdl_traceback_inside =",
            f"    {entry(TRACEBACK_LEVEL, 0, TRACEBACK_INSIDE)};",
            "#endif",
            "",
            "#endif",
            "",
        ]
    )
