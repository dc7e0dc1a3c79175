"""Tool tasks: drawn from a domain's generators, checked by replaying their gold actions.

:func:`generate_tasks` draws ``n`` tasks of a domain, deterministically from a seed,
families in turn (so each family is represented), rejecting duplicates of a scenario
already drawn. :func:`gold_state` replays a task's gold actions on its database: that
is the task's expected end state, and a gold action that fails there is a
:class:`~pivotgym.errors.DataError` naming the task and the action, so a broken task
never reaches training. :func:`check_task` adds the rules every task keeps (module of
each rule below).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.envs.tools.db import Database
from pivotgym.envs.tools.domain import Domain, ToolTask, get_domain, task_from_json
from pivotgym.errors import DataError


def initial_state(task: ToolTask, domain: Domain | None = None) -> Database:
    """A fresh fork of the database the task starts from."""
    domain = domain or get_domain(task.domain)
    return domain.database(task.db_seed)


def gold_state(task: ToolTask, domain: Domain | None = None, *, source: str = "") -> Database:
    """The database after the task's gold actions (the expected end state)."""
    domain = domain or get_domain(task.domain)
    db = initial_state(task, domain)
    where = source or task.name
    index = 0
    for part, groups in (("lookups", task.lookups), ("writes", task.writes)):
        for g, group in enumerate(groups):
            for c, call in enumerate(group):
                if call.name not in domain.toolkit:
                    raise DataError(f"gold action {index}: unknown tool {call.name!r}",
                                    file=where, field=f"{part}[{g}][{c}].name")  # fmt: skip
                writes = domain.toolkit[call.name].writes
                if writes != (part == "writes"):
                    kind = "writes" if writes else "only reads"
                    raise DataError(f"gold action {index} ({call.name}) {kind}, listed in {part}",
                                    file=where, field=f"{part}[{g}][{c}]")  # fmt: skip
                outcome = domain.toolkit.call(db, call.name, dict(call.arguments))
                if outcome.error:
                    raise DataError(f"gold action {index} ({call.name}) failed: {outcome.content}",
                                    file=where, field=f"{part}[{g}][{c}]")  # fmt: skip
                index += 1
    return db


def check_task(task: ToolTask, domain: Domain | None = None) -> None:
    """Every rule a task keeps; ``DataError`` on the first broken one."""
    domain = domain or get_domain(task.domain)
    before = initial_state(task, domain)
    after = gold_state(task, domain)
    changed = before.digest() != after.digest()
    if task.writes and not changed:
        raise DataError("its writes leave the database unchanged", file=task.name, field="writes")
    for info in task.required_info:
        if info.lower() not in task.outcome.lower():
            raise DataError(f"outcome does not carry {info!r}", file=task.name,
                            field="required_info")  # fmt: skip
    unknown = [f for f in (*task.ask, *task.scenario.volunteered) if f not in domain.facts]
    if unknown:
        raise DataError(f"unknown fact {unknown[0]!r}", file=task.name, field="ask")
    missing = [f for f in task.ask if f not in task.scenario.known]
    if missing:
        raise DataError(f"asks for {missing[0]!r}, which the user does not know",
                        file=task.name, field="ask")  # fmt: skip
    if task.writes and not task.confirm:
        raise DataError("a task with writes needs a confirm line", file=task.name, field="confirm")


def generate_tasks(domain: Domain, n: int, seed: int, *, db_seed: int = 0) -> list[ToolTask]:
    """``n`` checked tasks of ``domain`` (module docstring)."""
    return list(_draw(domain, n, seed, db_seed))


def _draw(domain: Domain, n: int, seed: int, db_seed: int) -> Iterator[ToolTask]:
    rng = random.Random(f"{domain.name}-tasks-{seed}")
    db = domain.database(db_seed)
    families = list(domain.task_generators.items())
    seen: set[tuple[str, str, str]] = set()
    drawn, misses = 0, 0
    while drawn < n:
        _, generate = families[(drawn + misses) % len(families)]
        task = generate(db, rng)
        if task is not None and db.writes:
            raise TypeError(f"{domain.name}: a task generator wrote the database")
        if task is None or (task.family, task.scenario.persona, task.scenario.goal) in seen:
            misses += 1
            if misses > 50 * (n + 10):
                raise DataError(f"{domain.name}: the generators make too few distinct tasks")
            continue
        seen.add((task.family, task.scenario.persona, task.scenario.goal))
        task = dataclasses.replace(task, db_seed=db_seed)
        check_task(task, domain)
        drawn += 1
        yield task


def load_task_file(path: str | Path) -> list[ToolTask]:
    """Tasks from a JSON Lines file (plain or ``.gz``), one task's JSON a line."""
    path = Path(path)
    tasks = []
    for lineno, text in jsonl.numbered_lines(path):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", file=path, line=lineno) from None
        try:
            tasks.append(task_from_json(data))
        except DataError as exc:
            raise DataError(exc.problem, file=path, line=lineno, field=exc.field) from None
    return tasks


def encode_tasks(tasks: Sequence[ToolTask]) -> bytes:
    """``tasks`` as the JSON Lines that :func:`load_task_file` reads."""
    return "".join(json.dumps(t.to_json(), ensure_ascii=False) + "\n" for t in tasks).encode()


class ToolTaskFormat:
    """The tool env's :class:`~pivotgym.core.task.TaskFormat`: JSONL task files, and the task
    JSON that trajectories carry inline."""

    def load(self, path: str | Path) -> list[ToolTask]:
        return load_task_file(path)

    def from_trajectories(self, trajectories: Sequence[Any]) -> list[ToolTask]:
        seen: dict[str, ToolTask] = {}
        for t in trajectories:
            name = t.task.get("name") if isinstance(t.task, dict) else None
            if name is None or name not in seen:
                task = task_from_json(t.task, f"{t.id}: task")
                seen.setdefault(task.name, task)
        return list(seen.values())


FORMAT = ToolTaskFormat()
