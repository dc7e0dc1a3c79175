"""Browser tasks: a family, a seed, and what the family drew from it.

A :class:`BrowserTask` is plain data: ``family`` names the generator and checker
(:mod:`pivotgym.envs.browser.families`), ``seed`` fixes everything the family draws
(the app's database, the goal's particulars, a MiniWoB++ page's problem), ``params``
holds what the family drew (the product to buy, the answer to find), and ``goal`` is
what the user asks. Tasks are stored as JSON Lines, one task a line; a bad line is a
one-line error naming the file, the line and the field.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.errors import DataError

MAX_TURNS = 20


@dataclass(frozen=True)
class BrowserTask:
    task_id: str
    family: str
    seed: int
    goal: str
    params: dict[str, Any] = field(default_factory=dict)
    max_turns: int = MAX_TURNS

    @property
    def name(self) -> str:
        return self.task_id

    @property
    def instruction(self) -> str:
        return self.goal

    @functools.cached_property
    def key(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True)
        return f"browser/{self.task_id}/{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "family": self.family,
            "seed": self.seed,
            "goal": self.goal,
            "params": self.params,
            "max_turns": self.max_turns,
        }


def task_from_json(data: Any) -> BrowserTask:
    """A task from its JSON; ``DataError`` naming the field that is wrong."""
    from pivotgym.envs.browser.families import get_family

    if not isinstance(data, dict):
        raise DataError("must be a JSON object (a browser task)")
    for name, kind in (("task_id", str), ("family", str), ("goal", str)):
        if not isinstance(data.get(name), kind):
            raise DataError(f"must be a string, got {data.get(name)!r}", field=name)
    seed = data.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"must be an integer, got {seed!r}", field="seed")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise DataError(f"must be an object, got {params!r}", field="params")
    max_turns = data.get("max_turns", MAX_TURNS)
    if not isinstance(max_turns, int) or isinstance(max_turns, bool) or max_turns < 1:
        raise DataError(f"must be a positive integer, got {max_turns!r}", field="max_turns")
    unknown = sorted(set(data) - {"task_id", "family", "seed", "goal", "params", "max_turns"})
    if unknown:
        raise DataError("unknown field", field=unknown[0])
    task = BrowserTask(data["task_id"], data["family"], seed, data["goal"], params, max_turns)
    get_family(task.family).validate(task)
    return task


def load_task_file(path: str | Path) -> list[BrowserTask]:
    path = Path(path)
    out = []
    for lineno, row in jsonl.rows(path):
        try:
            out.append(task_from_json(row))
        except DataError as exc:
            raise DataError(exc.problem, file=path, line=lineno, field=exc.field) from None
    return out


def encode_tasks(tasks: Sequence[BrowserTask]) -> bytes:
    return "".join(json.dumps(t.to_json(), sort_keys=True) + "\n" for t in tasks).encode()


class BrowserTaskFormat:
    """JSON Lines files of browser tasks (``.jsonl`` or ``.jsonl.gz``), and the tasks
    trajectories carry inline."""

    def load(self, path: str | Path) -> Sequence[BrowserTask]:
        return load_task_file(path)

    def from_trajectories(self, trajectories: Sequence[Any]) -> Sequence[BrowserTask]:
        seen: dict[str, BrowserTask] = {}
        for t in trajectories:
            try:
                task = task_from_json(t.task)
            except DataError as exc:
                raise DataError(exc.problem, field=f"{t.id}: task.{exc.field}") from None
            seen.setdefault(task.key, task)
        return list(seen.values())


FORMAT = BrowserTaskFormat()
