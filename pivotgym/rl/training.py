"""What the RL learner and the SFT trainer share: optimiser, schedule, gradient
accumulation, the data cursor and the checkpoint that resumes a run exactly.

A checkpoint is a folder::

    model.safetensors, config.json   the weights, loadable by an engine's update_weights
    trainer_state.pt                 optimiser, LR schedule, step, weight version, data
                                     cursor, metrics so far, RNG states (python, numpy,
                                     torch and CUDA); plain tensors and Python values only,
                                     so it loads with ``weights_only=True``

written into a temporary folder and renamed into place, so a crash while saving never
leaves a half-written checkpoint behind. Resuming from it and training on gives the
same metrics and the same weights as never having stopped (on CPU; GPU kernels may
not be bitwise deterministic).
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pivotgym.policy.engines.torch import check_state_names, read_safetensors
from pivotgym.rl.batch import Collated, TrainSample, collate

STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, a warmup-then-constant or warmup-then-cosine schedule, gradient clipping.

    The learning rate rises linearly from 0 over ``warmup_steps`` optimiser steps, then
    stays at ``lr`` (``constant``) or follows a cosine from ``lr`` down to
    ``min_lr_ratio * lr`` at ``total_steps`` (``cosine``). ``max_grad_norm`` clips the
    global gradient norm (``None``: no clipping). Each optimiser step runs its batch in
    micro-batches of ``micro_batch_size`` sequences. ``bf16`` autocasts the forward to
    bfloat16 on CUDA (CPU always runs float32).
    """

    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    total_steps: int | None = None
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    micro_batch_size: int = 8
    bf16: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.schedule == "cosine" and not self.total_steps:
            raise ValueError("a cosine schedule needs total_steps")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")

    def lr_factor(self, step: int) -> float:
        """The multiple of ``lr`` used by optimiser step ``step`` (counted from 0)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "constant":
            return 1.0
        assert self.total_steps is not None
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine


class BatchCursor:
    """Batches of indices into ``size`` items, reshuffled each epoch, resumable.

    Epoch ``e``'s order is a permutation drawn from ``(seed, e)`` alone, so the
    position (epoch, offset) is all the state there is. A batch that runs past the end
    of an epoch continues into the next one.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, shuffle: bool = True):
        if size < 1 or batch_size < 1:
            raise ValueError("a cursor needs at least one item and a positive batch size")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.epoch = 0
        self.offset = 0

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def next(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            take = min(self.batch_size - len(out), self.size - self.offset)
            out.extend(self._order(self.epoch)[self.offset : self.offset + take].tolist())
            self.offset += take
            if self.offset == self.size:
                self.epoch, self.offset = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpoint cursor has seed {state['seed']}, this one {self.seed}")
        self.epoch, self.offset = state["epoch"], state["offset"]


MicroLoss = Callable[[Collated], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class TrainState:
    """A model under training: its optimiser, schedule and counters, and their checkpoint.

    The model is kept in eval mode: dropout would make the learner's logprobs differ
    from the sampler's, and nothing here needs train-mode behaviour to get gradients.
    Its weights are held in float32 (a bfloat16 checkpoint is upcast; ``bf16`` only
    autocasts the compute on CUDA).
    ``version`` is the weight version: it goes up by one with every optimiser step.
    ``history`` holds the metrics of every step so far; ``cursor`` the data position.
    """

    def __init__(
        self,
        model: Any,
        config: OptimConfig,
        *,
        device: str | torch.device | None = None,
        cursor: BatchCursor | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else next(model.parameters()).device
        # Master weights in float32 whatever the checkpoint stores: at RL learning rates
        # most AdamW steps are smaller than bfloat16's spacing and would round away.
        self.model = model.to(device=device, dtype=torch.float32).eval()
        self.device = device
        self.config = config
        self.cursor = cursor
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=config.lr,
            betas=config.betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.lr_factor)
        self.step = 0
        self.version = 0
        self.history: list[dict[str, float]] = []

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def micro_batches(self, samples: Sequence[TrainSample]) -> Iterator[list[TrainSample]]:
        """Micro-batches of at most ``micro_batch_size`` samples. Samples with the same
        context (the ids before their first trained token: a PivotRL group, the episodes
        of one task) go together and alone, so that context runs once (see
        :func:`collate`); the others are packed longest first (similar lengths pad less)."""
        size = self.config.micro_batch_size
        by_context: dict[tuple[int, ...], list[TrainSample]] = {}
        for sample in samples:
            by_context.setdefault(sample.context, []).append(sample)
        singles = []
        for _, group in sorted(by_context.items()):
            if len(group) == 1:
                singles.extend(group)
                continue
            group.sort(key=lambda s: -len(s.input_ids))
            for start in range(0, len(group), size):
                yield group[start : start + size]
        singles.sort(key=lambda s: -len(s.input_ids))
        for start in range(0, len(singles), size):
            yield singles[start : start + size]

    def accumulate(
        self, samples: Sequence[TrainSample], micro_loss: MicroLoss, pad_id: int = 0
    ) -> tuple[float, dict[str, float]]:
        """Backpropagate ``micro_loss`` over the micro-batches of ``samples``; gradients
        add up in ``.grad``. ``micro_loss`` must normalise by batch-wide counts, so the
        sum of its values is the batch loss. Returns that sum and the summed stats."""
        total = torch.zeros((), device=self.device)
        stats: dict[str, torch.Tensor] = {}
        for micro in self.micro_batches(samples):
            batch = collate(micro, pad_id).to(self.device)
            with self.autocast():
                loss, micro_stats = micro_loss(batch)
            loss.backward()
            total += loss.detach()
            for key, value in micro_stats.items():
                stats[key] = stats.get(key, 0.0) + value.detach()
        # Read back once per step: on a GPU each read waits for all queued work.
        return float(total), {key: float(value) for key, value in stats.items()}

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step, advance the schedule, clear gradients, bump the weight version."""
        lr = self.optimizer.param_groups[0]["lr"]
        max_norm = self.config.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(
            self.params, max_norm if max_norm is not None else math.inf
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.version += 1
        return {"grad_norm": float(norm), "lr": lr}

    def record(self, metrics: dict[str, float]) -> dict[str, float]:
        self.history.append(metrics)
        return metrics

    # -- checkpoints ---------------------------------------------------------------------

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint folder ``path`` (replacing one already there)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save_pretrained(tmp)
        state = {
            "format": 1,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "version": self.version,
            "history": self.history,
            "cursor": self.cursor.state_dict() if self.cursor is not None else None,
            "optim_config": asdict(self.config),
            "rng": _rng_state(),
            "extra": extra or {},
        }
        torch.save(state, tmp / STATE_FILE)
        old = path.with_name(path.name + ".old")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
        return path

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore everything :meth:`save` wrote; returns its ``extra``."""
        path = Path(path)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        weights = read_safetensors(path)
        check_state_names(self.model, weights)
        with torch.no_grad():
            self.model.load_state_dict(weights, strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.version = state["step"], state["version"]
        self.history = list(state["history"])
        if state["cursor"] is not None:
            if self.cursor is None:
                raise ValueError(f"{path} holds a data cursor but this run has none")
            self.cursor.load_state_dict(state["cursor"])
        _set_rng_state(state["rng"])
        return state["extra"]


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
