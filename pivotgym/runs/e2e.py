"""``pivotgym e2e``: the E2E RL baseline, whole on-policy episodes from the start of the
tasks behind the same trajectories, trained with the same learner and loss."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pivotgym.core.seeds import derive_seed
from pivotgym.core.task import Task
from pivotgym.rl.learner import Learner
from pivotgym.rl.rollouts import collect
from pivotgym.runs.grpo import GRPORun


class E2E(GRPORun):
    method = "e2e"

    async def execute(self) -> dict[str, Any]:
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        behind = {c.trajectory.id: c.trajectory for c in pool}  # in order of first turn
        tasks = list(self.spec.format().from_trajectories(list(behind.values())))
        base = await self.timed_eval("base")
        mark = time.perf_counter()
        e = self.config.e2e
        learner = self.learner(len(tasks), e.tasks_per_step, e.steps)
        await self.train(learner, e.steps, lambda: self.step(learner, tasks))
        self.timings["train_s"] = time.perf_counter() - mark
        return await self.finish(learner.model, base, start, tasks=len(tasks))

    async def step(self, learner: Learner, tasks: Sequence[Task]) -> dict[str, Any]:
        """A group of whole episodes for each of the next tasks, one GRPO step."""
        e = self.config.e2e
        assert learner.state.cursor is not None
        batch = [tasks[i] for i in learner.state.cursor.next()]
        started = time.perf_counter()
        rollouts = await collect(
            self.engine,
            self.stack.chat,
            self.make_env,
            batch,
            e.group_size,
            self.sampling(self.config.train.max_new_tokens),
            max_turns=e.max_turns,
            max_tokens=e.max_tokens,
            seed=derive_seed(self.config.seed, "e2e", len(learner.history)),
        )
        rolled = time.perf_counter()
        metrics = await self.learn(learner, [r.train_sample() for r in rollouts])
        metrics.update(
            rollout_s=rolled - started,
            episode_turns=sum(r.turns for r in rollouts) / len(rollouts),
        )
        return metrics
