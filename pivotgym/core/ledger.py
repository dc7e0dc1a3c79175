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

The engine is counted by wrapping it in
:class:`~pivotgym.policy.engines.counting.CountingEngine`; environments count
their own steps into the ledger they are given (forks share it).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
