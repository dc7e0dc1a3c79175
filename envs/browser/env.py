"""The browser environment: web pages in a caged Chromium, BrowserGym's actions as tools.
``pivotgym.make("browser")``.

An episode is one task (:mod:`pivotgym.envs.browser.tasks`) in one world
(:mod:`pivotgym.envs.browser.world`): a browser context of its own, serving the task's
sites (MiniWoB++'s page, or an app of :mod:`pivotgym.envs.browser.apps` with a fresh
database). The agent is shown the goal and the page as text (the elements it can act
on, each with its bid; the URL and the open tabs), and acts with the tools of
:mod:`pivotgym.envs.browser.actions`. Every tool answers with the page as it is after
the action, an action that could not run with its error first, never an exception.

The episode ends when the agent answers (``send_msg_to_user``, ``report_infeasible``),
when a MiniWoB++ page reports its task done, at a turn that calls no tool, or at the
turn limit; the task's family then checks the end state (:class:`BrowserGrader`).

Reset to any turn and fork restore the world from data (:class:`~.world.BrowserSnapshot`):
every action may change the page, so replay executes each one and compares the page
texts it gave with the recorded ones, exactly.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any, ClassVar

from pivotgym.core.env import run_sync
from pivotgym.core.grader import Episode
from pivotgym.core.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.browser.actions import TOOLS, check_arguments
from pivotgym.envs.browser.families import get_family
from pivotgym.envs.browser.runtime import BrowserRuntime, runtime
from pivotgym.envs.browser.tasks import BrowserTask, task_from_json
from pivotgym.envs.browser.world import BrowserSnapshot, BrowserWorld, TabState
from pivotgym.errors import DataError, InfraError

SYSTEM_PROMPT = (
    "You are a web agent. You see the page as text: each element you can act on is shown "
    "as [bid] role 'name', and you act on it through its bid with the tools (click, fill, "
    "select_option, ...). Do what the user asks; when the task asks for an answer, or is "
    "done, tell the user with send_msg_to_user."
)


@dataclass(frozen=True)
class BrowserOptions(ToolEnvOptions):
    """``max_page_chars``: the most characters of page text an observation shows (the
    rest is cut with a note)."""

    max_page_chars: int = 8_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_page_chars < 200:
            raise DataError("must be at least 200", field="max_page_chars")


class BrowserGrader:
    """The task family's check of the end state (:meth:`Family.check`)."""

    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        task: BrowserTask = episode.task
        world = episode.world
        assert isinstance(world, BrowserWorld)
        try:
            reward, info = await get_family(task.family).check(task, world)
        except InfraError:
            raise
        except Exception as exc:
            raise InfraError(f"checking {task.task_id}: {type(exc).__name__}: {exc}") from None
        return reward, {**info, "family": task.family}


class BrowserEnv(ToolEnv):
    """A web task in a browser (module docstring)."""

    name = "browser"
    Options: ClassVar[type[ToolEnvOptions]] = BrowserOptions
    options: BrowserOptions
    world: BrowserWorld | None  # type: ignore[assignment]
    finishing_tools = frozenset({"send_msg_to_user", "report_infeasible"})
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"]}
    _grader = BrowserGrader()

    @property
    def tools(self) -> list[dict[str, Any]]:
        return copy.deepcopy(TOOLS)

    @property
    def grader(self) -> BrowserGrader:
        return self._grader

    _runtime: BrowserRuntime | None = None

    async def create_world(self, task: BrowserTask, snapshot: Any = None) -> BrowserWorld:
        if self._runtime is None:
            # Held until the env closes, so that its episodes, one after another, share
            # one browser instead of each starting its own.
            self._runtime = runtime()
            await self._runtime.acquire()
        family = get_family(task.family)
        if snapshot is None:
            snapshot = BrowserSnapshot(
                family.databases(task), tabs=(TabState(history=(family.start_url(task),)),)
            )
        return await BrowserWorld.open(family.sites(task), snapshot, task)

    def resolve_task(self, trajectory: Trajectory) -> BrowserTask:
        return task_from_json(trajectory.task)

    def task_max_turns(self, task: BrowserTask) -> int:
        return task.max_turns

    async def initial_messages(self, task: BrowserTask) -> list[dict[str, Any]]:
        assert self.world is not None
        goal = await get_family(task.family).goal(task, self.world)
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{goal}\n\n{await self.observation(self._load_error())}"},
        ]

    def _load_error(self) -> str | None:
        """Why the task's first page did not load, if it did not."""
        assert self.world is not None
        return "; ".join(self.world.load_errors) or None

    async def observation(self, error: str | None = None) -> str:
        """The page as the agent is shown it: the last action's error, the tabs, the URL
        and the page's text with its bids."""
        world = self.world
        assert world is not None
        seen = await world.mark(max_chars=self.options.max_page_chars)
        lines = [f"Error: {error}", ""] if error else []
        if len(world.pages) > 1:
            for i, page in enumerate(world.pages):
                mark = " (current)" if i == world.active else ""
                lines.append(f"Tab {i}{mark}: {page.url}")
        lines += [f"URL: {world.page.url}", f"Title: {seen['title']}", "", seen["text"]]
        return "\n".join(lines)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        world = self.world
        assert world is not None
        arguments = check_arguments(name, arguments)  # ValueError: the agent is told
        error = None
        try:
            await world.act(name, arguments)
        except ValueError as exc:
            error = str(exc)
        if name in self.finishing_tools:
            return "Message sent.", {}
        info: dict[str, Any] = {"error": "action_failed"} if error else {}
        if await get_family(world.task.family).done(world.task, world):
            info["ends_episode"] = True
        return await self.observation(error), info

    async def aclose(self) -> None:
        held, self._runtime = self._runtime, None
        await super().aclose()
        if held is not None:
            await held.release()

    async def ascreenshot(self) -> bytes:
        """The current tab as a PNG image."""
        if self.world is None:
            raise RuntimeError("call reset() before screenshot()")
        return await self.world.page.screenshot(type="png")

    def render(self) -> Any:
        if self.render_mode != "rgb_array":
            return super().render()
        import numpy as np
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(run_sync(self.ascreenshot()))).convert("RGB"))
