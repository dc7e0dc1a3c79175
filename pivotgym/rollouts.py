"""Multi-turn on-policy episodes kept as token ids, for end-to-end RL.

Token in, token out across turns: an episode's sequence is the first prompt's ids, then
for every turn the ids the policy sampled (trained, with their logprobs) followed by
the ids the environment added before the next generation prompt (masked: tool output,
turn markers). The policy is prompted with that running sequence, never with a
re-rendering of its own text, so the learner scores exactly the ids that were sampled.
The environment's ids come from the chat layer's prefix-preserving rendering: the
conversation after a step renders to the previous prompt, the canonical ids of the
action, then the new ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotgym.chat import ChatFormat
from pivotgym.engines.base import Engine, SamplingParams
from pivotgym.env import AsyncEnv
from pivotgym.rl.batch import TrainSample
from pivotgym.seeds import derive_seed
from pivotgym.tasks import Task

Segment = tuple[list[int], list[float] | None]


@dataclass
class Rollout:
    """One episode: its segments (sampled ones carry logprobs), reward and budget use."""

    task: str
    index: int
    segments: list[Segment] = field(default_factory=list)
    reward: float = 0.0
    turns: int = 0
    infra_error: str | None = None
    weight_version: str = "0"
    done: bool = False

    @property
    def length(self) -> int:
        return sum(len(ids) for ids, _ in self.segments)

    @property
    def running_ids(self) -> list[int]:
        return [t for ids, _ in self.segments for t in ids]

    def train_sample(self) -> TrainSample:
        """Every assistant token trained, everything else masked; grouped by task."""
        return TrainSample.segments(
            [(ids, tuple(lps) if lps is not None else None) for ids, lps in self.segments],
            reward=self.reward,
            group=self.task,
            infra_failed=self.infra_error is not None,
            weight_version=self.weight_version,
        )


async def collect(
    engine: Engine,
    chat: ChatFormat,
    make_env: Callable[[], AsyncEnv],
    tasks: Sequence[Task],
    group_size: int,
    sampling: SamplingParams,
    *,
    max_turns: int,
    max_tokens: int,
    seed: int,
) -> list[Rollout]:
    """``group_size`` episodes of each task from its start, all turns batched together.

    An episode ends at its natural end, at ``max_turns`` assistant turns, or when its
    sequence would pass ``max_tokens``; the task's test scores it in every case.
    """
    rollouts = [Rollout(t.name, g) for t in tasks for g in range(group_size)]
    task_of = [t for t in tasks for _ in range(group_size)]
    envs = [make_env() for _ in rollouts]
    try:
        resets = await asyncio.gather(
            *(env.areset(options={"task": t}) for env, t in zip(envs, task_of, strict=True))
        )
        tools = envs[0].tools
        conversations: list[list[dict[str, Any]]] = [obs for obs, _ in resets]
        for rollout, obs in zip(rollouts, conversations, strict=True):
            rollout.segments.append((chat.prompt_ids(obs, tools), None))
        active = list(range(len(rollouts)))
        while active:
            prompts = [rollouts[i].running_ids for i in active]
            seeds = [
                derive_seed(seed, rollouts[i].task, rollouts[i].index, rollouts[i].turns)
                for i in active
            ]
            groups = await engine.generate_batch(prompts, 1, sampling, seeds=seeds)
            actions = []
            for i, group in zip(active, groups, strict=True):
                sample = group[0]
                rollouts[i].segments.append((list(sample.token_ids), list(sample.logprobs)))
                rollouts[i].weight_version = sample.weight_version
                actions.append(chat.parse(sample, first_call=rollouts[i].turns))
            results = await asyncio.gather(
                *(envs[i].astep(a) for i, a in zip(active, actions, strict=True))
            )
            still = []
            for i, action, (obs, reward, terminated, truncated, info) in zip(
                active, actions, results, strict=True
            ):
                rollout = rollouts[i]
                rollout.turns += 1
                if info.get("infra_error"):
                    rollout.infra_error = info["infra_error"]
                if terminated or truncated or rollout.infra_error:
                    rollout.reward, rollout.done = reward, True
                    continue
                before = chat.prompt_ids(conversations[i], tools) + chat.action_ids(action)
                after = chat.prompt_ids(obs, tools)
                added = after[len(before) :]
                conversations[i] = obs
                # A rendering that does not extend the previous one would misalign the
                # sampled ids with their context: end the episode there instead.
                misaligned = after[: len(before)] != before
                if (
                    misaligned
                    or rollout.turns >= max_turns
                    or rollout.length + len(added) >= max_tokens
                ):
                    rollout.reward, _ = await envs[i].evaluate()  # type: ignore[attr-defined]
                    rollout.done = True
                    continue
                rollout.segments.append((added, None))
                still.append(i)
            active = still
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))
    return rollouts
