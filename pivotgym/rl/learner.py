"""The GRPO learner: one optimiser step per batch of sampled actions, weights to the engine.

One step (:meth:`Learner.step`)::

    samples --group_advantages--> advantages, zero-variance groups dropped, failures masked
            --micro-batches------> token_logprobs -> policy_loss (batch-wide normaliser)
                                   -> backward (gradients accumulate)
            --optimizer_step-----> clip, AdamW, schedule; weight version + 1
            --push---------------> engine.load_state_dict / update_weights(path, version)

A batch is a list of :class:`~pivotgym.rl.batch.TrainSample`: PivotRL's one-turn actions
and E2E RL's multi-turn episodes (several assistant segments trained, tool outputs
masked) go through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pivotgym.rl.advantages import group_advantages
from pivotgym.rl.batch import Collated, TrainSample
from pivotgym.rl.logprobs import token_logprobs
from pivotgym.rl.loss import AGGREGATIONS, Aggregation, policy_loss
from pivotgym.rl.training import BatchCursor, OptimConfig, TrainState


@dataclass(frozen=True)
class RLConfig:
    """The algorithm's knobs (see :func:`~pivotgym.rl.loss.policy_loss` and
    :func:`~pivotgym.rl.advantages.group_advantages`).

    ``temperature`` must be the sampler's. ``decoupled`` recomputes the learner's own
    pre-update logprobs (one extra forward without gradient) to clip around them and
    correct for the sampler with a truncated importance weight capped at ``is_cap``;
    otherwise the ratio is taken against the sampler's logprobs. ``beta > 0`` needs a
    reference model. ``entropy`` logs the mean entropy of the trained tokens.
    """

    temperature: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2
    aggregation: Aggregation = "token-mean"
    beta: float = 0.0
    decoupled: bool = False
    is_cap: float = 2.0
    scale_std: bool = True
    leave_one_out: bool = False
    drop_zero_variance: bool = True
    entropy: bool = True

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


class Learner:
    """Trains ``model`` with the GRPO loss and keeps ``engine`` on the latest weights.

    ``engine`` (optional) receives the weights after every optimiser step by its
    ``weight_sync`` strategy (:mod:`pivotgym.policy.engines.weights`): an in-process engine
    copies a state dict (no copy to disk), any other loads the checkpoint written under
    ``weights_dir`` (remote engines need :meth:`astep`). ``reference`` is the frozen
    initial policy for the KL term; it is only run when ``rl.beta > 0``. ``cursor`` is
    the data position of the caller's pivot sampler, saved and restored with the
    checkpoint.
    """

    def __init__(
        self,
        model: Any,
        *,
        optim: OptimConfig | None = None,
        rl: RLConfig | None = None,
        engine: Any = None,
        reference: Any = None,
        device: str | torch.device | None = None,
        cursor: BatchCursor | None = None,
        weights_dir: str | Path | None = None,
        pad_id: int = 0,
    ) -> None:
        self.rl = rl or RLConfig()
        self.state = TrainState(model, optim or OptimConfig(), device=device, cursor=cursor)
        if self.rl.beta > 0:
            if reference is None:
                raise ValueError("beta > 0 needs a reference model")
            reference = reference.to(self.state.device).eval().requires_grad_(False)
        self.reference = reference
        self.engine = engine
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.pad_id = pad_id

    @property
    def model(self) -> Any:
        return self.state.model

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history

    # -- one step ------------------------------------------------------------------------

    def step(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        """One optimiser step on ``samples``, weights pushed to an in-process engine;
        returns the step's metrics (also appended to :attr:`history`)."""
        metrics = self._train(samples)
        if self.engine is not None and metrics["updated"]:
            self.engine.weight_sync.push_sync(
                self.engine, self._weights, self.save_weights, str(self.version)
            )
        return metrics

    async def astep(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        """:meth:`step` off the event loop, then the weights pushed with the engine's
        async API."""
        import asyncio

        metrics = await asyncio.to_thread(self._train, samples)
        if self.engine is not None and metrics["updated"]:
            await self.engine.weight_sync.push(
                self.engine, self._weights, self.save_weights, str(self.version)
            )
        return metrics

    def prepare(self, samples: Sequence[TrainSample]) -> tuple[list[TrainSample], dict[str, float]]:
        """The samples that get loss, with their advantages set, and the group metrics."""
        given = [s.advantage is not None for s in samples]
        if all(given):
            kept = [s for s in samples if not s.infra_failed]
            valid = [s.reward for s in kept if s.reward is not None]
            info = {"groups": float("nan"), "zero_variance_groups": float("nan")}
        elif any(given):
            raise ValueError("give every sample an advantage, or none (rewards and groups)")
        else:
            if any(s.group is None for s in samples):
                raise ValueError("samples without an advantage need a group id")
            rewards = [s.reward if not s.infra_failed else float("nan") for s in samples]
            if any(r is None for r in rewards):
                raise ValueError("samples without an advantage need a reward")
            adv = group_advantages(
                rewards,
                [s.group for s in samples],
                infra_failed=[s.infra_failed for s in samples],
                scale_std=self.rl.scale_std,
                leave_one_out=self.rl.leave_one_out,
                drop_zero_variance=self.rl.drop_zero_variance,
            )
            kept = [
                _with_advantage(s, float(a))
                for s, a, t in zip(samples, adv.advantages, adv.trained, strict=True)
                if t
            ]
            valid = [s.reward for s in samples if not s.infra_failed]
            info = {
                "groups": float(adv.groups),
                "zero_variance_groups": float(adv.zero_variance_groups),
            }
        info["infra_failed"] = float(sum(s.infra_failed for s in samples))
        info["reward_mean"] = float(np.mean(valid)) if valid else float("nan")
        for s in kept:
            if s.num_trained and not s.old_logprobs:
                raise ValueError("an RL sample needs the sampler's logprobs of its tokens")
        return kept, info

    def accumulate(self, samples: Sequence[TrainSample]) -> tuple[float, dict[str, float]]:
        """Forward and backward over ``samples`` (advantages set) in micro-batches,
        normalised by the counts of the whole list; gradients left in ``.grad``."""
        tokens = sum(s.num_trained for s in samples)
        sequences = len(samples)
        rl = self.rl

        def micro_loss(batch: Collated):
            logprobs, entropy = token_logprobs(
                self.model, batch, rl.temperature, with_entropy=rl.entropy
            )
            extra: dict[str, torch.Tensor] = {}
            if rl.decoupled:
                with torch.no_grad():
                    extra["proximal_logprobs"] = token_logprobs(self.model, batch, rl.temperature)[
                        0
                    ]
            if rl.beta > 0:
                with torch.no_grad():
                    extra["ref_logprobs"] = token_logprobs(self.reference, batch, rl.temperature)[0]
            loss, stats = policy_loss(
                logprobs,
                batch.old_logprobs,
                batch.advantages,
                batch.mask,
                total_tokens=tokens,
                total_sequences=sequences,
                clip_low=rl.clip_low,
                clip_high=rl.clip_high,
                aggregation=rl.aggregation,
                is_cap=rl.is_cap,
                beta=rl.beta,
                **extra,
            )
            if entropy is not None:
                stats["entropy"] = (entropy * batch.mask).sum()
            return loss, stats

        return self.state.accumulate(samples, micro_loss, self.pad_id)

    def _train(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        start = time.perf_counter()
        kept, metrics = self.prepare(samples)
        tokens = sum(s.num_trained for s in kept)
        metrics.update(sequences=float(len(kept)), tokens=float(tokens))
        staleness = [
            self.version - int(s.weight_version) for s in kept if s.weight_version.isdigit()
        ]
        metrics["staleness_max"] = float(max(staleness)) if staleness else float("nan")
        if tokens == 0:  # every group dropped: nothing to learn from, weights unchanged
            metrics.update(
                updated=0.0, step=float(self.state.step), weight_version=float(self.version)
            )
            metrics["time_s"] = time.perf_counter() - start
            return self.state.record(metrics)
        loss, sums = self.accumulate(kept)
        metrics["loss"] = loss
        for key, value in sums.items():
            name = {"clipped": "clip_frac", "is_capped": "is_capped_frac"}.get(key, key)
            metrics[name] = value / tokens
        metrics.update(self.state.optimizer_step())
        elapsed = time.perf_counter() - start
        metrics.update(
            updated=1.0,
            step=float(self.state.step),
            weight_version=float(self.version),
            time_s=elapsed,
            tokens_per_s=tokens / elapsed,
        )
        return self.state.record(metrics)

    # -- weights and checkpoints ---------------------------------------------------------

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.model.state_dict().items()}

    def save_weights(self) -> Path:
        """Write the current weights to ``weights_dir/v<version>`` (an HF checkpoint)."""
        if self.weights_dir is None:
            raise ValueError("pushing weights to this engine needs a weights_dir")
        path = self.weights_dir / f"v{self.version}"
        self.model.save_pretrained(path)
        return path

    def save(self, path: str | Path) -> Path:
        """Checkpoint everything a resumed run needs (see :mod:`pivotgym.rl.training`)."""
        return self.state.save(path, extra={"kind": "grpo"})

    def load(self, path: str | Path) -> None:
        """Resume from :meth:`save`'s checkpoint. An in-process engine is brought to its
        weights here; a remote one loads the checkpoint folder itself with
        ``update_weights(path, str(learner.version))``."""
        extra = self.state.load(path)
        if extra.get("kind") != "grpo":
            raise ValueError(f"{path} is not a GRPO learner checkpoint")
        if self.engine is not None and not self.engine.weight_sync.needs_checkpoint:
            self.engine.weight_sync.push_sync(
                self.engine, self._weights, self.save_weights, str(self.version)
            )


def _with_advantage(sample: TrainSample, advantage: float) -> TrainSample:
    return replace(sample, advantage=advantage)
