"""Reset to any turn of a recorded trajectory, for any world: replay, divergence checks, cache.

The state just before assistant turn ``t`` is reached by executing the recorded actions
``0..t-1`` on a fresh world of the trajectory's task. Every intermediate state is kept
as a world snapshot keyed by ``(task key, hash of the action prefix)``, so restoring
turn ``t`` starts from the deepest cached prefix and replays only what is missing:
restoring every turn of a T-turn trajectory costs at most T replayed steps in all.

What is replayed is the env's to say (the :class:`Replayable` protocol): an action none
of whose calls mutates the world (``env.mutates(name, arguments)``: every shell command
may, a tool API's read tools do not) leaves the state as it was, so it is not executed
and its snapshot is its parent's. Each executed action's tool results are compared with
the recorded ones by the env's rule (normalised text for shells, JSON equality for tool
APIs), under a policy: ``strict`` raises :class:`~pivotgym.errors.DivergenceError`,
``lenient`` records the divergence and goes on, ``off`` does not compare.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pivotgym.core.trajectory import Trajectory
from pivotgym.core.world import World, WorldSnapshot
from pivotgym.errors import DataError, DivergenceError

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
    (r"/tmp/tmp[a-z0-9_]{8}\b", "/tmp/tmp<RANDOM>"),  # Python's tempfile
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


@functools.lru_cache(maxsize=256)
def normalizer(patterns: tuple[str, ...] = ()) -> Normalizer:
    """The :class:`Normalizer` of a task's extra patterns, compiled once."""
    return Normalizer(patterns)


def canonical_action(message: dict[str, Any]) -> str:
    """The part of an assistant message that acts on the world, as canonical JSON.

    Free text and call ids do not change the world, so two actions that call the
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
    """A cached state, the divergences met on the way to it, and whether its prefix was
    compared at all (``checked``: not replayed under ``off``)."""

    snapshot: WorldSnapshot
    divergences: list[dict[str, Any]] = field(default_factory=list)
    checked: bool = True


class SnapshotCache:
    """Least-recently-used snapshots of replayed states, shared by an env and its forks.

    ``max_entries`` bounds the storage held; evicted snapshots are released. Counters
    ``hits``, ``misses`` and ``replayed_steps`` say what restores cost.
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], CacheEntry] = OrderedDict()
        self._holders: dict[int, int] = {}  # id(snapshot) -> entries holding it
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

    def deepest(
        self, task_key: str, hashes: Sequence[str], *, checked: bool = False
    ) -> tuple[int, CacheEntry | None]:
        """The deepest cached prefix: ``(k, entry)`` for the largest cached ``hashes[k]``
        (with ``checked``, among entries whose prefix was compared)."""
        for k in range(len(hashes) - 1, -1, -1):
            entry = self._entries.get((task_key, hashes[k]))
            if entry is not None and (entry.checked or not checked):
                self._entries.move_to_end((task_key, hashes[k]))
                return k, entry
        return 0, None

    async def put(self, task_key: str, prefix_hash: str, entry: CacheEntry) -> None:
        """Cache ``entry``; entries may share a snapshot (a read leaves the state as it
        was), which is released when the last entry holding it goes."""
        key = (task_key, prefix_hash)
        self.hold(entry.snapshot)
        old = self._entries.pop(key, None)
        if old is not None:
            await self.drop(old.snapshot)
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            await self.drop(evicted.snapshot)

    def hold(self, snapshot: WorldSnapshot) -> None:
        """Keep ``snapshot`` until a matching :meth:`drop`, whatever happens to the
        entries holding it (a restore pins the snapshots it builds on: another restore
        of the same prefix may replace their entries meanwhile)."""
        self._holders[id(snapshot)] = self._holders.get(id(snapshot), 0) + 1

    async def drop(self, snapshot: WorldSnapshot) -> None:
        left = self._holders[id(snapshot)] - 1
        if left:
            self._holders[id(snapshot)] = left
        else:
            del self._holders[id(snapshot)]
            await snapshot.release()

    async def clear(self) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            await self.drop(entry.snapshot)


def text_divergence(
    recorded: Sequence[dict[str, Any]],
    replayed: Sequence[dict[str, Any]],
    normalize: Normalizer,
) -> tuple[str, str] | None:
    """``None`` when replayed tool messages read as the recorded ones once normalised,
    else both texts."""
    expected = "\n".join(normalize(m.get("content") or "") for m in recorded)
    actual = "\n".join(normalize(m.get("content") or "") for m in replayed)
    return None if expected == actual else (expected, actual)


def json_divergence(
    recorded: Sequence[dict[str, Any]], replayed: Sequence[dict[str, Any]]
) -> tuple[str, str] | None:
    """``None`` when replayed tool messages equal the recorded ones as JSON values (a
    text that is not JSON compares as text), else both texts."""

    def parsed(messages: Sequence[dict[str, Any]]) -> list[Any]:
        out = []
        for m in messages:
            text = m.get("content") or ""
            try:
                out.append(json.loads(text))
            except ValueError:
                out.append(text)
        return out

    if parsed(recorded) == parsed(replayed):
        return None
    return (
        "\n".join(m.get("content") or "" for m in recorded),
        "\n".join(m.get("content") or "" for m in replayed),
    )


class Replayable(Protocol):
    """What :func:`restore` needs of an environment."""

    world: World | None
    turn: int

    def resolve_task(self, trajectory: Trajectory) -> Any: ...

    async def create_world(self, task: Any, snapshot: WorldSnapshot | None = None) -> World: ...

    async def replace_world(self, world: World | None) -> None: ...

    def mutates(self, name: str, arguments: Any) -> bool: ...

    async def execute(self, action: dict[str, Any]) -> tuple[list[dict[str, Any]], Any, bool]: ...

    def divergence(
        self, task: Any, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
    ) -> tuple[str, str] | None: ...


def mutating(env: Replayable, action: dict[str, Any]) -> bool:
    """Whether any call of ``action`` may change the world (malformed calls count: the
    env answers them, and the answer is compared)."""
    calls = action.get("tool_calls") or []
    if not isinstance(calls, list):
        return True
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or env.mutates(function.get("name"), function):
            return True
    return False


@dataclass
class Restored:
    """What a restore did: where it started from and what it replayed."""

    task: Any
    restored_from_turn: int
    replayed_steps: int
    skipped_reads: int
    divergences: list[dict[str, Any]]


async def restore(
    env: Replayable,
    trajectory: Trajectory,
    turn: int,
    policy: Divergence,
    cache: SnapshotCache,
) -> Restored:
    """Put ``env``'s world in the state just before ``turn`` of ``trajectory``."""
    task = env.resolve_task(trajectory)
    actions = [trajectory.action(i) for i in range(turn)]
    hashes = prefix_hashes(actions)
    # A strict restore trusts only prefixes that were compared, and fails on a prefix
    # that a lenient one found diverging.
    depth, entry = cache.deepest(task.key, hashes, checked=policy == "strict")
    if entry is not None and policy == "strict" and entry.divergences:
        first = entry.divergences[0]
        raise DivergenceError(trajectory.id, first["turn"], first["recorded"], first["replayed"])
    pinned: list[WorldSnapshot] = []
    try:
        return await _restore_from(env, trajectory, turn, policy, cache, task, hashes,
                                   depth, entry, pinned)  # fmt: skip
    finally:
        for snapshot in pinned:
            await cache.drop(snapshot)


async def _restore_from(
    env: Replayable,
    trajectory: Trajectory,
    turn: int,
    policy: Divergence,
    cache: SnapshotCache,
    task: Any,
    hashes: Sequence[str],
    depth: int,
    entry: CacheEntry | None,
    pinned: list[WorldSnapshot],
) -> Restored:
    """:func:`restore` from the cached ``entry`` at ``depth`` (or from scratch), with
    every snapshot it builds on pinned in the cache (``pinned``) until it returns."""

    def pin(snapshot: WorldSnapshot) -> WorldSnapshot:
        cache.hold(snapshot)
        pinned.append(snapshot)
        return snapshot

    if entry is not None:
        pin(entry.snapshot)  # before any await: another restore may replace its entry
    await env.replace_world(None)
    if entry is not None:
        cache.hits += 1
        await env.replace_world(await env.create_world(task, entry.snapshot))
        divergences = list(entry.divergences)
        snapshot = entry.snapshot
    else:
        cache.misses += 1
        world = await env.create_world(task)
        await env.replace_world(world)
        divergences = []
        snapshot = pin(await world.snapshot())
        await cache.put(task.key, hashes[0], CacheEntry(snapshot))
    replayed = skipped = 0
    for i in range(depth, turn):
        env.turn = i
        action = trajectory.action(i)
        if not mutating(env, action):
            # The state is the parent's; the cache shares its snapshot under this prefix.
            skipped += 1
            entry = CacheEntry(snapshot, list(divergences), checked=policy != "off")
            await cache.put(task.key, hashes[i + 1], entry)
            continue
        messages, _, _ = await env.execute(action)
        replayed += 1
        cache.replayed_steps += 1
        if policy != "off":
            diff = env.divergence(task, trajectory.tool_results(i), messages)
            if diff is not None:
                if policy == "strict":
                    await env.replace_world(None)
                    raise DivergenceError(trajectory.id, i, *diff)
                divergences.append({"turn": i, "recorded": diff[0], "replayed": diff[1]})
        assert env.world is not None
        snapshot = pin(await env.world.snapshot())
        entry = CacheEntry(snapshot, list(divergences), checked=policy != "off")
        await cache.put(task.key, hashes[i + 1], entry)
    env.turn = turn
    return Restored(task, depth, replayed, skipped, divergences)
