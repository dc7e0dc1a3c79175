"""``pivotgym sft``: the SFT baseline on the trajectories behind the same candidate pool,
loss on the assistant turns only, each conversation cut at the model's context."""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

from pivotgym.rl.sft import SFTTrainer, sft_sample
from pivotgym.rl.training import OptimConfig
from pivotgym.runs.run import Run, console


class SFT(Run):
    method = "sft"

    async def execute(self) -> dict[str, Any]:
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        wanted = {c.trajectory.id for c in pool}
        trajectories = [t for t in self.trajectories() if t.id in wanted]
        limit = self.stack.chat.context_length
        every = [
            sft_sample(
                self.stack.chat,
                t.messages,
                t.tools if t.tools is not None else self.tools,
                max_tokens=limit,
            )
            for t in trajectories
        ]
        examples = [e for e in every if e.num_trained]
        unread = len(every) - len(examples)
        base = await self.timed_eval("base")
        if not examples:
            # A result, as PivotRL's without pivots: no trajectory has a turn within the
            # model's context, so nothing is trained and the policy stays π0.
            console.print(
                f"[yellow]no trajectory has an assistant turn within the model's context "
                f"({limit} tokens): nothing to train on; the policy stays π0[/]"
            )
            final = self.out / "eval_final.json"
            if not final.exists():  # the same weights: their evaluation is π0's
                shutil.copyfile(self.out / "eval_base.json", final)
            return await self.finish(self.stack.policy, base, start, trajectories=0,
                                     beyond_context_examples=unread, train_steps=0)  # fmt: skip
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
        return await self.finish(trainer.model, base, start, trajectories=len(examples),
                                 beyond_context_examples=unread)  # fmt: skip
