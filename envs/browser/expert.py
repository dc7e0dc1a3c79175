"""Recording an expert's trajectory of a browser task, live in the env.

The family's expert (:meth:`~pivotgym.envs.browser.families.Family.expert`) is shown
what an agent is shown (the goal, the page text, the URL) and answers one action a
turn; each is taken as an assistant turn calling that tool, in the env, so the
trajectory holds the env's own observations. An action the env refuses that the
expert takes back (:meth:`~pivotgym.envs.browser.families.Expert.failed`) is undone by
restoring the state before it, so trajectories show no mistake of the expert's to
learn. A trajectory is kept only when the task's check gives it reward 1.
"""

from __future__ import annotations

import json
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.browser.families import get_family
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.errors import DataError, InfraError


class ExpertError(DataError):
    """A task the expert could not solve to reward 1; the message says why."""


def call(name: str, turn: int, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": f"call_{turn}", "type": "function", "function": function}],
    }


async def demonstrate(env: Any, task: BrowserTask, seed: int) -> Trajectory:
    """The expert's trajectory of ``task`` in ``env`` (module docstring)."""
    family = get_family(task.family)
    expert = family.expert(task, seed)
    if expert is None:
        raise ExpertError(
            f"the family {task.family} has no expert", field=f"{task.task_id}: family"
        )
    await env.areset(options={"task": task})
    goal = await family.goal(task, env.world)
    reward, info, done = 0.0, {}, False
    while not done:
        world = env.world
        page = (await world.mark(max_chars=env.options.max_page_chars))["text"]
        action = expert.act(goal, page, world.page.url)
        if action is None:
            raise ExpertError(
                f"the expert is stuck at {world.page.url} after {env.turn} turns",
                field=f"{task.task_id}: expert",
            )
        _, reward, terminated, truncated, info = await env.astep(
            call(*action[:1], env.turn, action[1])
        )
        if info.get("infra_error"):
            raise InfraError(f"{task.task_id}: {info['infra_error']}")
        if info.get("tool_errors") and expert.failed(action) and not (terminated or truncated):
            await _take_back(env, task, seed)
            continue
        done = terminated or truncated
    if reward != 1.0:
        raise ExpertError(
            f"the check gave {reward}: {info.get('test')}", field=f"{task.task_id}: expert"
        )
    return _trajectory(env, task, seed)


def _trajectory(env: Any, task: BrowserTask, seed: int) -> Trajectory:
    return Trajectory(
        id=f"{task.task_id}/{seed}",
        env="browser",
        task=task.to_json(),
        messages=env.messages,
        tools=env.tools,
        metadata={"family": task.family, "seed": seed},
    )


async def _take_back(env: Any, task: BrowserTask, seed: int) -> None:
    """Restore the state before the last turn, by replaying the turns before it from the
    task's start: the episode goes on as if the turn had not been taken."""
    done = _trajectory(env, task, seed)
    await env.areset(options={"trajectory": done, "turn": done.num_turns - 1})
