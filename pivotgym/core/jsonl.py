"""JSON Lines files (plain or gzip-compressed) read one numbered line at a time.

Each line is decoded and parsed on its own, so that a bad line raises a
:class:`~pivotgym.errors.DataError` naming the file and its line, after every line
before it was handed out (a text-mode reader decodes whole chunks: one bad byte would
lose the good lines before it and its error would name no line).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pivotgym.errors import DataError


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 file (gzip-compressed when named ``.gz``), numbered from 1."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"not valid UTF-8 (byte {exc.start + 1} of the line)",
                        file=path,
                        line=lineno,
                    ) from None
                yield lineno, text
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"not a readable gzip file ({exc})", file=path, line=lineno + 1) from None


def rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` for every non-blank line of a JSON Lines file."""
    for lineno, raw in numbered_lines(path):
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"not valid JSON ({exc.msg} at column {exc.colno})", file=path, line=lineno
            ) from None
        except RecursionError:  # json.loads gives up at about 1,000 levels
            raise DataError("JSON nested too deeply", file=path, line=lineno) from None
