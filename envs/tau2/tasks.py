"""τ² tasks in pivotgym: a τ² ``Task`` of one domain, and the format trajectories carry.

A trajectory's task is ``{"domain": "airline", "task": <τ²'s task as JSON>}``, so a
recorded conversation is scored against the task it was run on (τ²'s task files have
drifted since some results were recorded). A task's key hashes that JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.envs.tau2.domain import get_domain
from pivotgym.errors import DataError

# τ²'s orchestrator stops at 100 messages of either side (its results files used 200);
# an assistant turn takes at least two (a call and its answer, or a message and a reply).
MAX_TURNS = 50


@dataclass(frozen=True)
class Tau2Task:
    domain: str
    model: Any  # tau2.data_model.tasks.Task

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.model.id}"

    @cached_property
    def key(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def instruction(self) -> str:
        return str(self.model.user_scenario.instructions)

    @property
    def max_turns(self) -> int:
        return MAX_TURNS

    @property
    def family(self) -> str | None:
        return None

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "task": self.model.model_dump(mode="json")}


def encode_tasks(tasks: Sequence[Tau2Task]) -> bytes:
    """Tasks as pivotgym's JSON Lines task file (one ``{"domain", "task"}`` a line)."""
    return "".join(json.dumps(t.to_json(), sort_keys=True) + "\n" for t in tasks).encode()


def task_from_json(data: Any, where: str, task_at: str | None = None) -> Tau2Task:
    """A task from its JSON form (``where`` names it); a malformed one is a ``DataError``
    naming the field, the τ² task's own fields under ``task_at`` (default
    ``WHERE.task``)."""
    if not isinstance(data, dict) or not isinstance(data.get("domain"), str):
        raise DataError("must be an object with a string 'domain' and a 'task'", field=where)
    domain = get_domain(data["domain"])
    from pydantic import ValidationError
    from tau2.data_model.tasks import Task

    try:
        model = Task.model_validate(data.get("task"))
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        base = task_at or f"{where}.task"
        raise DataError(first["msg"], field=f"{base}.{at}" if at else base) from None
    return Tau2Task(domain.name, model)


class Tau2TaskFormat:
    """τ²'s own task files (``tasks.json``: a list of tasks) of one domain, named by the
    file's folder (``.../domains/airline/tasks.json``); pivotgym's task files, JSON Lines
    (``.jsonl``, or ``.jsonl.gz``) of tasks as trajectories carry them, of any domains;
    and trajectories' inline tasks."""

    def load(self, path: str | Path) -> Sequence[Tau2Task]:
        path = Path(path)
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            out = []
            for lineno, row in jsonl.rows(path):
                try:
                    out.append(task_from_json(row, "task"))
                except DataError as exc:
                    raise DataError(exc.problem, file=path, line=lineno, field=exc.field) from None
            return out
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read τ² tasks: {exc}", file=path) from None
        if not isinstance(rows, list):
            raise DataError("must be a list of τ² tasks", file=path)
        domain = path.parent.name
        try:
            return [
                task_from_json({"domain": domain, "task": r}, f"[{i}]", f"[{i}]")
                for i, r in enumerate(rows)
            ]
        except DataError as exc:
            raise DataError(exc.problem, file=path, field=exc.field) from None

    def from_trajectories(self, trajectories: Sequence[Any]) -> Sequence[Tau2Task]:
        seen: dict[str, Tau2Task] = {}
        for t in trajectories:
            task = task_from_json(t.task, f"{t.id}: task")
            seen.setdefault(task.key, task)
        return list(seen.values())


FORMAT = Tau2TaskFormat()
