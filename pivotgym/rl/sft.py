"""The SFT baseline: cross-entropy on the assistant turns of the same trajectories.

Each trajectory becomes one sequence rendered by the chat layer, the template every
other pipeline uses. Its loss mask covers exactly the ids of each assistant turn as
the policy would write them (:meth:`~pivotgym.policy.chat.ChatFormat.action_ids`: the turn's
text and tool calls through ``<|im_end|>``), so SFT trains the same tokens PivotRL
scores, and never the system prompt, user turns or tool outputs. Optimiser, schedule,
micro-batching and checkpoints are the RL learner's (:mod:`pivotgym.rl.training`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pivotgym.errors import DataError
from pivotgym.policy.chat import ChatFormat
from pivotgym.rl.batch import Collated, TrainSample
from pivotgym.rl.logprobs import token_logprobs
from pivotgym.rl.loss import Aggregation, sft_loss
from pivotgym.rl.training import BatchCursor, OptimConfig, TrainState


def sft_sample(
    fmt: ChatFormat,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    max_tokens: int | None = None,
) -> TrainSample:
    """The conversation's ids with every assistant turn's action ids trained, cut at
    ``max_tokens`` (the model's context: positions past it were never trained, and a
    turn there is one the model could not have read its way to; a conversation whose
    first turn lies past it has nothing trained).

    Raises :class:`~pivotgym.errors.DataError` if an assistant turn's ids are not where
    the prefix's prompt ends (a template that is not prefix-preserving).
    """
    ids = fmt.conversation_ids(messages, tools)
    mask = [False] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(fmt.prompt_ids(messages[:i], tools))
        action = fmt.action_ids(message)
        if ids[start : start + len(action)] != action:
            raise DataError(
                "the rendered conversation does not contain the turn's action ids",
                field=f"messages[{i}]",
            )
        mask[start : start + len(action)] = [True] * len(action)
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return TrainSample(tuple(ids), tuple(mask))


class SFTTrainer:
    """Minimises the assistant tokens' cross-entropy over ``examples``.

    Each :meth:`step` takes the next ``batch_size`` examples from a shuffled cursor
    (seeded by ``seed``, resumable), micro-batches them and takes one optimiser step.
    """

    def __init__(
        self,
        model: Any,
        examples: Sequence[TrainSample],
        *,
        optim: OptimConfig | None = None,
        batch_size: int = 8,
        seed: int = 0,
        aggregation: Aggregation = "token-mean",
        device: str | torch.device | None = None,
        pad_id: int = 0,
    ) -> None:
        if not examples:
            raise ValueError("SFT needs at least one example")
        self.examples = list(examples)
        cursor = BatchCursor(len(self.examples), batch_size, seed=seed)
        self.state = TrainState(model, optim or OptimConfig(), device=device, cursor=cursor)
        self.aggregation = aggregation
        self.pad_id = pad_id

    @property
    def model(self) -> Any:
        return self.state.model

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history

    def step(self) -> dict[str, float]:
        """One optimiser step on the next batch; returns its metrics."""
        start = time.perf_counter()
        assert self.state.cursor is not None
        batch = [self.examples[i] for i in self.state.cursor.next()]
        tokens = sum(s.num_trained for s in batch)

        def micro_loss(collated: Collated):
            logprobs, _ = token_logprobs(self.model, collated)
            loss = sft_loss(
                logprobs,
                collated.mask,
                total_tokens=tokens,
                total_sequences=len(batch),
                aggregation=self.aggregation,
            )
            return loss, {}

        loss, _ = self.state.accumulate(batch, micro_loss, self.pad_id)
        metrics = {"loss": loss, "tokens": float(tokens), "sequences": float(len(batch))}
        metrics.update(self.state.optimizer_step())
        elapsed = time.perf_counter() - start
        metrics.update(step=float(self.state.step), time_s=elapsed, tokens_per_s=tokens / elapsed)
        return self.state.record(metrics)

    def train(self, steps: int) -> list[dict[str, float]]:
        return [self.step() for _ in range(steps)]

    def save(self, path: str | Path) -> Path:
        return self.state.save(path, extra={"kind": "sft"})

    def load(self, path: str | Path) -> None:
        if self.state.load(path).get("kind") != "sft":
            raise ValueError(f"{path} is not an SFT checkpoint")
