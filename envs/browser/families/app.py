"""What every family of the bundled apps shares: the app's site, its database made
from the task's seed, the app's home page first, and the params a task must carry."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, ClassVar

from pivotgym.envs.browser.families import Family
from pivotgym.envs.browser.sites import Site
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.envs.browser.world import databases_of
from pivotgym.errors import DataError


class AppFamily(Family):
    """A family of one app: subclasses set ``site``, ``populate`` (the app's
    ``populate(db, seed)``, as a static method) and the ``params`` a task needs."""

    site: ClassVar[Site]
    populate: ClassVar[Callable[[sqlite3.Connection, int], None]]
    params: tuple[str, ...] = ()

    def database(self, seed: int) -> sqlite3.Connection:
        """The app's database of ``seed``, in memory (task generators read it)."""
        db = sqlite3.connect(":memory:")
        db.executescript(self.site.schema)
        self.populate(db, seed)
        return db

    def sites(self, task: BrowserTask) -> dict[str, Site]:
        return {self.site.host: self.site}

    def databases(self, task: BrowserTask) -> dict[str, bytes]:
        return databases_of(
            self.sites(task), {self.site.host: lambda db: self.populate(db, task.seed)}
        )

    def start_url(self, task: BrowserTask) -> str:
        return f"http://{self.site.host}/"

    def validate(self, task: BrowserTask) -> None:
        for name in self.params:
            if name not in task.params:
                raise DataError("missing", field=f"params.{name}")

    @staticmethod
    def answer(world: Any) -> str:
        """The last message the agent sent the user ("" if none)."""
        return world.messages[-1] if world.messages else ""
