"""The expert: multi-turn SFT trajectories that solve tool tasks as the policy requires.

The expert plays a task through the real environment, so every tool result and user
reply in its trajectory is what the env produces (strict replay holds by construction):

1. it asks the user for the facts its look-ups need that the opening did not give
   (all at once, or one a turn);
2. it makes each group of look-ups: the calls of a group in a drawn order, one a turn
   or together in one turn;
3. with writes to make, it says what it will do and asks to go ahead; after the user's
   yes it makes them;
4. it tells the user the outcome (a refusal the policy requires is an outcome too, with
   no write made), and the user, satisfied, ends the conversation.

Wording, order and grouping are drawn from a seeded generator, so a trajectory is
rebuilt bit for bit from its seed. A demonstration that does not score 1 under the
env's own grader is an error, never a training example.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tools.domain import Call, ToolTask
from pivotgym.envs.tools.env import ToolsEnv
from pivotgym.envs.tools.words import pick
from pivotgym.errors import DataError

_ASK = (
    "Could you give me your {facts}?",
    "I can help with that. First, what is your {facts}?",
    "Sure. To find your records, may I have your {facts}?",
    "Happy to help. Can you tell me your {facts}?",
)
_LOOKING = (None, None, "Let me look that up.", "One moment while I check.", "Checking now.")
_CONFIRM = (
    "To confirm: I will {what}. Shall I go ahead?",
    "Here is what I'll do: {what}. Do you want me to proceed?",
    "I can {what}. Would you like me to go ahead?",
)
_DONE = ("", "All set. ", "Thanks for waiting. ", "Done. ")


class ExpertError(DataError):
    """A task the expert could not solve to reward 1."""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _call(call: Call, turn: int, index: int) -> dict[str, Any]:
    return {
        "id": f"call_{turn}_{index}",
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
    }


async def demonstrate(env: ToolsEnv, task: ToolTask, seed: int) -> Trajectory:
    """The expert's trajectory of ``task`` in ``env`` (module docstring)."""
    rng = random.Random(f"expert-{task.name}-{seed}")
    await env.areset(options={"task": task})
    done = False
    reward = 0.0
    info: dict[str, Any] = {}

    async def say(message: dict[str, Any]) -> None:
        nonlocal done, reward, info
        if done:
            raise ExpertError("the conversation ended early", file=task.name)
        _, reward, terminated, truncated, info = await env.astep(message)
        done = terminated or truncated

    labels = [env.domain.facts[name].label for name in task.ask]
    if labels:
        if len(labels) > 1 and rng.random() < 0.3:
            for label in labels:
                await say({"role": "assistant", "content": pick(rng, _ASK).format(facts=label)})
        else:
            await say({"role": "assistant", "content": pick(rng, _ASK).format(facts=_and(labels))})
    for groups in (task.lookups, task.writes):
        if groups is task.writes and groups:
            what = pick(rng, _CONFIRM).format(what=task.confirm)
            await say({"role": "assistant", "content": what})
        for group in groups:
            calls = list(group)
            rng.shuffle(calls)
            batches = [calls] if len(calls) > 1 and rng.random() < 0.5 else [[c] for c in calls]
            for batch in batches:
                turn = env.turn
                await say({
                    "role": "assistant",
                    "content": pick(rng, _LOOKING),
                    "tool_calls": [_call(c, turn, i) for i, c in enumerate(batch)],
                })  # fmt: skip
    await say({"role": "assistant", "content": pick(rng, _DONE) + task.outcome})
    if not done or reward != 1.0:
        why = info.get("test") if done else "the user did not end the conversation"
        raise ExpertError(f"the expert's episode scored {reward} ({why})", file=task.name)
    return Trajectory(
        id=task.name,
        env="tools",
        task=task.to_json(),
        messages=env.messages,
        tools=env.tools,
        metadata={"domain": task.domain, "family": task.family, "seed": seed},
    )
