"""A domain's database as a :class:`~pivotgym.core.world.World`.

Snapshots are frozen databases (nothing to copy, nothing to free), forks are
copy-on-write forks of the database (:mod:`pivotgym.envs.tools.db`), and the digest is
the database's canonical hash.
"""

from __future__ import annotations

from pivotgym.core.world import World
from pivotgym.envs.tools.db import Database, DatabaseSnapshot
from pivotgym.envs.tools.domain import Domain


class DomainSnapshot:
    """A frozen database; it holds no storage of its own, so releasing it is free."""

    def __init__(self, frozen: DatabaseSnapshot) -> None:
        self.frozen = frozen

    async def release(self) -> None:
        return None


class DomainWorld(World):
    def __init__(self, domain: Domain, db: Database) -> None:
        self.domain = domain
        self.db = db

    @classmethod
    def from_snapshot(cls, domain: Domain, snapshot: DomainSnapshot) -> DomainWorld:
        return cls(domain, snapshot.frozen.thaw())

    async def snapshot(self) -> DomainSnapshot:
        return DomainSnapshot(self.db.freeze())

    async def fork(self, n: int) -> list[DomainWorld]:
        return [DomainWorld(self.domain, self.db.fork()) for _ in range(n)]

    def digest(self) -> str:
        return self.db.digest()

    async def close(self) -> None:
        return None
