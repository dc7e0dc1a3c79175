"""MiniWoB++, the benchmark's own pages (the ``miniwob`` package, MIT), served as a site.

Each task is one page of the package's ``html/miniwob/`` folder. A world serves the
task's page and the shared scripts beside it (``core/``, ``common/``) under
``http://miniwob.test/`` and nothing else, so an agent cannot wander to an easier task's
page. Once the page loads, it is seeded and started as BrowserGym starts it:
``Math.seedrandom(seed)``, ``core.EPISODE_MAX_TIME`` lifted (no episode times out, and
rewards are not scaled by time), ``core.startEpisodeReal()``; the page's own reward
display, whose countdown would change the page text every second, is stopped and hidden.

The reward is the page's: ``WOB_RAW_REWARD_GLOBAL`` once ``WOB_DONE_GLOBAL`` is set (the
page sets both when the task's own check runs; a click that hits nothing sets neither,
and the episode goes on). Tasks that the package marks nondeterministic (a date picker
that shows "today", animations on timers, ...) are refused: their pages differ from run
to run, so no recorded turn of theirs could be restored. :func:`task_names` reads the
marks from the package's registration file without running it.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sqlite3
from pathlib import Path
from typing import Any

from pivotgym.envs.browser.runtime import evaluate
from pivotgym.envs.browser.sites import Request, Response, StaticSite
from pivotgym.errors import DataError, InfraError

HOST = "miniwob.test"
_START = """seed => {
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = 1e9;  // ms; setTimeout fires at once past 2^31
  core.startEpisodeReal();
  core.clearTimer();
  const display = document.getElementById('reward-display');
  if (display) display.style.display = 'none';
}"""
_STATUS = "() => [WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL, WOB_REWARD_REASON]"


@functools.cache
def package_root() -> Path:
    """The package's ``html`` folder."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or spec.origin is None:
        raise InfraError("MiniWoB++ is not installed: pip install 'pivotgym[browser]'")
    return Path(spec.origin).parent


@functools.cache
def registered() -> dict[str, bool]:
    """Every registered page name (``click-button``, ``flight.AA``...), and whether the
    package marks it nondeterministic."""
    source = (package_root() / "registration.py").read_text()
    found: dict[str, bool] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register":
            keywords = {k.arg: k.value for k in node.keywords}
            env_id = ast.literal_eval(keywords["id"])
            nondeterministic = keywords.get("nondeterministic")
            name = env_id.removeprefix("miniwob/").removesuffix("-v1")
            found[name] = bool(nondeterministic and ast.literal_eval(nondeterministic))
    return found


def task_names() -> list[str]:
    """The deterministic tasks, sorted."""
    return sorted(name for name, nondeterministic in registered().items() if not nondeterministic)


def page_path(name: str) -> str:
    """The task's page under the site's root."""
    return f"miniwob/{name}.html"


def check_name(name: str, field: str = "page") -> None:
    known = registered()
    if name not in known:
        raise DataError(f"no MiniWoB++ task {name!r}", field=field)
    if known[name]:
        raise DataError(
            f"MiniWoB++ marks {name!r} nondeterministic: it cannot be replayed", field=field
        )


class MiniWobSite(StaticSite):
    """One task's page and the package's shared files, started with ``seed``."""

    def __init__(self, name: str, seed: int) -> None:
        check_name(name)
        super().__init__(HOST, package_root() / "html")
        self.name, self.seed = name, seed
        self.page = page_path(name)
        self.url = f"http://{HOST}/{self.page}"
        self.allowed = ("core/", "common/")

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        path = request.path.lstrip("/")
        if path != self.page and not path.startswith(self.allowed):
            return Response(
                404, f"Not found: /{path} (this task serves /{self.page})", "text/plain"
            )
        return super().handle(request, db)

    async def after_load(self, page: Any) -> None:
        if page.url.split("?")[0] == self.url:
            await evaluate(page, _START, self.seed)

    async def status(self, page: Any) -> tuple[bool, float, str | None]:
        """Whether the task's check ran, its raw reward, and its reason."""
        done, raw, reason = await evaluate(page, _STATUS)
        return bool(done), float(raw), reason

    async def utterance(self, page: Any) -> str:
        return await evaluate(page, "() => core.getUtterance()")
