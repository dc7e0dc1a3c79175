"""The task protocol: what the env core needs of a task, whatever its format.

A task is plain data or a reference to it (a folder, a row of a JSONL file), so it can
travel to an environment server. Harbor's folder format (:mod:`pivotgym.harbor.task`) is one
implementation; the tool-API domains' :class:`~pivotgym.envs.tools.domain.ToolTask`
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    """``name`` is unique within its task set; ``key`` is unique across sets and stable
    across runs (replay caches key on it); ``instruction`` is the user's first message;
    ``max_turns`` the assistant turns an episode may take; ``family`` the kind of task
    it is (results are broken down by it), ``None`` when it has none."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def instruction(self) -> str: ...

    @property
    def max_turns(self) -> int: ...

    @property
    def family(self) -> str | None: ...


class TaskFormat(Protocol):
    """How an env's tasks are stored: ``load`` reads a task file or folder, and
    ``from_trajectories`` gives the distinct tasks that trajectories carry (by name, in
    order of first appearance)."""

    def load(self, path: str | Path) -> Sequence[Any]: ...

    def from_trajectories(self, trajectories: Sequence[Any]) -> Sequence[Any]: ...
