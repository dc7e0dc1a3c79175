"""An engine wrapper that charges every sample it draws to a run's cost ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotgym.core.ledger import Ledger
from pivotgym.policy.engines.base import Engine, Sample, SamplingParams
from pivotgym.policy.engines.weights import WeightSync


class CountingEngine(Engine):
    """An engine that charges every sample it draws to a :class:`Ledger`."""

    def __init__(self, inner: Engine, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    @property
    def weight_version(self) -> str:
        return self.inner.weight_version

    @property
    def weight_sync(self) -> WeightSync:  # type: ignore[override]
        return self.inner.weight_sync

    def _charge(self, prompts: Sequence[Sequence[int]], groups: Sequence[Sequence[Sample]]) -> None:
        self.ledger.count(
            model_calls=sum(len(g) for g in groups),
            prompt_tokens=sum(len(p) * len(g) for p, g in zip(prompts, groups, strict=True)),
            generated_tokens=sum(len(s.token_ids) for g in groups for s in g),
        )

    async def generate(
        self, prompt_ids: Sequence[int], n: int, sampling: SamplingParams
    ) -> list[Sample]:
        with self.ledger.stage("sampling"):
            samples = await self.inner.generate(prompt_ids, n, sampling)
        self._charge([prompt_ids], [samples])
        return samples

    async def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        sampling: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        with self.ledger.stage("sampling"):
            groups = await self.inner.generate_batch(prompts, n, sampling, seeds=seeds)
        self._charge(prompts, groups)
        return groups

    async def update_weights(self, path: str, version: str) -> None:
        with self.ledger.stage("weight_sync"):
            await self.inner.update_weights(path, version)

    def __getattr__(self, name: str) -> Any:
        # The inner engine's own methods (those its weight_sync strategy calls) pass
        # through the wrapper; in-memory weight loads are charged to weight_sync.
        attr = getattr(self.inner, name)
        if name == "load_state_dict":

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with self.ledger.stage("weight_sync"):
                    return await attr(*args, **kwargs)

            return timed_async
        if name == "load_state_dict_sync":

            def timed(*args: Any, **kwargs: Any) -> Any:
                with self.ledger.stage("weight_sync"):
                    return attr(*args, **kwargs)

            return timed
        return attr

    async def aclose(self) -> None:
        await self.inner.aclose()
