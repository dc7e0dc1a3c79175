"""Offline profiling: K actions of the frozen policy π0 at every candidate, scored.

For each candidate ``(s_t, a*_t)`` the engine samples K one-turn actions from the
rendered prefix, the chat layer parses them, and the verifier scores them at ``s_t``
(for the execution verifier, in forks of an environment restored there). One JSONL row
per candidate records the rewards, reasons, mean μ, variance σ² (over the valid
samples: infrastructure failures are excluded), token counts and seconds spent.

The output is append-only and resumable: rows are flushed as candidates finish, a run
started on an existing file skips the candidates it already holds (a torn last line
from a crash is dropped), and every candidate samples with its own seed derived from
(seed, candidate id), so an interrupted-and-resumed run writes the same rows as an
uninterrupted one, in whatever order they finish. A candidate whose recorded state this
machine does not reproduce (a replayed tool output differs from the record) gets a row
whose samples are all infrastructure failures, so the filter never keeps it. A candidate
whose prompt leaves the model less than ``max_new_tokens`` of its context is not sampled:
its row says ``beyond_context`` and has no samples, so the filter never keeps it either.

Concurrency: sampling runs ``engine_batch`` candidates per engine call while the
previous batch is verified with at most ``sandbox_slots`` candidates at once (bounded
with aiometer), each on its own environment; all environments share one snapshot cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiometer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pivotgym.core.candidates import Candidate
from pivotgym.core.env import AsyncEnv
from pivotgym.core.seeds import derive_seed
from pivotgym.errors import DivergenceError
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, Sample, SamplingParams
from pivotgym.verifiers.base import Verdict, Verifier, restore


@dataclass(frozen=True)
class ProfileSettings:
    """How to profile. ``k`` samples per candidate at ``temperature`` (π0 as it samples
    in training), ``max_new_tokens`` per action; ``engine_batch`` candidates per engine
    call; ``sandbox_slots`` candidates verified at once."""

    k: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 192
    seed: int = 0
    engine_batch: int = 8
    sandbox_slots: int = 4

    def sampling(self, stop_ids: Sequence[int]) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            stop_token_ids=tuple(stop_ids),
            seed=self.seed,
        )


def candidate_seed(seed: int, candidate_id: str) -> int:
    return derive_seed(seed, candidate_id)


def summarize(rewards: Sequence[float], infra: Sequence[bool]) -> tuple[int, float, float]:
    """``(n_valid, mean, population variance)`` of the rewards that are not infra failures."""
    valid = [r for r, bad in zip(rewards, infra, strict=True) if not bad]
    if not valid:
        return 0, 0.0, 0.0
    mean = sum(valid) / len(valid)
    return len(valid), mean, sum((r - mean) ** 2 for r in valid) / len(valid)


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already in ``path``, by candidate id; a torn last line is cut off the file."""
    if not path.exists():
        return {}
    done: dict[str, dict[str, Any]] = {}
    data = path.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        done[row["candidate_id"]] = row
        keep += len(line)
    if keep != len(data):
        with path.open("r+b") as fh:
            fh.truncate(keep)
    return done


@dataclass
class _Sampled:
    candidate: Candidate
    samples: list[Sample]
    prompt_tokens: int
    sample_s: float
    beyond_context: bool = False


class Profiler:
    """Profiles candidates with a frozen engine; see the module docstring."""

    def __init__(
        self,
        *,
        engine: Engine,
        chat: ChatFormat,
        verifier: Verifier,
        make_env: Callable[[], AsyncEnv],
        tools: Sequence[dict[str, Any]],
        settings: ProfileSettings,
    ) -> None:
        self.engine = engine
        self.chat = chat
        self.verifier = verifier
        self.make_env = make_env
        self.tools = list(tools)
        self.settings = settings
        self.sampling = settings.sampling(chat.stop_ids)

    def readable(self, prompt: Sequence[int]) -> bool:
        """Whether the model can read ``prompt`` and still write an action within its
        context (always, where the tokenizer does not say how long that is)."""
        limit = self.chat.context_length
        return limit is None or len(prompt) + self.settings.max_new_tokens <= limit

    async def _sample(self, batch: list[Candidate]) -> list[_Sampled]:
        start = time.perf_counter()
        prompts = self.chat.batch_prompt_ids(
            [c.prefix for c in batch], each_tools=[c.tools_or(self.tools) for c in batch]
        )
        # A state the model cannot read is not sampled: what it would write there says
        # nothing of the policy, and costs a forward pass over a prompt past its context.
        read = [i for i, p in enumerate(prompts) if self.readable(p)]
        seeds = [candidate_seed(self.settings.seed, batch[i].id) for i in read]
        groups = await self.engine.generate_batch(
            [prompts[i] for i in read], self.settings.k, self.sampling, seeds=seeds
        ) if read else []  # fmt: skip
        sampled = dict(zip(read, groups, strict=True))
        seconds = (time.perf_counter() - start) / len(batch)
        return [
            _Sampled(c, list(sampled.get(i, ())), len(p), seconds, i not in sampled)
            for i, (c, p) in enumerate(zip(batch, prompts, strict=True))
        ]

    async def _batches(self, todo: list[Candidate]) -> AsyncIterator[list[_Sampled]]:
        """Sampled batches, the next one sampling while the caller verifies this one."""
        size = self.settings.engine_batch
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        pending: asyncio.Task[list[_Sampled]] | None = None
        try:
            for i, _ in enumerate(chunks):
                current = pending or asyncio.ensure_future(self._sample(chunks[i]))
                result = await current
                pending = (
                    asyncio.ensure_future(self._sample(chunks[i + 1]))
                    if i + 1 < len(chunks)
                    else None
                )
                yield result
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def _verify(self, envs: asyncio.Queue[AsyncEnv], item: _Sampled) -> dict[str, Any]:
        if item.beyond_context:
            return self._row(item, [], time.perf_counter())
        env = await envs.get()
        start = time.perf_counter()
        try:
            actions = [self.chat.parse(s) for s in item.samples]
            try:
                state = await restore(env, item.candidate)
            except DivergenceError as exc:
                # This machine's tools did not reproduce the record up to this turn, so
                # the state cannot be had: its samples count as harness failures (never
                # a pivot), and profiling goes on with the other candidates.
                reason = f"state not reproduced: assistant turn {exc.turn} replayed differently"
                verdicts = [Verdict(0.0, reason, infra_error=True)] * len(actions)
            else:
                verdicts = await self.verifier.verify_many(state, actions, item.candidate.reference)
        finally:
            envs.put_nowait(env)
        return self._row(item, verdicts, start)

    def _row(self, item: _Sampled, verdicts: list[Verdict], start: float) -> dict[str, Any]:
        rewards = [v.reward for v in verdicts]
        infra = [v.infra_error for v in verdicts]
        n_valid, mean, variance = summarize(rewards, infra)
        c = item.candidate
        return {
            "candidate_id": c.id,
            "trajectory_id": c.trajectory.id,
            "turn": c.turn,
            "env": c.env,
            "k": len(item.samples),
            "rewards": rewards,
            "reasons": [v.reason for v in verdicts],
            "infra": infra,
            "n_valid": n_valid,
            "mean": mean,
            "variance": variance,
            "actions": [self.chat.decode(s.token_ids) for s in item.samples],
            "sample_tokens": [len(s.token_ids) for s in item.samples],
            "prompt_tokens": item.prompt_tokens,
            "finish_reasons": [s.finish_reason for s in item.samples],
            "weight_version": item.samples[0].weight_version if item.samples else None,
            "seed": candidate_seed(self.settings.seed, c.id),
            "seconds": {"sample": item.sample_s, "verify": time.perf_counter() - start},
            "beyond_context": item.beyond_context,
        }

    async def run(
        self, candidates: Sequence[Candidate], out: str | Path, *, show_progress: bool = True
    ) -> list[dict[str, Any]]:
        """Profile ``candidates`` into ``out`` (JSONL); return their rows, in their order.

        Rows already in ``out`` are reused; rows of other candidates stay in the file but
        are not returned (a rerun with a smaller pool uses only its own)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        done = read_done(out)
        todo = [c for c in candidates if c.id not in done]
        envs: asyncio.Queue[AsyncEnv] = asyncio.Queue()
        for _ in range(min(self.settings.sandbox_slots, max(len(todo), 1))):
            envs.put_nowait(self.make_env())
        columns = (
            TextColumn("profiling"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} cand/s"),
            TimeRemainingColumn(),
        )
        start = time.perf_counter()
        try:
            with (
                out.open("a", encoding="utf-8") as fh,
                Progress(*columns, disable=not show_progress) as bar,
            ):
                task = bar.add_task(
                    "profile",
                    total=len(candidates),
                    completed=len(candidates) - len(todo),
                    rate=0.0,
                )
                finished = 0
                async for batch in self._batches(todo):
                    verify = functools.partial(self._verify, envs)
                    async with aiometer.amap(
                        verify, batch, max_at_once=self.settings.sandbox_slots
                    ) as rows:
                        async for row in rows:
                            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                            fh.flush()
                            done[row["candidate_id"]] = row
                            finished += 1
                            bar.update(
                                task, advance=1, rate=finished / (time.perf_counter() - start)
                            )
        finally:
            while not envs.empty():
                await envs.get_nowait().aclose()
        return [done[c.id] for c in candidates]
