"""``pivotgym sft``: the SFT baseline on the trajectories behind the same candidate pool,
loss on the assistant turns only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pivotgym.rl.sft import SFTTrainer, sft_sample
from pivotgym.rl.training import OptimConfig
from pivotgym.runs.run import Run


class SFT(Run):
    method = "sft"

    async def execute(self) -> dict[str, Any]:
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        wanted = {c.trajectory.id for c in pool}
        trajectories = [t for t in self.trajectories() if t.id in wanted]
        examples = [
            sft_sample(self.stack.chat, t.messages, t.tools if t.tools is not None else self.tools)
            for t in trajectories
        ]
        s = self.config.sft
        optim = OptimConfig(
            lr=s.lr, warmup_steps=s.warmup_steps, micro_batch_size=s.micro_batch_size
        )
        trainer = SFTTrainer(
            self.stack.policy,
            examples,
            optim=optim,
            batch_size=s.batch_size,
            seed=self.config.seed,
            device=self.config.device,
            pad_id=self.stack.tokenizer.pad_token_id or 0,
        )
        base = await self.timed_eval("base")
        mark = time.perf_counter()

        async def step() -> dict[str, Any]:
            metrics = await asyncio.to_thread(trainer.step)
            self.ledger.count(learner_tokens=metrics["tokens"], optimizer_steps=1)
            self.ledger.seconds["learning"] += metrics["time_s"]
            return metrics

        # No curve points: the engine serves π0 until the trained weights are pushed.
        await self.loop(trainer, s.steps, step, curve=False)
        self.timings["train_s"] = time.perf_counter() - mark
        await self.push_weights(trainer.model, f"sft-{len(trainer.history)}")
        return await self.finish(trainer.model, base, start, trajectories=len(examples))
