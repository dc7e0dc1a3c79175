"""Multi-turn on-policy episodes kept as token ids: E2E RL's samples and evaluation's
episodes.

Token in, token out across turns: an episode's sequence is the first prompt's ids, then
for every turn the ids the policy sampled (trained, with their logprobs) followed by
the ids the environment added before the next generation prompt (masked: tool output,
turn markers). The policy is prompted with that running sequence, never with a
re-rendering of its own text, so the learner scores exactly the ids that were sampled.
The environment's ids come from the chat layer's prefix-preserving rendering: the
conversation after a step renders to the previous prompt, the canonical ids of the
action, then the new ids.

No episode runs past the model's context (:attr:`ChatFormat.context_length`): one whose
next prompt would leave less room than ``max_new_tokens`` ends there and its test scores it;
one whose first prompt already does (a task the model cannot read) ends before its first
turn, scored as a cut episode, with nothing sampled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotgym.core.env import AsyncEnv
from pivotgym.core.seeds import derive_seed
from pivotgym.core.task import Task
from pivotgym.errors import InfraError
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, SamplingParams
from pivotgym.rl.batch import TrainSample

Segment = tuple[list[int], list[float] | None]

# Episodes holding an environment at once. Each bwrap sandbox is a tmpfs mount on the
# host, and every exec copies the host's mount table into its new namespace: with 240
# live sandboxes an exec cost 26 ms of CPU against 7.5 ms with one (measured on 2
# cores). A window this wide still gives the engine batches of this many rows.
MAX_LIVE = 64


@dataclass
class Rollout:
    """One episode: its segments (sampled ones carry logprobs), reward and budget use.

    ``index`` numbers the episodes of one task (a group member, or an evaluation attempt);
    ``messages`` is the conversation as it ended.
    """

    task: str
    index: int
    family: str | None = None
    segments: list[Segment] = field(default_factory=list)
    reward: float = 0.0
    turns: int = 0
    malformed_turns: int = 0
    generated_tokens: int = 0
    infra_error: str | None = None
    weight_version: str = "0"
    done: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)

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
    seed: int,
    max_turns: int | None = None,
    max_tokens: int | None = None,
    max_live: int | None = MAX_LIVE,
) -> list[Rollout]:
    """``group_size`` episodes of each task from its start, all turns batched together.

    An episode ends at its natural end, at ``max_turns`` assistant turns (default: the
    environment's), or when its next prompt would leave less than
    ``sampling.max_new_tokens`` of ``max_tokens`` or of the model's context; the task's
    test scores it in every case. At most ``max_live`` episodes hold an environment at
    once (``None``: all); the next ones start, in order, as earlier ones end.
    """
    budgets = [b for b in (max_tokens, chat.context_length) if b]
    room = min(budgets) - sampling.max_new_tokens if budgets else None
    rollouts = [Rollout(t.name, g, t.family) for t in tasks for g in range(group_size)]
    task_of = [t for t in tasks for _ in range(group_size)]
    live = len(rollouts) if max_live is None else max(1, max_live)
    waiting = list(range(len(rollouts)))[::-1]  # popped from the end: in order
    envs: dict[int, AsyncEnv] = {}
    conversations: dict[int, list[dict[str, Any]]] = {}
    active: list[int] = []
    try:
        while active or waiting:
            starting = [waiting.pop() for _ in range(min(live - len(active), len(waiting)))]
            for i in starting:
                envs[i] = make_env()
            resets = await asyncio.gather(
                *(envs[i].areset(options={"task": task_of[i]}) for i in starting)
            )
            unread = []
            for i, (obs, _) in zip(starting, resets, strict=True):
                conversations[i] = obs
                rollouts[i].segments.append((chat.prompt_ids(obs, envs[i].tools), None))
                if room is not None and rollouts[i].length > room:
                    unread.append(i)
            for i in unread:
                try:
                    rollouts[i].reward, _ = await envs[i].aevaluate(terminated=False)
                except InfraError as exc:
                    rollouts[i].infra_error = str(exc)
                rollouts[i].done = True
                await envs.pop(i).aclose()
                del conversations[i]
            active += [i for i in starting if i not in unread]
            if not active:
                continue
            prompts = [rollouts[i].running_ids for i in active]
            seeds = [
                derive_seed(seed, rollouts[i].task, rollouts[i].index, rollouts[i].turns)
                for i in active
            ]
            groups = await engine.generate_batch(prompts, 1, sampling, seeds=seeds)
            actions = []
            for i, group in zip(active, groups, strict=True):
                sample, rollout = group[0], rollouts[i]
                rollout.segments.append((list(sample.token_ids), list(sample.logprobs)))
                rollout.weight_version = sample.weight_version
                rollout.generated_tokens += len(sample.token_ids)
                action = chat.parse(sample, first_call=rollout.turns)
                rollout.malformed_turns += bool(action.get("parse_error"))
                actions.append(action)
            results = await asyncio.gather(
                *(envs[i].astep(a) for i, a in zip(active, actions, strict=True))
            )
            still, ended = [], []
            for i, action, (obs, reward, terminated, truncated, info) in zip(
                active, actions, results, strict=True
            ):
                rollout, env = rollouts[i], envs[i]
                rollout.turns += 1
                rollout.messages = obs
                if info.get("infra_error"):
                    rollout.infra_error = info["infra_error"]
                if terminated or truncated or rollout.infra_error:
                    rollout.reward, rollout.done = reward, True
                    ended.append(i)
                    continue
                before = chat.prompt_ids(conversations[i], env.tools) + chat.action_ids(action)
                after = chat.prompt_ids(obs, env.tools)
                added = after[len(before) :]
                conversations[i] = obs
                # A rendering that does not extend the previous one would misalign the
                # sampled ids with their context: end the episode there instead.
                misaligned = after[: len(before)] != before
                if (
                    misaligned
                    or (max_turns is not None and rollout.turns >= max_turns)
                    or (room is not None and rollout.length + len(added) > room)
                ):
                    try:
                        # The rollout's own limit cut it: graded as a cut episode.
                        rollout.reward, _ = await env.aevaluate(terminated=False)
                    except InfraError as exc:  # counted as such, like a step's
                        rollout.infra_error = str(exc)
                    rollout.done = True
                    ended.append(i)
                    continue
                rollout.segments.append((added, None))
                still.append(i)
            # An ended episode gives its sandbox back at once: every live sandbox makes
            # each new one's exec slower (see MAX_LIVE).
            await asyncio.gather(*(envs.pop(i).aclose() for i in ended))
            for i in ended:
                del conversations[i]
            active = still
    finally:
        await asyncio.gather(*(env.aclose() for env in envs.values()))
    return rollouts
