"""What the bundled web apps share: a page layout, escaping, sessions, and a clock.

Every app keeps its state in its own SQLite database (one a world and a branch), with
two tables this module owns: ``sessions`` (a login cookie's token and its user) and
``meta`` (the app's clock and counters). Tokens and times come from counters in
``meta``, not from the host's clock or randomness, so that the same actions give the
same pages, cookies and rows on every run; a restored world carries them in its
database copy.
"""

from __future__ import annotations

import datetime
import hashlib
import sqlite3
from collections.abc import Iterable
from html import escape
from urllib.parse import quote

from pivotgym.envs.browser.sites import Request, Response

SESSION_COOKIE = "session"
# When every app's clock starts (2024-03-01 09:00 UTC); each change moves it a minute.
EPOCH = 1_709_283_600
SHARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, user_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def counter(db: sqlite3.Connection, key: str) -> int:
    """The next value of the counter ``key`` (1, 2, ...)."""
    db.execute(
        "INSERT INTO meta VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1", (key,)
    )
    return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]


def tick(db: sqlite3.Connection) -> str:
    """Advance the app's clock by a minute; the new time, as ISO text."""
    minutes = counter(db, "clock")
    moment = datetime.datetime.fromtimestamp(EPOCH + 60 * minutes, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def current_user(db: sqlite3.Connection, request: Request) -> int | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    row = db.execute("SELECT user_id FROM sessions WHERE token = ?", (token,)).fetchone()
    return row[0] if row else None


def log_in(db: sqlite3.Connection, user_id: int, host: str, location: str) -> Response:
    """A new session for ``user_id`` and a redirect to ``location`` that sets its cookie."""
    number = counter(db, "sessions")
    token = hashlib.sha256(f"{host}:{user_id}:{number}".encode()).hexdigest()[:32]
    db.execute("INSERT INTO sessions VALUES (?, ?)", (token, user_id))
    return Response.redirect(
        location, **{"set-cookie": f"{SESSION_COOKIE}={token}; Path=/; HttpOnly"}
    )


def login_page(request: Request, layout: dict) -> Response:
    """The login form; it sends the user on to the query's ``next`` once logged in."""
    failed = "<p class=error>Wrong username or password.</p>" if request.query.get("failed") else ""
    body = (
        f'{failed}<form method="post" action="/login"><input type="hidden" name="next" '
        f'value="{esc(request.query.get("next", "/"))}"><label for="username">Username</label> '
        '<input id="username" name="username"><br><label for="password">Password</label> '
        '<input id="password" name="password" type="password"><br>'
        '<button type="submit">Log in</button></form>'
    )
    return page("Log in", body, **layout)


def check_login(db: sqlite3.Connection, request: Request, host: str) -> Response:
    """A posted login: a session and on to ``next`` (a path of this site only), or back
    to the form, which then says the login failed. ``users`` holds the accounts."""
    form = request.form
    row = db.execute(
        "SELECT id FROM users WHERE username = ? AND password = ?",
        (form.get("username", ""), form.get("password", "")),
    ).fetchone()
    target = form.get("next", "/")
    target = target if target.startswith("/") and not target.startswith("//") else "/"
    if row is None:
        return Response.redirect(f"/login?next={quote(target)}&failed=1")
    return log_in(db, row[0], host, target)


def log_out(db: sqlite3.Connection, request: Request) -> Response:
    db.execute("DELETE FROM sessions WHERE token = ?", (request.cookies.get(SESSION_COOKIE),))
    return Response.redirect("/", **{"set-cookie": f"{SESSION_COOKIE}=; Path=/; Max-Age=0"})


def page(
    title: str,
    body: str,
    *,
    site: str,
    nav: Iterable[tuple[str, str]],
    user: str | None,
    script: str = "",
) -> Response:
    """A whole page: the site's name, its navigation, who is logged in, and ``body``."""
    links = " | ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in nav)
    who = (
        (
            f'Logged in as {esc(user)} <form method="post" action="/logout" class="inline">'
            f'<button type="submit">Log out</button></form>'
        )
        if user
        else '<a href="/login">Log in</a>'
    )
    html = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)} - {esc(site)}"
        f"</title><style>{_STYLE}</style></head><body><header><strong>{esc(site)}</strong> "
        f"<nav>{links}</nav><span class='who'>{who}</span></header><main>"
        f"<h1>{esc(title)}</h1>{body}</main>{f'<script>{script}</script>' if script else ''}"
        "</body></html>"
    )
    return Response(200, html)


def not_found(what: str, **layout: object) -> Response:
    answer = page("Not found", f"<p>{esc(what)} does not exist.</p>", **layout)  # type: ignore[arg-type]
    return Response(404, answer.body)


def table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """An HTML table; cells are HTML already (escape what comes from data)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


_STYLE = (
    "body{font-family:sans-serif;margin:0}header{background:#eee;padding:8px}"
    "main{padding:8px}form.inline{display:inline}td,th{padding:2px 8px;text-align:left}"
    ".error{color:#a00}"
)
