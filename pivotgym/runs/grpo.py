"""What the two RL methods share: the GRPO learner built from ``[train]``, training-time
sampling, the learner step charged to the ledger, and the loop on the learner."""

from __future__ import annotations

from typing import Any

from pivotgym.policy.engines.base import SamplingParams
from pivotgym.rl.batch import TrainSample
from pivotgym.rl.learner import Learner, RLConfig
from pivotgym.rl.training import BatchCursor, OptimConfig
from pivotgym.runs.run import Run


class GRPORun(Run):
    def learner(self, n_items: int, per_step: int, steps: int) -> Learner:
        """The GRPO learner over ``n_items`` (pivots or tasks), ``per_step`` a step, its
        learning-rate schedule spread over the method's ``steps``."""
        t, p = self.config.train, self.config.profile
        optim = OptimConfig(
            lr=t.lr,
            warmup_steps=t.warmup_steps,
            schedule=t.schedule,  # type: ignore[arg-type]
            total_steps=steps,
            max_grad_norm=t.max_grad_norm,
            micro_batch_size=t.micro_batch_size,
        )
        rl = RLConfig(
            temperature=p.temperature,
            clip_low=t.clip_low,
            clip_high=t.clip_high,
            beta=t.beta,
            aggregation=t.aggregation,  # type: ignore[arg-type]
            scale_std=t.scale_std,
            leave_one_out=t.leave_one_out,
        )
        reference = None
        if t.beta > 0:
            from pivotgym.policy import models

            reference, _ = models.load(models.resolve(self.config.model), device=self.config.device)
        return Learner(
            self.stack.policy,
            optim=optim,
            rl=rl,
            engine=self.engine,
            reference=reference,
            device=self.config.device,
            cursor=BatchCursor(n_items, per_step, seed=self.config.seed),
            weights_dir=self.out / "weights",
            pad_id=self.stack.tokenizer.pad_token_id or 0,
        )

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        """How the policy samples while training: π0's profiling temperature."""
        return SamplingParams(
            temperature=self.config.profile.temperature,
            top_p=1.0,
            top_k=-1,
            max_new_tokens=max_new_tokens,
            stop_token_ids=tuple(self.stack.chat.stop_ids),
            seed=0,
        )

    async def learn(self, learner: Learner, samples: list[TrainSample]) -> dict[str, Any]:
        metrics = await learner.astep(samples)
        self.ledger.count(learner_tokens=metrics["tokens"], optimizer_steps=metrics["updated"])
        self.ledger.seconds["learning"] += metrics["time_s"]
        metrics["ledger"] = self.ledger.snapshot()
        return metrics

    async def train(self, learner: Learner, steps: int, step: Any) -> None:
        """The loop on ``learner``, the engine brought to a resumed checkpoint's weights."""

        async def resumed() -> None:
            if self.engine.weight_sync.needs_checkpoint:  # an in-process one loaded already
                path = learner.save_weights()
                await self.engine.update_weights(str(path), str(learner.version))

        await self.loop(learner, steps, step, curve=True, resumed=resumed)
