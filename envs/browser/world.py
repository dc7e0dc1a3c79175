"""A browser world: one browser context, its tabs, and the databases of the sites it visits.

What a world's state is, and how much of it a snapshot keeps:

- **the sites' databases**: copied whole (SQLite's serialised image, kilobytes);
- **the context's storage**: cookies and each origin's local storage (Playwright's
  ``storage_state``);
- **each tab's history** as URLs, which this world keeps itself: ``go_back`` and
  ``go_forward`` load the neighbouring URL again rather than asking Chromium's
  history, so that they do the same before and after a restore;
- **what in-page actions did since the tab's document loaded**: the actions themselves
  (``fill``, ``click``, ``select_option``, ...; :data:`.actions.IN_PAGE`), replayed in
  order on the reloaded page, each after the page is marked as it was when the action
  was taken, so bids and page state come back as they were;
- the messages sent to the user.

A restore opens a new context with the storage, copies the databases, loads each tab's
URL and replays its in-page actions. This is exact for what the sites here are built
to: a ``GET`` never changes a database and every form post redirects to a ``GET`` (see
:mod:`.sites`), and pages that draw on ``Math.random`` are seeded on load (MiniWoB++).
It does not restore what the document kept out of the DOM and storage *before* the
actions were replayed (session storage, a scroll position, a timer that had fired),
nor the in-page state of pages earlier in a tab's history: going back loads the page
afresh, as a reload would. ``docs/browser.md`` says the same.

A world answers requests of its pages from its own sites and databases only (request
interception): a request for any other host is refused with a page that says so, and
the browser's network namespace has nothing to reach anyway (:mod:`.runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from pivotgym.core.world import World
from pivotgym.envs.browser.actions import CHAT, IN_PAGE, perform_in_page
from pivotgym.envs.browser.runtime import BrowserRuntime, evaluate, runtime
from pivotgym.envs.browser.sites import Request, Response, Site
from pivotgym.errors import DataError, InfraError

log = logging.getLogger(__name__)
NAVIGATION_TIMEOUT_MS = 10_000
MAX_REDIRECTS = 5
VIEWPORT = {"width": 1280, "height": 720}
BLANK = "about:blank"
_OBSERVE = (Path(__file__).parent / "observe.js").read_text()
# Local storage of a restored world, written into an origin's first document
# (BrowserWorld._restore_storage); the mark says it was, in this context.
STORAGE_MARK = "__pivotgym_restored__"
_RESTORE_STORAGE = """(() => {
  const items = ITEMS[location.origin];
  if (!items || localStorage.getItem(MARK) === TOKEN) return;
  for (const [key, value] of Object.entries(items)) localStorage.setItem(key, value);
  localStorage.setItem(MARK, TOKEN);
})();"""
# A document being navigated away from says so (see BrowserWorld._follow).
_LEAVING_MARK = "addEventListener('beforeunload', () => { window.__pivotgymLeaving = true; });"
_LEAVING = "() => [window.__pivotgymLeaving === true, performance.timeOrigin]"
# Two animation frames: what a click set off (a re-render, a class change) is drawn
# before the page is read.
_SETTLE = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


@dataclass(frozen=True)
class TabState:
    """A tab: its history (URLs), where in it the tab is, and the in-page actions taken
    on the current document since it loaded."""

    history: tuple[str, ...] = (BLANK,)
    index: int = 0
    actions: tuple[tuple[str, str], ...] = ()  # (name, JSON arguments)

    @property
    def url(self) -> str:
        return self.history[self.index]


@dataclass(frozen=True)
class BrowserSnapshot:
    """A browser world's state, as data (module docstring)."""

    databases: Mapping[str, bytes]
    storage: Mapping[str, Any] = field(default_factory=lambda: {"cookies": [], "origins": []})
    tabs: tuple[TabState, ...] = (TabState(),)
    active: int = 0
    messages: tuple[str, ...] = ()

    async def release(self) -> None:
        """Nothing to free: a snapshot is bytes and strings."""


class BrowserWorld(World):
    """One context and its sites' databases (module docstring). Make one with
    :meth:`open`."""

    def __init__(
        self, sites: Mapping[str, Site], runtime_: BrowserRuntime, task: Any = None
    ) -> None:
        self.sites = dict(sites)
        self.task = task  # what the world was made for (its env's checks read it)
        self.runtime = runtime_
        self.databases: dict[str, sqlite3.Connection] = {}
        self.context: Any = None
        self.pages: list[Any] = []
        self.tabs: list[TabState] = []
        self.active = 0
        self.messages: list[str] = []
        self._documents: list[float] = []  # each tab's document, by its time origin
        self.load_errors: list[str] = []  # pages that did not load when the world opened
        self._closed = False

    # ------------------------------------------------------------------ making one

    @classmethod
    async def open(
        cls, sites: Mapping[str, Site], snapshot: BrowserSnapshot, task: Any = None
    ) -> BrowserWorld:
        """A world of ``task`` in ``snapshot``'s state, its sites served from copies of its
        databases."""
        world = cls(sites, runtime(), task)
        browser = await world.runtime.acquire()
        try:
            await world._restore(browser, snapshot)
        except BaseException:
            await world.close()
            raise
        return world

    async def _restore(self, browser: Any, snapshot: BrowserSnapshot) -> None:
        for host, image in snapshot.databases.items():
            db = sqlite3.connect(":memory:", check_same_thread=False)
            try:
                db.deserialize(image)
                if host in self.sites and self.sites[host].schema:
                    self.sites[host].check_schema(db, f"{host} database")
            except sqlite3.DatabaseError as exc:
                db.close()
                raise DataError(
                    f"not a SQLite database ({exc})", field=f"{host} database"
                ) from None
            except DataError:
                db.close()
                raise
            self.databases[host] = db
        self.context = await browser.new_context(
            viewport=VIEWPORT,
            locale="en-US",
            timezone_id="UTC",
            accept_downloads=False,
            service_workers="block",
            reduced_motion="reduce",
        )
        self.context.set_default_timeout(NAVIGATION_TIMEOUT_MS)
        await self._restore_storage(snapshot.storage)
        await self.context.add_init_script(_LEAVING_MARK)
        await self.context.route("**/*", self._serve)
        self.messages = list(snapshot.messages)
        for tab in snapshot.tabs:
            page = await self._new_page()
            try:
                await self._load(page, tab.url)
            except ValueError as exc:  # the agent is told, and sees the browser's error page
                self.load_errors.append(str(exc))
            for name, arguments in tab.actions:
                await self.mark(page)
                try:
                    await perform_in_page(page, name, json.loads(arguments))
                except ValueError as exc:
                    raise InfraError(
                        f"restoring {tab.url}: its recorded {name} did not run again ({exc})"
                    ) from None
                await self._settle(page)
            self.pages.append(page)
            self.tabs.append(tab)
            self._documents.append(await self._document(page))
        self.active = snapshot.active
        await self.pages[self.active].bring_to_front()

    async def _restore_storage(self, storage: Mapping[str, Any]) -> None:
        """Cookies into the context, and each origin's local storage into its first
        document, from an init script: Playwright's ``storage_state`` option opens every
        origin in a page of its own first, which took most of a fork's time (0.37 s a
        context here). The script writes an origin's items once, marked by a key of the
        restore's own that snapshots leave out."""
        if storage.get("cookies"):
            await self.context.add_cookies(storage["cookies"])
        items = {
            o["origin"]: {i["name"]: i["value"] for i in o.get("localStorage", [])}
            for o in storage.get("origins", [])
            if o.get("localStorage")
        }
        if items:
            token = uuid.uuid4().hex
            await self.context.add_init_script(
                _RESTORE_STORAGE.replace("ITEMS", json.dumps(items))
                .replace("MARK", json.dumps(STORAGE_MARK))
                .replace("TOKEN", json.dumps(token))
            )

    async def _new_page(self) -> Any:
        page = await self.context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        return page

    # --------------------------------------------------------------------- serving

    async def _serve(self, route: Any) -> None:
        request = route.request
        site = self.site_of(request.url)
        if site is None:
            await route.fulfill(
                status=403, content_type="text/html; charset=utf-8", body=_refused(request.url)
            )
            return
        asked = Request.parse(
            request.method, request.url, request.post_data, await request.all_headers()
        )
        db = self.databases.get(site.host)
        answer, url, cookies = self._answer(site, asked, db), request.url, dict(asked.cookies)
        # Playwright does not intercept the request a redirect leads to: the site's
        # redirects are followed here, and the page shown under the URL they end at.
        for _ in range(MAX_REDIRECTS):
            if answer.status not in (301, 302, 303, 307, 308):
                break
            cookies.update(await self._set_cookies(site, answer))
            url = urljoin(url, answer.headers.get("location", "/"))
            if self.site_of(url) is not site:
                answer = Response(403, _refused(url))
                break
            answer = self._answer(site, Request("GET", url, {}, cookies), db)
        cookies.update(await self._set_cookies(site, answer))
        body = answer.body
        if url != request.url and request.is_navigation_request():
            moved = f"<script>history.replaceState(null, '', {json.dumps(url)})</script>"
            body = (body.encode() if isinstance(body, str) else body).replace(
                b"<head>", b"<head>" + moved.encode(), 1
            )
        headers = {k: v for k, v in answer.headers.items() if k not in ("set-cookie", "location")}
        await route.fulfill(
            status=answer.status,
            body=body,
            headers={"content-type": answer.content_type, **headers},
        )

    @staticmethod
    def _answer(site: Site, request: Request, db: sqlite3.Connection | None) -> Response:
        """The site's answer; a site that fails answers 500, as a server would, and the
        page shows it (the request would hang otherwise)."""
        try:
            return site.handle(request, db)
        except Exception as exc:  # any failure of the site's own code
            log.exception("%s failed on %s %s", site.host, request.method, request.url)
            text = f"Internal error of {site.host}: {type(exc).__name__}"
            return Response(500, f"<html><body><h1>{escape(text)}</h1></body></html>")

    async def _set_cookies(self, site: Site, answer: Response) -> dict[str, str]:
        """Apply the answer's ``set-cookie`` to the context (the browser does not take
        it from an intercepted answer) and return what it set (an empty value: deleted)."""
        header = answer.headers.get("set-cookie")
        if not header:
            return {}
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        flags = {a.split("=")[0].lower(): a.partition("=")[2] for a in attributes}
        if not value or flags.get("max-age") == "0":
            await self.context.clear_cookies(name=name, domain=site.host)
            return {name: ""}
        await self.context.add_cookies(
            [
                {
                    "name": name,
                    "value": value,
                    "domain": site.host,
                    "path": flags.get("path") or "/",
                    "httpOnly": "httponly" in flags,
                    "secure": False,
                    "sameSite": "Lax",
                }
            ]
        )
        return {name: value}

    def site_of(self, url: str) -> Site | None:
        parts = urlsplit(url)
        return self.sites.get(parts.netloc) if parts.scheme == "http" else None

    # ------------------------------------------------------------------ the pages

    @property
    def page(self) -> Any:
        return self.pages[self.active]

    async def _load(self, page: Any, url: str) -> None:
        if url != BLANK:
            from playwright.async_api import Error

            try:
                await page.goto(url, wait_until="load")
            except Error as exc:
                raise ValueError(f"{url} did not load: {str(exc).splitlines()[0]}") from None
            site = self.site_of(page.url)
            if site is not None:
                await site.after_load(page)
        await self._settle(page)

    @staticmethod
    async def _settle(page: Any) -> None:
        with contextlib.suppress(Exception):  # a page that navigates away has no frames
            await page.wait_for_load_state("load")
            await evaluate(page, _SETTLE)

    @staticmethod
    async def _follow(page: Any, old: float) -> None:
        """Wait until a navigation the last action started has loaded its document.

        Playwright's click may return before the navigation it set off commits (a form
        post under load): the page would be read, and the next action taken, on the
        document that is going away. The init script marks a document that is being
        left (``beforeunload`` fires as the navigation starts, in the click's own task).
        """
        deadline = asyncio.get_running_loop().time() + NAVIGATION_TIMEOUT_MS / 1000
        while True:
            try:
                leaving, now = await evaluate(page, _LEAVING)
            except Exception:  # its context is gone: the next document is on its way
                leaving, now = True, old
            if now != old:
                await page.wait_for_load_state("load")
                return
            if not leaving:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise InfraError(f"the page at {page.url} did not finish navigating")
            await asyncio.sleep(0.01)

    @staticmethod
    async def _document(page: Any) -> float:
        """The current document's identity: its time origin, new with every load."""
        for _ in range(3):
            try:
                return float(await evaluate(page, "performance.timeOrigin"))
            except Exception:
                await page.wait_for_load_state("load")
        raise InfraError(f"the page at {page.url} does not settle")

    async def mark(self, page: Any | None = None, max_chars: int = 0) -> dict[str, str]:
        """Mark the page's elements with bids and render it (:file:`observe.js`)."""
        page = page or self.page
        try:
            return await evaluate(page, _OBSERVE, max_chars)
        except Exception:  # a page mid-navigation: read it once it has loaded
            await self._settle(page)
        try:
            return await evaluate(page, _OBSERVE, max_chars)
        except Exception as exc:  # the harness could not read the page
            first = str(exc).splitlines()[0]
            raise InfraError(f"reading the page at {page.url} failed: {first}") from None

    # -------------------------------------------------------------------- actions

    async def act(self, name: str, arguments: dict[str, Any]) -> None:
        """Run one checked action (:func:`.actions.check_arguments`); ``ValueError`` for
        what the agent should be told."""
        if name in IN_PAGE:
            await self._in_page(name, arguments)
        elif name == "goto":
            await self.goto(arguments["url"])
        elif name in ("go_back", "go_forward"):
            step = -1 if name == "go_back" else 1
            tab = self.tabs[self.active]
            index = tab.index + step
            if not 0 <= index < len(tab.history):
                raise ValueError(f"no page to go {'back' if step < 0 else 'forward'} to")
            await self._navigated(
                lambda page: self._load(page, tab.history[index]),
                replace(tab, index=index, actions=()),
            )
        elif name == "new_tab":
            self.pages.append(await self._new_page())
            self.tabs.append(TabState())
            self._documents.append(await self._document(self.pages[-1]))
            self.active = len(self.pages) - 1
        elif name == "tab_close":
            page = self.pages.pop(self.active)
            self.tabs.pop(self.active)
            self._documents.pop(self.active)
            await page.close()
            if not self.pages:  # as a browser does: the last tab closed leaves a blank one
                await self.act("new_tab", {})
            self.active = min(self.active, len(self.pages) - 1)
            await self.page.bring_to_front()
        elif name == "tab_focus":
            if not 0 <= arguments["index"] < len(self.pages):
                raise ValueError(f"no tab {arguments['index']}; tabs are 0..{len(self.pages) - 1}")
            self.active = arguments["index"]
            await self.page.bring_to_front()
        elif name == "noop":
            await asyncio.sleep(min(max(arguments["wait_ms"], 0), 5_000) / 1000)
        elif name in CHAT:
            self.messages.append(arguments.get("text", arguments.get("reason", "")))

    async def goto(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.netloc not in self.sites:
            hosts = ", ".join(f"http://{h}/" for h in sorted(self.sites))
            raise ValueError(f"{url!r} is outside this task's sites ({hosts})")
        tab = self.tabs[self.active]
        await self._navigated(lambda page: self._load(page, url), tab)

    async def _navigated(self, load: Any, tab: TabState) -> None:
        page = self.page
        await load(page)
        self._documents[self.active] = await self._document(page)
        self.tabs[self.active] = self._after_navigation(tab, page.url)

    @staticmethod
    def _after_navigation(tab: TabState, url: str) -> TabState:
        if tab.history[tab.index] == url and not tab.actions:
            return tab  # go_back / go_forward: already where the history says
        history = (*tab.history[: tab.index + 1], url)
        return TabState(history=history, index=len(history) - 1)

    async def _in_page(self, name: str, arguments: dict[str, Any]) -> None:
        page = self.page
        await self.mark(page)
        await perform_in_page(page, name, arguments)
        await self._follow(page, self._documents[self.active])
        await self._settle(page)
        document = await self._document(page)
        tab = self.tabs[self.active]
        if document != self._documents[self.active]:  # the action loaded another page
            self._documents[self.active] = document
            site = self.site_of(page.url)
            if site is not None:
                await site.after_load(page)
            self.tabs[self.active] = self._after_navigation(tab, page.url)
        else:
            call = (name, json.dumps(arguments, sort_keys=True))
            self.tabs[self.active] = replace(tab, actions=(*tab.actions, call))

    # ---------------------------------------------------------- the World protocol

    async def snapshot(self) -> BrowserSnapshot:
        storage = await self.context.storage_state()
        for origin in storage.get("origins", []):
            origin["localStorage"] = [
                i for i in origin.get("localStorage", []) if i["name"] != STORAGE_MARK
            ]
        return BrowserSnapshot(
            databases={host: db.serialize() for host, db in self.databases.items()},
            storage=storage,
            tabs=tuple(self.tabs),
            active=self.active,
            messages=tuple(self.messages),
        )

    async def fork(self, n: int) -> list[BrowserWorld]:
        state = await self.snapshot()
        worlds = await asyncio.gather(
            *(BrowserWorld.open(self.sites, state, self.task) for _ in range(n)),
            return_exceptions=True,
        )
        failed = [w for w in worlds if isinstance(w, BaseException)]
        if failed:
            for world in worlds:
                if isinstance(world, BrowserWorld):
                    await world.close()
            raise failed[0]
        return list(worlds)  # type: ignore[arg-type]

    def digest(self) -> str:
        """A hash of the databases' contents, the tabs and the messages (not of the
        storage, which only an async call can read)."""
        h = hashlib.sha256()
        for host in sorted(self.databases):
            h.update(host.encode())
            for line in self.databases[host].iterdump():
                h.update(line.encode())
        h.update(json.dumps([[t.history, t.index, t.actions] for t in self.tabs]).encode())
        h.update(json.dumps([self.active, self.messages]).encode())
        return h.hexdigest()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.context is not None:
            with contextlib.suppress(Exception):  # a browser that died took it along
                await self.context.close()
        for db in self.databases.values():
            db.close()
        await self.runtime.release()


def _refused(url: str) -> str:
    return (
        f"<html><head><title>Blocked</title></head><body><h1>Blocked</h1>"
        f"<p>{escape(url)} is outside this task's sites.</p></body></html>"
    )


def databases_of(sites: Mapping[str, Site], build: Mapping[str, Any]) -> dict[str, bytes]:
    """Serialised databases of ``sites``: each site's schema, filled by ``build[host]``
    (a function of the connection) where given."""
    out = {}
    for host, site in sites.items():
        if not site.schema:
            continue
        db = sqlite3.connect(":memory:")
        db.executescript(site.schema)
        if host in build:
            build[host](db)
        db.commit()
        out[host] = db.serialize()
        db.close()
    return out
