"""One cost ledger for every method: what was sampled, stepped, learned, and how long it took.

PivotRL, E2E RL and SFT are compared on the same ledger, so each count means one thing:

- ``model_calls``: sampled assistant turns (rollout turns): one per sample drawn, so a
  group of 8 at one prompt is 8;
- ``prompt_tokens`` / ``generated_tokens``: tokens the engine read (once per sample, as
  a server without prefix caching would) and wrote;
- ``env_steps``: environment steps (assistant turns executed, in episodes, in
  verification branches, and in replays that restore a state);
- ``learner_tokens``: tokens that carried loss in optimiser steps; ``optimizer_steps``;
- ``seconds[stage]``: wall-clock per stage (``profiling``, ``sampling``, ``verification``,
  ``environment``, ``learning``, ``weight_sync``, ``evaluation``). Stages may nest
  (sampling inside profiling), so they do not add up to the total.

The engine is counted by wrapping it in :class:`CountingEngine`; environments count
their own steps into the ledger they are given (forks share it).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotgym.engines.base import Engine, Sample, SamplingParams
from pivotgym.engines.weights import WeightSync

COUNTS = (
    "model_calls",
    "prompt_tokens",
    "generated_tokens",
    "env_steps",
    "learner_tokens",
    "optimizer_steps",
)


@dataclass
class Ledger:
    """Counts and seconds of a run; see the module docstring for what each means."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)

    def count(self, **amounts: float) -> None:
        for name, amount in amounts.items():
            if name not in COUNTS:
                raise KeyError(f"unknown ledger count {name!r} (known: {', '.join(COUNTS)})")
            self.counts[name] += amount

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge the wall-clock of the ``with`` block to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: self.counts.get(name, 0) for name in COUNTS},
            "seconds": dict(sorted(self.seconds.items())),
        }

    def snapshot(self) -> dict[str, Any]:
        """The ledger now, for a curve point (accuracy against turns and seconds)."""
        return self.to_json()


def load_ledger(path: Path) -> Ledger:
    """The ledger saved at ``path`` by an earlier part of the same run, or a new one."""
    if not path.is_file():
        return Ledger()
    data = json.loads(path.read_text())
    seconds = data.pop("seconds", {})
    return Ledger(Counter({k: v for k, v in data.items() if k in COUNTS}), Counter(seconds))


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
