"""The engine protocol shared by the in-process torch engine and the SGLang client.

Token in, token out: prompts are token ids rendered by the chat layer, and samples
carry the exact action token ids the model produced (including the stop token it
emitted) with their per-token logprobs, so the learner scores the very ids that were
sampled. Sampling parameters are always complete: an engine never fills a default.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pivotgym.policy.engines.weights import DISK, WeightSync

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class SamplingParams:
    """Every knob of sampling, always sent in full.

    ``temperature`` 0 means greedy. ``top_k`` of -1 and ``top_p`` of 1.0 disable those
    filters. Generation stops after ``max_new_tokens`` or right after emitting one of
    ``stop_token_ids`` (which is kept in the sample). ``seed`` makes sampling repeatable;
    ``None`` draws fresh randomness.
    """

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    stop_token_ids: tuple[int, ...]
    seed: int | None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"top_k must be -1 (off) or positive, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_token_ids"] = list(self.stop_token_ids)
        return data


@dataclass(frozen=True)
class Sample:
    """One sampled continuation of a prompt.

    ``logprobs[i]`` is the log-probability of ``token_ids[i]`` under the distribution
    it was sampled from at ``temperature`` (before top-k/top-p truncation renormalises
    it; see the engine's docs). ``weight_version`` names the weights that produced it.
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: FinishReason
    weight_version: str


class Engine(abc.ABC):
    """An asynchronous sampler over token ids.

    ``weight_sync`` is how new weights reach it (:mod:`pivotgym.policy.engines.weights`): by
    default the checkpoint folder that :meth:`update_weights` loads."""

    weight_sync: WeightSync = DISK

    @property
    @abc.abstractmethod
    def weight_version(self) -> str:
        """The version of the weights new samples come from."""

    @abc.abstractmethod
    async def generate(
        self, prompt_ids: Sequence[int], n: int, sampling: SamplingParams
    ) -> list[Sample]:
        """``n`` samples continuing one prompt."""

    async def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        sampling: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        """``n`` samples for each prompt; engines override this to batch prompts together.

        ``seeds[j]``, when given, replaces ``sampling.seed`` for prompt ``j``: a caller that
        seeds each prompt from its own identity (a candidate, an episode) gets the same
        samples whatever else shares the batch.
        """
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        if seeds is None:
            return [await self.generate(p, n, sampling) for p in prompts]
        return [
            await self.generate(p, n, replace(sampling, seed=s))
            for p, s in zip(prompts, seeds, strict=True)
        ]

    @abc.abstractmethod
    async def update_weights(self, path: str, version: str) -> None:
        """Load the checkpoint at ``path``; samples after this carry ``version``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the engine's resources."""
