"""Short hand-written conversations and sampled GRPO batches for the learner tests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import SamplingParams
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.rl.batch import TrainSample


def call(name: str, **arguments: Any) -> dict[str, Any]:
    import json

    return {
        "id": "c",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a shell agent."},
    {"role": "user", "content": "Count the files in /data."},
    {"role": "assistant", "content": "Listing first.", "tool_calls": [call("run", cmd="ls /data")]},
    {"role": "tool", "tool_call_id": "c", "content": "a.txt\nb.txt"},
    {"role": "assistant", "content": None, "tool_calls": [call("run", cmd="ls /data | wc -l")]},
    {"role": "tool", "tool_call_id": "c", "content": "2"},
    {"role": "assistant", "content": "There are 2 files."},
]

PROMPTS = [CONVERSATION[:2], CONVERSATION[:4], CONVERSATION[:6]]


def sampling(fmt: ChatFormat, seed: int, temperature: float = 1.0, max_new: int = 12):
    return SamplingParams(
        temperature=temperature,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=max_new,
        stop_token_ids=fmt.stop_ids,
        seed=seed,
    )


def sampled_batch(
    engine: TorchEngine,
    fmt: ChatFormat,
    seed: int | None = None,
    group_size: int = 4,
    pivots: Sequence[int] = (0, 1, 2),
) -> list[TrainSample]:
    """``group_size`` samples at each of the ``pivots`` (indices into :data:`PROMPTS`),
    rewarded at random. The seed (when not given) comes from Python's global RNG and
    the rewards from numpy's, so a resumed run must restore both."""
    if seed is None:
        seed = random.getrandbits(32)
    prompts = [fmt.prompt_ids(PROMPTS[k]) for k in pivots]
    groups = asyncio.run(engine.generate_batch(prompts, group_size, sampling(fmt, seed)))
    return [
        TrainSample.turn(prompt, s, reward=float(np.random.rand() < 0.5), group=k)
        for k, prompt, samples in zip(pivots, prompts, groups, strict=True)
        for s in samples
    ]
