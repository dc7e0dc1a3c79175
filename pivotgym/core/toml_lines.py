"""TOML files read so that their errors name the line: task.toml and run configs.

``tomllib`` keeps no positions: its syntax errors carry the line in their message, and
the parsed table says nothing of where a key was written. :func:`read` parses a file
and reports a syntax error (or bytes that are not UTF-8) as a
:class:`~pivotgym.errors.DataError` at its line; :func:`locate` gives a ``DataError``
about a value the line of its ``field``, found by :func:`key_line`.

:func:`key_line` finds where a key is defined: under a ``[table]`` or ``[[array]]``
header, as a dotted key (``section.key = ...``), or inside an inline table
(``section = { key = ... }``). It skips what only looks like TOML inside strings and
multi-line arrays. When it cannot tell (a key whose own name holds a dot is spelled in
a field exactly like a dotted key), it answers None rather than a guess.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pivotgym.errors import DataError

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_DOTTED = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?")
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED})\s*=")
_POSITION = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)


def read(path: Path) -> tuple[dict[str, Any], str]:
    """The table of the TOML file ``path`` and its text.

    Bytes that are not UTF-8 and syntax errors raise a ``DataError`` naming the file and
    the line (none when ``tomllib`` says only "at end of document").
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError("not valid UTF-8", file=path, line=line) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        found = _POSITION.match(str(exc))
        if found is None:
            raise DataError(f"invalid TOML: {exc}", file=path) from None
        problem, line, column = found.groups()
        raise DataError(
            f"invalid TOML: {problem} (column {column})", file=path, line=int(line)
        ) from None


def locate(error: DataError, text: str) -> DataError:
    """``error`` with the line in the TOML ``text`` where its ``field`` is defined.

    ``error`` itself when it already has a line, names no field, or the line is not found.
    """
    if error.line is not None or error.field is None:
        return error
    line = key_line(text, error.field.split("."))
    if line is None:
        return error
    return DataError(error.problem, file=error.file, line=line, field=error.field)


def key_line(text: str, key: Sequence[str]) -> int | None:
    """The line (from 1) of valid TOML ``text`` that defines ``key``, a path of names.

    A table's line is the first that defines it or something inside it. A key inside an
    inline table has that table's line when the whole table is on it.
    """
    target = tuple(key)
    table: tuple[str, ...] = ()
    scanner = _Scanner()
    # tomllib counts lines by "\n" alone; str.splitlines would also split at "\x0c" etc.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if scanner.inside_value:
            scanner.feed(line)
            continue
        defined, rest, inline = None, line, False
        if header := _HEADER.match(line):
            table = defined = _names(header[1])
            rest = line[header.end() :]
        elif assignment := _ASSIGNMENT.match(line):
            defined = table + _names(assignment[1])
            rest = line[assignment.end() :]
            inline = rest.lstrip().startswith("{")
        scanner.feed(rest)
        if defined is None:
            continue
        if defined[: len(target)] == target:
            return lineno
        if inline and target[: len(defined)] == defined and not scanner.inside_value:
            return lineno
    return None


def _names(dotted: str) -> tuple[str, ...]:
    """The names of a dotted key as TOML reads them, quotes and escapes resolved."""
    names = []
    table: Any = tomllib.loads(f"{dotted} = 0")
    while isinstance(table, dict):
        ((name, table),) = table.items()
        names.append(name)
    return tuple(names)


class _Scanner:
    """Follows a value across lines: open brackets and an open multi-line string."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote: str | None = None

    @property
    def inside_value(self) -> bool:
        """Whether the next line continues a value rather than starting a statement."""
        return self.depth > 0 or self.quote is not None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.quote is not None:
                end = _closing(text, i, self.quote)
                if end < 0:
                    return
                i, self.quote = end, None
            elif text.startswith(('"""', "'''"), i):
                self.quote = text[i : i + 3]
                i += 3
            elif text[i] in "\"'":
                end = _closing(text, i + 1, text[i])
                i = end if end >= 0 else len(text)
            elif text[i] == "#":
                return
            else:
                self.depth += (text[i] in "[{") - (text[i] in "]}")
                i += 1


def _closing(text: str, start: int, quote: str) -> int:
    """The index just after the ``quote`` that closes a string from ``start``, or -1."""
    i = start
    while i < len(text):
        if quote[0] == '"' and text[i] == "\\":
            i += 2
        elif text.startswith(quote, i):
            end = i + len(quote)
            # A multi-line string may end with one or two quotes of its own: """a"""""
            while len(quote) == 3 and end - i < 5 and text.startswith(quote[0], end):
                end += 1
            return end
        else:
            i += 1
    return -1
