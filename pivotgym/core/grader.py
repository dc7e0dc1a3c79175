"""Graders: the reward of a finished episode, from its world, task and conversation.

A grader is anything with ``async grade(episode) -> (reward, info)``, the reward in
[0, 1]. Each env names its own: Harbor's ``tests/test.sh`` for sandboxed tasks
(:class:`pivotgym.harbor.grader.HarborGrader`), the end database and the information
communicated for tool APIs (:class:`pivotgym.envs.tools.grader.DatabaseGrader`). A
grader raises :class:`~pivotgym.errors.InfraError` when the harness, not the agent,
failed; it never steps the env, and it may fork the world but leaves it as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pivotgym.core.world import World


@dataclass(frozen=True)
class Episode:
    """What a grader sees: the task, the world as the episode left it, the whole
    conversation, and whether the episode reached its natural end (``terminated``) or
    was cut by a limit."""

    task: Any
    world: World
    messages: list[dict[str, Any]]
    terminated: bool


class Grader(Protocol):
    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]: ...
