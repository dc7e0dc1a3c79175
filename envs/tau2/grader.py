"""The episode reward of a τ² task, as τ²'s evaluator gives it.

τ²'s own component evaluators score the episode (its conversation as τ² would have
recorded it, :func:`pivotgym.envs.tau2.messages.to_tau2`): DB and ENV_ASSERTION (the
predicted databases, replayed from the conversation, against the gold ones made from the
task's actions, both by τ²'s code), ACTION and COMMUNICATE; the reward is the product of
the components in the task's ``reward_basis``, τ²'s rule for its ``ALL`` evaluation. An
episode that did not end by the user's stop or the agent's (it was cut by a limit)
scores 0, as τ² gives 0 to every termination but those two. NL assertions need an LLM
judge: with one in the basis, the reward is the other components' product and the info
says the NL assertions were skipped. τ²'s evaluator is imported piecewise so that none of
its LLM clients load.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pivotgym.core.grader import Episode
from pivotgym.envs.tau2.domain import get_domain
from pivotgym.envs.tau2.messages import to_tau2
from pivotgym.envs.tau2.tasks import Tau2Task
from pivotgym.envs.tau2.world import Tau2World


class Tau2Grader:
    def __init__(self, max_calls: int | None = None) -> None:
        self.max_calls = max_calls

    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        task: Tau2Task = episode.task
        if not episode.terminated:
            return 0.0, {"note": "the episode ended by a limit, not by a stop"}
        criteria = task.model.evaluation_criteria
        if criteria is None:
            return 1.0, {"note": "the task has no evaluation criteria"}
        domain = get_domain(task.domain)
        tools = {t["function"]["name"] for t in domain.tools}
        messages = to_tau2(episode.messages, tools, self.max_calls)
        return await asyncio.to_thread(score, task, messages)


def score(task: Tau2Task, messages: list[Any]) -> tuple[float, dict[str, Any]]:
    """τ²'s ``ALL`` reward of ``messages`` (τ² message models) on ``task``."""
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator_action import ActionEvaluator
    from tau2.evaluator.evaluator_communicate import CommunicateEvaluator
    from tau2.evaluator.evaluator_env import EnvironmentEvaluator

    domain = get_domain(task.domain)
    model = task.model
    env = EnvironmentEvaluator.calculate_reward(
        # Copy-on-write forks of the domain's data, not a re-parse of it (0.18 s for
        # airline, twice an evaluation).
        environment_constructor=lambda solo_mode=False: Tau2World.initial(domain).guarded(),
        task=model,
        full_trajectory=messages,
    )
    parts = {
        "env": (env, {RewardType.DB, RewardType.ENV_ASSERTION}),
        "action": (
            ActionEvaluator.calculate_reward(task=model, full_trajectory=messages),
            {RewardType.ACTION},
        ),
        "communicate": (
            CommunicateEvaluator.calculate_reward(task=model, full_trajectory=messages),
            {RewardType.COMMUNICATE},
        ),
    }
    basis = set(model.evaluation_criteria.reward_basis)
    reward, breakdown = 1.0, {}
    for info, types in parts.values():
        if basis & types:
            breakdown.update({str(k.value): v for k, v in (info.reward_breakdown or {}).items()})
            reward *= info.reward
    detail: dict[str, Any] = {
        "reward_basis": sorted(b.value for b in basis),
        "reward_breakdown": breakdown,
        "db_match": env.db_check.db_match if env.db_check is not None else None,
    }
    if RewardType.NL_ASSERTION in basis:
        detail["nl_assertions"] = "skipped: no judge engine is configured"
    return reward, detail
