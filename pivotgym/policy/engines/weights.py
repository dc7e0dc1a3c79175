"""How a trainer's weights reach a sampling engine: a strategy each engine names.

An engine's ``weight_sync`` says how it takes new weights, so that the learner and the
pipeline never probe for methods:

- :data:`IN_PROCESS`: the engine holds the model in this process and copies a state
  dict into it (``load_state_dict``; a blocking twin serves synchronous training);
- :data:`DISK`: the engine loads a checkpoint folder that the trainer writes
  (``update_weights(path, version)``): a remote server reads it from shared storage.

NCCL broadcast and Ray object transfer are further strategies of the same shape.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Weights = Callable[[], Mapping[str, Any]]
Save = Callable[[], Path]


class WeightSync(abc.ABC):
    name: str

    @abc.abstractmethod
    async def push(self, engine: Any, weights: Weights, save: Save, version: str) -> None:
        """Bring ``engine`` to the weights (``weights()`` gives them in memory,
        ``save()`` writes them as a checkpoint folder and returns its path)."""

    def push_sync(self, engine: Any, weights: Weights, save: Save, version: str) -> None:
        """:meth:`push` without an event loop, where the strategy allows it."""
        raise TypeError(f"weights reach this engine through {self.name}: use the async API")

    @property
    def needs_checkpoint(self) -> bool:
        """Whether the engine reads weights from a checkpoint folder (not from memory)."""
        return False


class InProcess(WeightSync):
    name = "in-process"

    async def push(self, engine: Any, weights: Weights, save: Save, version: str) -> None:
        await engine.load_state_dict(weights(), version)

    def push_sync(self, engine: Any, weights: Weights, save: Save, version: str) -> None:
        engine.load_state_dict_sync(weights(), version)


class Disk(WeightSync):
    name = "disk"

    async def push(self, engine: Any, weights: Weights, save: Save, version: str) -> None:
        path = await asyncio.to_thread(save)
        await engine.update_weights(str(path), version)

    @property
    def needs_checkpoint(self) -> bool:
        return True


IN_PROCESS = InProcess()
DISK = Disk()
