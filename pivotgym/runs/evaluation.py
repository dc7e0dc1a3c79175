"""Evaluation: full multi-turn episodes scored by each task's test, and the OOD skill.

Episodes are played by :func:`pivotgym.rl.rollouts.collect`, the loop E2E RL samples with:
at every turn the prompts of all live episodes (at most ``rollouts.MAX_LIVE``; the next
start as earlier ones end) go to the engine as one batch, then every live episode steps
its environment concurrently; no episode runs past the model's context. Each episode
samples with its own seed stream (derived from the seed, the task and the attempt), so
results do not depend on which other episodes share a batch (up to floating-point ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from pivotgym.core.env import AsyncEnv
from pivotgym.core.task import Task
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, SamplingParams
from pivotgym.policy.models import ood
from pivotgym.rl.rollouts import Rollout, collect


@dataclass(frozen=True)
class EpisodeReport:
    """Episodes of an evaluation (``index`` is the attempt) and their statistics."""

    episodes: list[Rollout]

    @property
    def valid(self) -> list[Rollout]:
        return [e for e in self.episodes if e.infra_error is None]

    @property
    def success_rate(self) -> float:
        """Mean over tasks of the mean success over that task's attempts."""
        by_task: dict[str, list[float]] = {}
        for e in self.valid:
            by_task.setdefault(e.task, []).append(1.0 if e.reward >= 1.0 else 0.0)
        return mean(mean(v) for v in by_task.values()) if by_task else 0.0

    def by_family(self) -> dict[str, float]:
        groups: dict[str, list[float]] = {}
        for e in self.valid:
            groups.setdefault(e.family or "?", []).append(1.0 if e.reward >= 1.0 else 0.0)
        return {k: mean(v) for k, v in sorted(groups.items())}

    def to_json(self) -> dict[str, Any]:
        valid = self.valid
        return {
            "episodes": len(self.episodes),
            "infra_errors": len(self.episodes) - len(valid),
            "success_rate": self.success_rate,
            "mean_turns": mean(e.turns for e in valid) if valid else 0.0,
            "malformed_turns": sum(e.malformed_turns for e in valid),
            "generated_tokens": sum(e.generated_tokens for e in self.episodes),
            "by_family": self.by_family(),
        }


async def run_episodes(
    engine: Engine,
    chat: ChatFormat,
    make_env: Callable[[], AsyncEnv],
    tasks: Sequence[Task],
    sampling: SamplingParams,
    *,
    attempts: int = 1,
    seed: int = 0,
) -> EpisodeReport:
    """Play every task ``attempts`` times with the engine as the policy."""
    return EpisodeReport(
        await collect(engine, chat, make_env, tasks, attempts, sampling, seed=seed)
    )


async def ood_accuracy(
    engine: Engine, chat: ChatFormat, *, n: int = 200, seed: int = 0, max_new_tokens: int = 160
) -> dict[str, Any]:
    """Greedy accuracy on the held-out out-of-domain questions (arithmetic and strings)."""
    questions = ood.eval_questions(n, seed)
    sampling = SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=max_new_tokens,
        stop_token_ids=tuple(chat.stop_ids),
        seed=seed,
    )
    prompts = chat.batch_prompt_ids([q.messages() for q in questions])
    groups = await engine.generate_batch(prompts, 1, sampling)
    # The reply's text without its stop token; a reply cut off before it is wrong.
    replies = [chat.parse(g[0]) for g in groups]
    right = [
        "parse_error" not in reply and ood.score(q, reply.get("content") or "")
        for q, reply in zip(questions, replies, strict=True)
    ]
    by_kind: dict[str, list[bool]] = {}
    for q, ok in zip(questions, right, strict=True):
        by_kind.setdefault(q.kind, []).append(ok)
    return {
        "questions": n,
        "accuracy": sum(right) / n,
        "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }


def episode_sampling(
    chat: ChatFormat, temperature: float, max_new_tokens: int = 192
) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=max_new_tokens,
        stop_token_ids=tuple(chat.stop_ids),
        seed=0,
    )
