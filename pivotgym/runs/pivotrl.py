"""``pivotgym run``: PivotRL, profile → filter → train on the pivots → evaluate.

Besides what every run writes (:mod:`pivotgym.runs.run`), its folder holds::

    profile.jsonl          one row per candidate (append-only, resumable)
    filter.json            what the filter kept and why the rest were dropped
    pivots.jsonl           the kept pivots in pivotgym's format
    pivots.nemo.jsonl      the same as NeMo-Gym pivot rows
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rich.markup import escape

from pivotgym.core.candidates import Candidate
from pivotgym.core.env import AsyncEnv
from pivotgym.core.seeds import derive_seed
from pivotgym.errors import DataError
from pivotgym.pivotrl.pivots import select_pivots, to_nemo_row, write_rows
from pivotgym.pivotrl.profiling import Profiler, ProfileSettings
from pivotgym.remote import ServedVerifier
from pivotgym.rl.batch import TrainSample
from pivotgym.rl.learner import Learner
from pivotgym.runs.config import RunConfig
from pivotgym.runs.grpo import GRPORun
from pivotgym.runs.run import Stack, console
from pivotgym.verifiers import Verifier, get_verifier
from pivotgym.verifiers.base import restore


class PivotRL(GRPORun):
    method = "pivotrl"

    def __init__(self, config: RunConfig, stack: Stack | None = None) -> None:
        super().__init__(config, stack)
        self.lambda_diff = self.config.profile.lambda_diff
        name = self.config.profile.verifier
        options = self.spec.verifier_options if name == self.spec.verifier else {}
        self.verifier: Verifier = get_verifier(name, **options)
        if self.config.env_url and name == self.spec.verifier:
            # The env's own verifier executes actions in forks of the world, which lives
            # on the server: it runs there.
            self.verifier = ServedVerifier(name, **options)

    async def execute(self) -> dict[str, Any]:
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        console.print(
            f"[bold]{len(pool)} candidates[/] from "
            f"{escape(self.config.env.label)}/{self.config.data.split}"
        )
        rows = await self.profile(pool)
        self.timings["profile_s"] = time.perf_counter() - start
        pivots = self.select(rows, pool)
        r = self.filter_report
        if self.config.train.pivot_source == "random":
            pivots = random.Random(self.config.seed).sample(pool, len(pivots))
        elif self.config.train.pivot_source != "filter":
            raise DataError("must be 'filter' or 'random'", field="train.pivot_source")
        unread = f"; {r.beyond_context} beyond the model's context" if r.beyond_context else ""
        console.print(
            f"[bold]{r.kept} pivots[/] kept of {r.candidates} ({r.kept_fraction:.0%}); "
            f"μ histogram {list(r.mean_histogram)}{unread}"
        )
        found = dict(
            candidates=r.candidates,
            pivots=r.kept,
            kept_fraction=r.kept_fraction,
            lambda_diff=self.lambda_diff,
            beyond_context=r.beyond_context,
        )
        base = await self.timed_eval("base")
        if not pivots:
            # A result, not a failure: π0 is never right (or always right) at every
            # candidate, so no turn teaches anything and the policy stays π0. The run
            # reports it as trained for no step, beside the profiling it cost.
            console.print(
                "[yellow]no candidate passed the pivot filter: nothing to train on "
                f"(λ_diff={self.lambda_diff}, see {self.out / 'filter.json'}); "
                "the policy stays π0[/]"
            )
            final = self.out / "eval_final.json"
            if not final.exists():  # the same weights: their evaluation is π0's
                shutil.copyfile(self.out / "eval_base.json", final)
            return await self.finish(self.stack.policy, base, start, **found, train_steps=0)
        mark = time.perf_counter()
        t = self.config.train
        learner = self.learner(len(pivots), t.pivots_per_step, t.steps)
        async with self.env_pool() as envs:
            await self.train(learner, t.steps, lambda: self.step(learner, pivots, envs))
        self.timings["train_s"] = time.perf_counter() - mark
        return await self.finish(learner.model, base, start, **found, train_steps=t.steps)

    async def profile(self, pool: Sequence[Candidate]) -> list[dict[str, Any]]:
        """K samples of π0 at every candidate, scored by the verifier (resumable)."""
        p = self.config.profile
        settings = ProfileSettings(
            k=p.k,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            seed=self.config.seed,
            engine_batch=p.engine_batch,
            sandbox_slots=p.sandbox_slots,
        )
        profiler = Profiler(
            engine=self.engine,
            chat=self.stack.chat,
            verifier=self.verifier,
            make_env=self.make_env,
            tools=self.tools,
            settings=settings,
        )
        with self.ledger.stage("profiling"):
            rows = await profiler.run(pool, self.out / "profile.jsonl")
        self.save_ledger()
        return rows

    def select(self, rows: list[dict[str, Any]], pool: Sequence[Candidate]) -> list[Candidate]:
        """The pivots among the profiled candidates, written in both row formats."""
        kept, report = select_pivots(rows, self.lambda_diff)
        by_id = {c.id: c for c in pool}
        pivots = [by_id[r["candidate_id"]] for r in kept if r["candidate_id"] in by_id]
        ours = [
            {
                "pivot_id": c.id,
                "trajectory_id": c.trajectory.id,
                "turn": c.turn,
                "env": c.env,
                "task": c.trajectory.task,
                "prefix": c.prefix,
                "reference": c.reference,
                "tools": c.tools_or(self.tools),
                "profile": {k: r[k] for k in ("mean", "variance", "k", "rewards")},
            }
            for c, r in zip(pivots, kept, strict=True)
        ]
        write_rows(ours, self.out / "pivots.jsonl")
        write_rows((to_nemo_row(p) for p in ours), self.out / "pivots.nemo.jsonl")
        (self.out / "filter.json").write_text(json.dumps(report.to_json(), indent=2))
        self.filter_report = report
        return pivots

    async def step(
        self, learner: Learner, pivots: Sequence[Candidate], envs: asyncio.Queue[AsyncEnv]
    ) -> dict[str, Any]:
        """Sample a group at each of the next pivots with the current policy, score the
        groups with the profiling verifier, and take one GRPO step on them."""
        t, chat = self.config.train, self.stack.chat
        assert learner.state.cursor is not None
        step = len(learner.history)
        batch = [pivots[i] for i in learner.state.cursor.next()]
        prompts = chat.batch_prompt_ids(
            [c.prefix for c in batch], each_tools=[c.tools_or(self.tools) for c in batch]
        )
        seeds = [derive_seed(self.config.seed, "train", step, c.id) for c in batch]
        sampling = self.sampling(t.max_new_tokens)
        started = time.perf_counter()
        groups = await self.engine.generate_batch(prompts, t.group_size, sampling, seeds=seeds)
        sampled = time.perf_counter()
        verdicts = await asyncio.gather(
            *(
                self.rewards(c, [chat.parse(s) for s in g], envs)
                for c, g in zip(batch, groups, strict=True)
            )
        )
        verified = time.perf_counter()
        samples = [
            TrainSample.turn(prompt, s, reward=v.reward, group=c.id, infra_failed=v.infra_error)
            for c, prompt, g, vs in zip(batch, prompts, groups, verdicts, strict=True)
            for s, v in zip(g, vs, strict=True)
        ]
        metrics = await self.learn(learner, samples)
        metrics.update(sample_s=sampled - started, verify_s=verified - sampled)
        return metrics

    async def rewards(
        self, candidate: Candidate, actions: list[dict[str, Any]], envs: asyncio.Queue[AsyncEnv]
    ):
        """The verifier's verdicts on ``actions`` at ``candidate``, in an env of the pool."""
        env = await envs.get()
        try:
            with self.ledger.stage("verification"):
                state = await restore(env, candidate)
                return await self.verifier.verify_many(state, actions, candidate.reference)
        finally:
            envs.put_nowait(env)

    @contextlib.asynccontextmanager
    async def env_pool(self) -> AsyncIterator[asyncio.Queue[AsyncEnv]]:
        """``profile.sandbox_slots`` envs that the steps' verifications take and give back."""
        envs: asyncio.Queue[AsyncEnv] = asyncio.Queue()
        for _ in range(self.config.profile.sandbox_slots):
            envs.put_nowait(self.make_env())
        try:
            yield envs
        finally:
            while not envs.empty():
                await envs.get_nowait().aclose()
