"""Task families: what a browser task serves, how it starts, and how it is checked.

A family makes tasks from seeds (:meth:`Family.generate`), says which sites a task's
world serves and with which databases, where the first tab opens, and checks the
episode's end state (:meth:`Family.check`): the backend's database, the URL, or the
answer sent to the user, read by the harness and never from the page's DOM where the
task allows (the agent can change the DOM; it can change the database only through
the app). An expert (:meth:`Family.expert`) plays a task from the page text it is
shown, as an agent would, with natural variation drawn from its own seed.

Families are registered by name (``miniwob.<page>``, ``shop.buy``, ...);
``held_out`` families make only evaluation tasks (out-of-domain within the browser).
"""

from __future__ import annotations

import abc
import functools
import random
from typing import TYPE_CHECKING, Any

from pivotgym.errors import DataError

if TYPE_CHECKING:
    from pivotgym.envs.browser.sites import Site
    from pivotgym.envs.browser.tasks import BrowserTask
    from pivotgym.envs.browser.world import BrowserWorld

Action = tuple[str, dict[str, Any]]


class Expert(abc.ABC):
    """Plays one task: the next action from the page as the agent sees it."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        self.task, self.rng = task, rng

    @abc.abstractmethod
    def act(self, goal: str, page: str, url: str) -> Action | None:
        """The next action, given the user's goal, the page text and the URL (``None``:
        it cannot go on)."""

    def failed(self, action: Action) -> bool:
        """The env answered ``action``, the last one, with an error. ``True`` takes it
        back: the recorder restores the state before it and asks again, so that the
        trajectory never shows the expert's mistake (default: ``False``, the next page
        is read as usual)."""
        return False


class Family(abc.ABC):
    name: str = ""
    held_out: bool = False

    @abc.abstractmethod
    def generate(self, seed: int, task_id: str) -> BrowserTask:
        """The family's task of ``seed``."""

    @abc.abstractmethod
    def sites(self, task: BrowserTask) -> dict[str, Site]:
        """The sites the task's world serves, by host."""

    def databases(self, task: BrowserTask) -> dict[str, bytes]:
        """The sites' databases when the task starts (default: none)."""
        return {}

    @abc.abstractmethod
    def start_url(self, task: BrowserTask) -> str:
        """Where the task's first tab opens."""

    def validate(self, task: BrowserTask) -> None:  # noqa: B027 - optional hook
        """Refuse (``DataError`` naming the field) a task whose params this family cannot
        use (default: anything goes)."""

    async def goal(self, task: BrowserTask, world: BrowserWorld) -> str:
        """What the user asks (default: the task's goal; MiniWoB++ reads its page's)."""
        return task.goal

    async def done(self, task: BrowserTask, world: BrowserWorld) -> bool:
        """Whether the task ended itself (default: never; it ends when the agent answers)."""
        return False

    @abc.abstractmethod
    async def check(self, task: BrowserTask, world: BrowserWorld) -> tuple[float, dict[str, Any]]:
        """The reward of the end state, in [0, 1], and what it was judged on."""

    def expert(self, task: BrowserTask, seed: int) -> Expert | None:
        """An expert for ``task`` (``None``: this family has none)."""
        return None


@functools.cache
def families() -> dict[str, Family]:
    from pivotgym.envs.browser.families import miniwob, shop, tracker, wiki

    found: dict[str, Family] = {}
    for family in [*miniwob.families(), *shop.FAMILIES, *tracker.FAMILIES, *wiki.FAMILIES]:
        found[family.name] = family
    return found


def get_family(name: str) -> Family:
    known = families()
    if name.startswith("miniwob.") and name not in known:
        from pivotgym.envs.browser.miniwob import check_name

        check_name(name.removeprefix("miniwob."), field="family")
    if name not in known:
        raise DataError(
            f"no browser task family {name!r} (try one of: "
            f"{', '.join(sorted(n for n in known if not n.startswith('miniwob.'))[:8])},"
            " miniwob.<page>)",
            field="family",
        )
    return known[name]
