"""The world: the state an episode acts on, whatever holds it.

A sandbox (files and processes), a domain database, a browser with its backend: each is a
:class:`World`. The environment layers above need only this of it:

- :meth:`World.snapshot` returns a :class:`WorldSnapshot`, an immutable record of the
  state that the world's maker restores from (``create_world(task, snapshot)`` of the
  tool env); the replay cache holds snapshots and releases them when evicted;
- :meth:`World.fork` returns ``n`` independent worlds in the same state; each world
  builds its forks itself (copy-on-write tables, copied state directories), never by
  copying a Python object's attributes, so that no connection, page or handle is
  shared between branches;
- :meth:`World.digest` is a canonical hash of the observable state: two worlds in the
  same state have the same digest whatever their history;
- :meth:`World.close` frees what the world holds; closing twice is harmless.
"""

from __future__ import annotations

import abc
from typing import Protocol


class WorldSnapshot(Protocol):
    """An immutable state a world can be made from; ``release`` frees its storage."""

    async def release(self) -> None: ...


class World(abc.ABC):
    """The state of one episode (module docstring)."""

    @abc.abstractmethod
    async def snapshot(self) -> WorldSnapshot:
        """An immutable record of the current state."""

    @abc.abstractmethod
    async def fork(self, n: int) -> list[World]:
        """``n`` independent worlds in this one's state."""

    @abc.abstractmethod
    def digest(self) -> str:
        """A canonical hash of the observable state."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Free what the world holds (idempotent)."""
