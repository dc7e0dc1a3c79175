"""The registry of bundled task families."""

from __future__ import annotations

from ..plan import Family
from . import (
    archives,
    configs,
    csvjson,
    data,
    diffpatch,
    files,
    git,
    logs,
    permissions,
    scripts,
    text,
)

_MODULES = (
    files,
    text,
    archives,
    permissions,
    csvjson,
    git,
    logs,
    scripts,
    configs,
    diffpatch,
    data,
)

FAMILIES: dict[str, Family] = {f.name: f for module in _MODULES for f in module.FAMILIES}

# Never used for training: evaluation on these measures transfer to unseen kinds of work.
HELD_OUT_FAMILIES: tuple[str, ...] = (
    "symlink-latest",
    "csv-join",
    "git-find-commit",
    "log-time-window",
    "find-corrupted",
)
