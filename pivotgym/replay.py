"""Reset to any turn of a recorded trajectory: replay, divergence checks, snapshot cache.

The state just before assistant turn ``t`` is reached by executing the recorded actions
``0..t-1`` in a fresh sandbox of the trajectory's task. Every intermediate state is kept
as a sandbox snapshot keyed by ``(task key, hash of the action prefix)``, so restoring
turn ``t`` starts from the deepest cached prefix and replays only what is missing:
restoring every turn of a T-turn trajectory costs at most T replayed steps in all.

Each replayed tool output is compared with the recorded one after normalisation
(timestamps, durations, pids and whatever patterns the task adds), under a policy:
``strict`` raises :class:`~pivotgym.errors.DivergenceError`, ``lenient`` records the
divergence and goes on, ``off`` does not compare.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pivotgym.errors import DataError
from pivotgym.sandbox.base import Snapshot

Divergence = Literal["strict", "lenient", "off"]
POLICIES: tuple[str, ...] = ("strict", "lenient", "off")

# What legitimately differs between a recording and its replay.
DEFAULT_NORMALIZERS: tuple[tuple[str, str], ...] = (
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", "<TIME>"),
    (
        r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d+ "
        r"\d{2}:\d{2}:\d{2}( [A-Z]{3,4})? \d{4}\b",
        "<TIME>",
    ),
    (r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d+ +(\d{2}:\d{2}|\d{4})\b", "<TIME>"),
    (r"\b\d+m\d+\.\d+s\b", "<DURATION>"),
    (r"\b(pid|PID|process) \d+\b", r"\1 <PID>"),
    (r"^\[\d+\]\s+\d+$", "[<JOB>] <PID>"),
    (r"/tmp/tmp\.[A-Za-z0-9]{6,}", "/tmp/tmp.<RANDOM>"),
)


class Normalizer:
    """Rewrites what is known to vary (timestamps, pids, durations) into placeholders.

    ``extra`` patterns (a task's ``[pivotgym] normalize``) are replaced by ``<VARIES>``.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.rules = [(re.compile(p, re.MULTILINE), r) for p, r in DEFAULT_NORMALIZERS]
        for pattern in extra:
            try:
                self.rules.append((re.compile(pattern, re.MULTILINE), "<VARIES>"))
            except re.error as exc:
                raise DataError(
                    f"bad regular expression {pattern!r}: {exc}", field="pivotgym.normalize"
                ) from None

    def __call__(self, text: str) -> str:
        for pattern, replacement in self.rules:
            text = pattern.sub(replacement, text)
        return text


def canonical_action(message: dict[str, Any]) -> str:
    """The part of an assistant message that acts on the world, as canonical JSON.

    Free text and call ids do not change the sandbox, so two actions that call the
    same tools with the same arguments share a cache entry.
    """
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        try:
            arguments: Any = json.loads(function.get("arguments", "{}"))
        except json.JSONDecodeError:
            arguments = function.get("arguments")
        calls.append([function.get("name"), arguments])
    return json.dumps(calls, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prefix_hashes(actions: Sequence[dict[str, Any]]) -> list[str]:
    """``h[k]`` identifies the state after actions ``0..k-1``; ``h[0]`` the fresh task."""
    digest = hashlib.sha256(b"pivotgym-prefix-v1")
    hashes = [digest.hexdigest()[:24]]
    for action in actions:
        digest.update(canonical_action(action).encode() + b"\n")
        hashes.append(digest.copy().hexdigest()[:24])
    return hashes


@dataclass
class CacheEntry:
    snapshot: Snapshot
    divergences: list[dict[str, Any]] = field(default_factory=list)


class SnapshotCache:
    """Least-recently-used snapshots of replayed states, shared by an env and its forks.

    ``max_entries`` bounds the storage held; evicted snapshots are released. Counters
    ``hits``, ``misses`` and ``replayed_steps`` say what restores cost.
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], CacheEntry] = OrderedDict()
        self._users = 0
        self.hits = 0
        self.misses = 0
        self.replayed_steps = 0

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self) -> SnapshotCache:
        self._users += 1
        return self

    async def release(self) -> None:
        """Drop one user; the last one frees every snapshot."""
        self._users -= 1
        if self._users <= 0:
            await self.clear()

    def deepest(self, task_key: str, hashes: Sequence[str]) -> tuple[int, CacheEntry | None]:
        """The deepest cached prefix: ``(k, entry)`` for the largest cached ``hashes[k]``."""
        for k in range(len(hashes) - 1, -1, -1):
            entry = self._entries.get((task_key, hashes[k]))
            if entry is not None:
                self._entries.move_to_end((task_key, hashes[k]))
                return k, entry
        return 0, None

    async def put(self, task_key: str, prefix_hash: str, entry: CacheEntry) -> None:
        key = (task_key, prefix_hash)
        old = self._entries.pop(key, None)
        if old is not None:
            await old.snapshot.release()
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            await evicted.snapshot.release()

    async def clear(self) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            await entry.snapshot.release()


def compare_outputs(
    recorded: Sequence[dict[str, Any]],
    replayed: Sequence[dict[str, Any]],
    normalize: Normalizer,
) -> tuple[str, str] | None:
    """``None`` when replayed tool messages match the recorded ones, else both texts."""
    expected = "\n".join(normalize(m.get("content") or "") for m in recorded)
    actual = "\n".join(normalize(m.get("content") or "") for m in replayed)
    return None if expected == actual else (expected, actual)
