"""Sites a browser world serves: each a host name, its pages, and its database.

Pages reach a site only through the world's request interception (no socket, no
network): a :class:`Request` in, a :class:`Response` out, in this process. A site is
code and configuration; what changes is its database, one SQLite connection per world
and per branch, which the world copies to snapshot and fork
(:mod:`pivotgym.envs.browser.world`). So that a restored page is the page that was left,
a site's ``GET`` never changes its database, and every form ``POST`` answers with a
redirect to a ``GET`` (post/redirect/get): a tab's state is then its URL.
"""

from __future__ import annotations

import mimetypes
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pivotgym.errors import DataError


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    form: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.url).query).items()}

    @classmethod
    def parse(cls, method: str, url: str, body: str | None, headers: dict[str, str]) -> Request:
        form = {}
        if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
            form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                cookies[name] = value
        return cls(method.upper(), url, form, cookies)


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def redirect(cls, location: str, **headers: str) -> Response:
        return cls(303, b"", headers={"location": location, **headers})


class Site:
    """A host the world serves. Subclasses set ``host`` and ``schema`` (the SQL that
    makes an empty database; none for static sites) and answer :meth:`handle`."""

    host: str = ""
    schema: str = ""

    @property
    def origin(self) -> str:
        return f"http://{self.host}"

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        raise NotImplementedError

    async def after_load(self, page: Any) -> None:
        """What runs in a page of this site once it has loaded (default: nothing)."""

    def check_schema(self, db: sqlite3.Connection, where: str) -> None:
        """Refuse (``DataError``, one line) a database whose tables or columns are not
        this site's."""
        want = sqlite3.connect(":memory:")
        want.executescript(self.schema)
        for (table,) in want.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            columns = [row[1] for row in want.execute(f"PRAGMA table_info({table})")]
            found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if not found:
                raise DataError(f"no table {table!r} in {self.host}'s database", field=where)
            missing = [c for c in columns if c not in found]
            if missing:
                raise DataError(
                    f"table {table!r} of {self.host}'s database lacks column {missing[0]!r}",
                    field=where,
                )


class StaticSite(Site):
    """Files of a folder, read only (MiniWoB++'s pages)."""

    def __init__(self, host: str, root: Path) -> None:
        self.host = host
        self.root = root.resolve()

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        path = (self.root / request.path.lstrip("/")).resolve()
        if request.method != "GET" or not path.is_relative_to(self.root) or not path.is_file():
            return Response(404, f"Not found: {request.path}", "text/plain")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(200, path.read_bytes(), kind)
