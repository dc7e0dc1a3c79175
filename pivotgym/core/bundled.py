"""Data an environment builds from a seed and ships beside its code: written, or
compared with a rebuild (``--check``)."""

from __future__ import annotations

import gzip
import io
import operator
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


def gzipped(data: bytes) -> bytes:
    """``data`` gzip-compressed with no time stamp: the same bytes from every build."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buffer.getvalue()


def write_or_check(
    files: Mapping[str, bytes],
    out: Path,
    *,
    check: bool,
    same: Callable[[bytes, bytes], bool] = operator.eq,
) -> int:
    """Write ``files`` into ``out``, or with ``check`` name each file of ``out`` that
    differs from its rebuild (by ``same``, of the shipped and the rebuilt bytes); the
    exit status either way."""
    if check:
        differ = [n for n, data in files.items()
                  if not (out / n).exists() or not same((out / n).read_bytes(), data)]  # fmt: skip
        for name in differ:
            print(f"{out / name}: differs from a rebuild", file=sys.stderr)
        return 1 if differ else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data):,} bytes")
    return 0
