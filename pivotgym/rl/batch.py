"""What the learners train on: token ids plus a loss mask, one sequence per sample.

A :class:`TrainSample` fits every pipeline that shares the chat template:

- a PivotRL turn: ``prompt_ids + action_ids``, the action trained, the sampler's
  logprobs and the reward of its group (:meth:`TrainSample.turn`);
- an E2E RL episode: several assistant segments trained, the system, user and tool
  segments between them masked (:meth:`TrainSample.segments`);
- an SFT trajectory: every assistant turn trained, no logprobs or reward.

:func:`collate` pads a list of them into the ``[N, L]`` inputs of a forward pass and
the ``[N, A]`` layout of their trained tokens that the losses take.

**Shared context.** The samples of one PivotRL group are the same state followed by G
different actions, and E2E episodes of one task start with the same prompt. When the
samples of a batch begin with the same ids, and no trained token is predicted from
inside that stretch, :func:`collate` keeps it once (``prefix_ids``) and pads only what
follows; :func:`~pivotgym.rl.logprobs.token_logprobs` then runs the model over the
shared ids once and lets every row attend to them. Gradients are those of the full
sequences: the shared stretch receives the sum of every row's gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from pivotgym.policy.engines.base import Sample


@dataclass(frozen=True)
class TrainSample:
    """One sequence to train on.

    ``loss_mask[p]`` is true where token ``input_ids[p]`` is trained (the model wrote
    it); position 0 is never trained (nothing predicts it). ``old_logprobs`` hold the
    sampler's logprob of each trained token, in order (one per true mask entry), or are
    empty for SFT. The reward side is either ``advantage`` given outright, or ``reward``
    with a ``group`` id (the pivot the action was sampled at) for the learner to
    normalise; ``infra_failed`` marks a reward the harness failed to produce.
    ``weight_version`` names the weights that sampled it.
    """

    input_ids: tuple[int, ...]
    loss_mask: tuple[bool, ...]
    old_logprobs: tuple[float, ...] = ()
    reward: float | None = None
    group: Hashable | None = None
    advantage: float | None = None
    infra_failed: bool = False
    weight_version: str = "0"

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(f"{len(self.input_ids)} ids but {len(self.loss_mask)} mask entries")
        if self.loss_mask and self.loss_mask[0]:
            raise ValueError("the first token cannot be trained: nothing predicts it")
        if self.old_logprobs and len(self.old_logprobs) != self.num_trained:
            raise ValueError(
                f"{len(self.old_logprobs)} logprobs for {self.num_trained} trained tokens"
            )

    @property
    def num_trained(self) -> int:
        return sum(self.loss_mask)

    @property
    def context(self) -> tuple[int, ...]:
        """The ids before the first trained token (all of them when none is trained)."""
        return self.input_ids[: self.loss_mask.index(True) if self.num_trained else None]

    @classmethod
    def turn(
        cls,
        prompt_ids: Sequence[int],
        sample: Sample,
        *,
        reward: float | None = None,
        group: Hashable | None = None,
        advantage: float | None = None,
        infra_failed: bool = False,
    ) -> TrainSample:
        """A one-turn action: ``sample``'s ids trained after the untrained prompt."""
        return cls.segments(
            [(prompt_ids, None), (sample.token_ids, sample.logprobs)],
            reward=reward,
            group=group,
            advantage=advantage,
            infra_failed=infra_failed,
            weight_version=sample.weight_version,
        )

    @classmethod
    def segments(
        cls,
        parts: Sequence[tuple[Sequence[int], Sequence[float] | None]],
        **fields,
    ) -> TrainSample:
        """A sequence of ``(ids, logprobs)`` segments; a segment is trained when its
        logprobs are given (an empty tuple trains it without sampler logprobs, as SFT
        does) and masked when they are ``None`` (prompt, user and tool segments)."""
        ids: list[int] = []
        mask: list[bool] = []
        logprobs: list[float] = []
        for seg_ids, seg_logprobs in parts:
            ids.extend(seg_ids)
            mask.extend([seg_logprobs is not None] * len(seg_ids))
            if seg_logprobs:
                if len(seg_logprobs) != len(seg_ids):
                    raise ValueError(f"{len(seg_ids)} ids but {len(seg_logprobs)} logprobs")
                logprobs.extend(seg_logprobs)
        return cls(tuple(ids), tuple(mask), tuple(logprobs), **fields)


@dataclass
class Collated:
    """Padded tensors of ``N`` samples.

    ``prefix_ids`` (``[P]``, possibly empty) are the ids every sample starts with, kept
    once; ``input_ids``/``attention_mask`` are ``[N, L]``, what follows them in each
    sample, right-padded. The trained tokens are laid out ``[N, A]`` (slot ``j`` = the
    ``j``-th trained token of a row): ``targets`` their ids, ``mask`` 1 on real slots,
    ``old_logprobs`` the sampler's. ``rows``/``cols`` list, for each real slot in
    row-major order, the row and the position in ``input_ids`` of the hidden state that
    predicts it (the token's position minus one, minus ``P``); ``slots`` its index in
    the flattened ``[N * A]`` layout. ``advantages`` are the samples' (0 where none).

    Every index is computed here, on the host, so that a device never has to report
    back how many tokens a mask selects: on a GPU that would stall each micro-batch.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    slots: torch.Tensor
    advantages: torch.Tensor
    prefix_ids: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return len(self.rows)

    def to(self, device: torch.device) -> Collated:
        """The same tensors on ``device``; to a GPU they go through pinned memory without
        waiting, so the copy does not stall the work queued before it. A batch already off
        the host is left where it is (``cuda`` and ``cuda:0`` compare unequal)."""
        if device.type != "cuda" or not self.input_ids.is_cpu:
            return self
        moved = {
            f.name: getattr(self, f.name).pin_memory().to(device, non_blocking=True)
            for f in dataclasses.fields(self)
        }
        return Collated(**moved)


def shared_context(samples: Sequence[TrainSample]) -> int:
    """How many leading ids all ``samples`` share whose hidden states predict no trained
    token (0 for a single sample: nothing to share)."""
    if len(samples) < 2:
        return 0
    # The first trained token at position f is predicted from position f - 1.
    first = samples[0].input_ids
    shared = max(min(len(s.context) for s in samples) - 1, 0)
    for s in samples[1:]:
        ids = s.input_ids
        shared = next((i for i in range(shared) if ids[i] != first[i]), shared)
    return shared


def collate(samples: Sequence[TrainSample], pad_id: int = 0, share: bool = True) -> Collated:
    """Pad ``samples`` (see :class:`Collated`); ``share`` keeps their shared context once."""
    n = len(samples)
    shared = shared_context(samples) if share else 0
    length = max(len(s.input_ids) for s in samples) - shared
    slots = max(max(s.num_trained for s in samples), 1)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention = torch.zeros(n, length, dtype=torch.long)
    targets = torch.zeros(n, slots, dtype=torch.long)
    mask = torch.zeros(n, slots)
    old = torch.zeros(n, slots)
    rows: list[int] = []
    cols: list[int] = []
    flat: list[int] = []
    for i, s in enumerate(samples):
        ids = torch.tensor(s.input_ids[shared:], dtype=torch.long)
        input_ids[i, : len(ids)] = ids
        attention[i, : len(ids)] = 1
        positions = torch.tensor(s.loss_mask[shared:]).nonzero().squeeze(1)
        k = len(positions)
        targets[i, :k] = ids[positions]
        mask[i, :k] = 1
        if s.old_logprobs:
            old[i, :k] = torch.tensor(s.old_logprobs)
        rows.extend([i] * k)
        cols.extend((positions - 1).tolist())
        flat.extend(range(i * slots, i * slots + k))
    return Collated(
        input_ids,
        attention,
        targets,
        mask,
        old,
        torch.tensor(rows, dtype=torch.long),
        torch.tensor(cols, dtype=torch.long),
        torch.tensor(flat, dtype=torch.long),
        torch.tensor([s.advantage or 0.0 for s in samples]),
        torch.tensor(samples[0].input_ids[:shared], dtype=torch.long),
    )
