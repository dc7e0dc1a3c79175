"""Batches concurrent sampling requests onto one engine, and brackets weight updates.

Groups that arrive while the engine is busy, or within ``window_s`` of each other, are
sampled together. With the torch engine, every group that shares sampling parameters
(seed aside) goes into one ``generate_sync`` call, each group with the per-row seeds
that ``engine.generate(prompt, n, seed)`` would use, so a group samples exactly what it
would alone while the batch decodes as one. Any other engine gets one ``generate`` call
per group.

Generation can be paused (SGLang's ``/pause_generation``): ``abort`` drops queued groups
at once; ``retract`` and ``in_place`` keep them queued until generation continues. The
batch on the engine always runs to its end under the weights it started with (its
samples carry that version), so a pause returns once the engine is idle, and a weight
update waits for idleness too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pivotgym.policy.engines.base import Engine, Sample, SamplingParams

PauseMode = Literal["abort", "retract", "in_place"]


class Aborted(Exception):
    """The group was dropped from the queue by ``pause_generation(mode="abort")``."""


@dataclass
class Group:
    """``n`` samples of one prompt, as the engine API asks for them."""

    prompt: tuple[int, ...]
    n: int
    sampling: SamplingParams
    result: asyncio.Future[list[Sample]] = field(repr=False)
    queued_at: float = field(default_factory=time.perf_counter)


class Scheduler:
    """Queues groups, runs them on the engine in batches, pauses and updates weights."""

    def __init__(self, engine: Engine, *, window_s: float = 0.002) -> None:
        self.engine = engine
        self.window_s = window_s
        self._queue: list[Group] = []
        self._cond = asyncio.Condition()
        self._paused = False
        self._updating = False
        self._running = 0  # groups on the engine right now
        self._task: asyncio.Task[None] | None = None

    @property
    def weight_version(self) -> str:
        return self.engine.weight_version

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for group in self._queue:
            if not group.result.done():
                group.result.set_exception(Aborted("server shutting down"))
        self._queue.clear()
        await self.engine.aclose()

    def new_group(self, prompt: tuple[int, ...], n: int, sampling: SamplingParams) -> Group:
        return Group(prompt, n, sampling, asyncio.get_running_loop().create_future())

    async def submit(self, groups: list[Group]) -> None:
        async with self._cond:
            self._queue.extend(groups)
            self._cond.notify_all()

    async def pause(self, mode: PauseMode) -> int:
        """Stop starting batches and return once the engine is idle.

        Returns the number of queued groups: aborted (``abort`` mode) or held.
        """
        async with self._cond:
            self._paused = True
            queued = len(self._queue)
            if mode == "abort":
                for group in self._queue:
                    if not group.result.done():
                        group.result.set_exception(Aborted("aborted by pause_generation"))
                self._queue.clear()
            await self._cond.wait_for(lambda: self._running == 0)
            return queued

    async def resume(self) -> None:
        async with self._cond:
            self._paused = False
            self._cond.notify_all()

    async def update_weights(self, path: str, version: str) -> int:
        """Load new weights once the engine is idle; returns the number of held groups."""
        async with self._cond:
            self._updating = True
            await self._cond.wait_for(lambda: self._running == 0)
            held = len(self._queue)
        try:
            await self.engine.update_weights(path, version)
        finally:
            async with self._cond:
                self._updating = False
                self._cond.notify_all()
        return held

    async def idle(self) -> bool:
        async with self._cond:
            return self._running == 0 and not self._queue

    async def _serve(self) -> None:
        while True:
            async with self._cond:
                await self._cond.wait_for(lambda: bool(self._queue))
            # Let the rest of a burst of concurrent requests land before batching.
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
            async with self._cond:
                await self._cond.wait_for(
                    lambda: bool(self._queue) and not self._paused and not self._updating
                )
                batch = [g for g in self._queue if not g.result.done()]  # not cancelled
                self._queue = []
                self._running = len(batch)
            try:
                await self._run(batch)
            finally:
                async with self._cond:
                    self._running = 0
                    self._cond.notify_all()

    async def _run(self, batch: list[Group]) -> None:
        if hasattr(self.engine, "generate_sync"):
            buckets: dict[SamplingParams, list[Group]] = {}
            for group in batch:
                unseeded = dataclasses.replace(group.sampling, seed=None)
                buckets.setdefault(unseeded, []).append(group)
            for sampling, groups in buckets.items():
                await self._settle(groups, self._generate_rows(groups, sampling))
        else:
            for group in batch:
                await self._settle([group], self._generate_one(group))

    async def _generate_rows(
        self, groups: list[Group], sampling: SamplingParams
    ) -> list[list[Sample]]:
        from pivotgym.policy.engines.torch import row_seeds

        requests = [
            (
                g.prompt,
                row_seeds(
                    g.sampling.seed if g.sampling.seed is not None else secrets.randbits(63), g.n
                ),
            )
            for g in groups
        ]
        engine: Any = self.engine
        return await asyncio.to_thread(engine.generate_sync, requests, sampling)

    async def _generate_one(self, group: Group) -> list[list[Sample]]:
        return [await self.engine.generate(group.prompt, group.n, group.sampling)]

    @staticmethod
    async def _settle(groups: list[Group], work: Any) -> None:
        try:
            results = await work
        except Exception as exc:  # the engine failed: every group of the call fails
            for group in groups:
                if not group.result.done():
                    group.result.set_exception(exc)
            return
        for group, samples in zip(groups, results, strict=True):
            if not group.result.done():
                group.result.set_result(samples)
