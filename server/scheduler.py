"""Batches concurrent sampling requests onto one engine, and brackets weight updates.

The engine runs on a thread of its own with its own event loop, so the HTTP side stays
responsive (``/health`` answers during a long generation). Requests that arrive while
the engine is busy, or within ``window_s`` of each other, are sampled together: groups
with the same sampling parameters and group size go to the engine as one
``generate_batch`` call, just as an in-process caller batches prompts.

Generation can be paused (SGLang's ``/pause_generation``): ``abort`` answers queued
requests at once with ``finish_reason`` ``abort``; ``retract`` and ``in_place`` keep
them queued until generation continues. The batch on the engine always runs to its end
under the weights it started with (its samples carry that version), so a pause returns
once the engine is idle, and a weight update waits for idleness too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pivotgym.engines.base import Engine, Sample, SamplingParams

T = TypeVar("T")
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


class EngineThread:
    """Owns the engine: every call to it runs on one thread's event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run ``coro`` on the engine's loop; await the result from any other loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.engine.aclose(), self._loop)
        try:
            future.result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


class Scheduler:
    """Queues groups, runs them on the engine in batches, pauses and updates weights."""

    def __init__(self, engine: Engine, *, window_s: float = 0.002) -> None:
        self.worker = EngineThread(engine)
        self.window_s = window_s
        self._queue: list[Group] = []
        self._cond = asyncio.Condition()
        self._paused = False
        self._updating = False
        self._running = 0  # groups on the engine right now
        self._task: asyncio.Task[None] | None = None

    @property
    def weight_version(self) -> str:
        return self.worker.engine.weight_version

    @property
    def paused(self) -> bool:
        return self._paused

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
        await asyncio.to_thread(self.worker.close)

    async def submit(self, groups: list[Group]) -> None:
        async with self._cond:
            self._queue.extend(groups)
            self._cond.notify_all()

    def new_group(self, prompt: tuple[int, ...], n: int, sampling: SamplingParams) -> Group:
        return Group(prompt, n, sampling, asyncio.get_running_loop().create_future())

    async def pause(self, mode: PauseMode) -> int:
        """Stop starting new batches; return once the engine is idle.

        Returns the number of queued groups aborted (``abort`` mode) or held.
        """
        async with self._cond:
            self._paused = True
            held = len(self._queue)
            if mode == "abort":
                for group in self._queue:
                    if not group.result.done():
                        group.result.set_exception(Aborted("aborted by pause_generation"))
                self._queue.clear()
            await self._cond.wait_for(lambda: self._running == 0)
            return held

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
            await self.worker.call(self.worker.engine.update_weights(path, version))
        finally:
            async with self._cond:
                self._updating = False
                self._cond.notify_all()
        return held

    async def idle(self) -> bool:
        async with self._cond:
            return self._running == 0

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
                batch, self._queue = self._queue, []
                batch = [g for g in batch if not g.result.done()]  # cancelled by clients
                self._running = len(batch)
            try:
                await self._run(batch)
            finally:
                async with self._cond:
                    self._running = 0
                    self._cond.notify_all()

    async def _run(self, batch: list[Group]) -> None:
        buckets: dict[tuple[int, SamplingParams], list[Group]] = {}
        for group in batch:
            buckets.setdefault((group.n, group.sampling), []).append(group)
        engine = self.worker.engine
        for (n, sampling), groups in buckets.items():
            try:
                if len(groups) == 1:
                    results = [
                        await self.worker.call(engine.generate(groups[0].prompt, n, sampling))
                    ]
                else:
                    prompts = [g.prompt for g in groups]
                    results = await self.worker.call(engine.generate_batch(prompts, n, sampling))
            except Exception as exc:  # the engine failed: every group of the call fails
                for group in groups:
                    if not group.result.done():
                        group.result.set_exception(exc)
                continue
            for group, samples in zip(groups, results, strict=True):
                if not group.result.done():
                    group.result.set_result(samples)
