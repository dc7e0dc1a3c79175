"""Tracker: an issue tracker with projects, issues, comments and logins (``tracker.test``).

Pages: the projects, a project's issues (filtered by status and label through the
query string), an issue with its comments (a comment form whose draft the browser
keeps in local storage as it is typed, and, for a logged-in user, close / reopen and
assign), a form to file an issue (title, description, label, priority), a search over
titles, and log in / log out. Changing anything needs a login. Form posts redirect to
the page they changed (post/redirect/get); a ``GET`` never writes.

:func:`populate` fills the database from a seed: four projects with a few dozen issues
each (titles from word lists, labels, priorities, open or closed, assignees), comments,
and the team's accounts.
"""

from __future__ import annotations

import random
import sqlite3
from urllib.parse import quote

from pivotgym.envs.browser.apps.web import (
    SHARED_SCHEMA,
    check_login,
    current_user,
    esc,
    log_out,
    login_page,
    not_found,
    page,
    table,
    tick,
)
from pivotgym.envs.browser.sites import Request, Response, Site
from pivotgym.envs.tools.words import FIRST_NAMES, pick

HOST = "tracker.test"
LABELS = ("bug", "feature", "docs", "performance", "security")
PRIORITIES = ("low", "medium", "high", "urgent")
PROJECTS = {"CORE": "Core engine", "WEB": "Web frontend", "API": "Public API", "OPS": "Operations"}
_SUBJECTS = (
    "login page",
    "export to CSV",
    "search results",
    "dark mode",
    "password reset",
    "upload form",
    "settings page",
    "audit log",
    "rate limiter",
    "email digest",
    "billing report",
    "session timeout",
    "cache layer",
    "webhook retries",
    "sidebar",
)
_PROBLEMS = (
    "crashes on empty input",
    "is slow with many rows",
    "shows the wrong date",
    "needs a keyboard shortcut",
    "is missing from the docs",
    "leaks memory",
    "ignores the time zone",
    "times out under load",
    "should support filters",
    "loses unsaved changes",
)

SCHEMA = (
    SHARED_SCHEMA
    + """
CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL);
CREATE TABLE issues (id INTEGER PRIMARY KEY, project TEXT NOT NULL, title TEXT NOT NULL,
    body TEXT NOT NULL, label TEXT NOT NULL, priority TEXT NOT NULL, status TEXT NOT NULL,
    author_id INTEGER NOT NULL, assignee_id INTEGER, created_at TEXT NOT NULL);
CREATE TABLE comments (id INTEGER PRIMARY KEY, issue_id INTEGER NOT NULL,
    author_id INTEGER NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL);
"""
)
# The comment form keeps its draft in local storage while it is typed, and offers it
# again when the issue is opened later.
_DRAFT = """
const box = document.getElementById('comment');
if (box) {
  const key = 'draft:' + box.dataset.issue;
  box.value = localStorage.getItem(key) || '';
  box.addEventListener('input', () => localStorage.setItem(key, box.value));
  box.form.addEventListener('submit', () => localStorage.removeItem(key));
}
"""


def populate(db: sqlite3.Connection, seed: int) -> None:
    rng = random.Random(f"tracker:{seed}")
    names = sorted(set(rng.sample(FIRST_NAMES, 7)))
    for user_id, name in enumerate(names, start=1):
        db.execute(
            "INSERT INTO users VALUES (?, ?, ?)",
            (user_id, name.lower(), f"{name.lower()}-{rng.randrange(1000, 9999)}"),
        )
    for project in PROJECTS:
        titles: set[str] = set()
        while len(titles) < rng.randrange(18, 26):
            subject = pick(rng, _SUBJECTS)
            titles.add(f"{subject[0].upper()}{subject[1:]} {pick(rng, _PROBLEMS)}")
        shuffled = sorted(titles)
        rng.shuffle(shuffled)
        for title in shuffled:
            author = rng.randrange(1, len(names) + 1)
            assignee = rng.randrange(1, len(names) + 1) if rng.random() < 0.6 else None
            cursor = db.execute(
                "INSERT INTO issues (project, title, body, label, priority, status, author_id, "
                "assignee_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    project,
                    title,
                    f"Seen in {PROJECTS[project].lower()}: {title.lower()}.",
                    pick(rng, LABELS),
                    pick(rng, PRIORITIES),
                    "closed" if rng.random() < 0.3 else "open",
                    author,
                    assignee,
                    tick(db),
                ),
            )
            for _ in range(rng.randrange(0, 3)):
                db.execute(
                    "INSERT INTO comments (issue_id, author_id, body, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (
                        cursor.lastrowid,
                        rng.randrange(1, len(names) + 1),
                        pick(
                            rng,
                            (
                                "Can reproduce.",
                                "Same here.",
                                "Looking into it.",
                                "Any update?",
                                "Fixed on my branch.",
                            ),
                        ),
                        tick(db),
                    ),
                )


class Tracker(Site):
    host = HOST
    schema = SCHEMA

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        assert db is not None
        user_id = current_user(db, request)
        user = db.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        layout = {
            "site": "Tracker",
            "user": user[0] if user else None,
            "nav": [("Projects", "/"), ("Search", "/search")],
        }
        try:
            if request.method == "POST":
                return self._post(db, request, user_id)
            return self._get(db, request, user_id, layout)
        finally:
            db.commit()

    def _get(
        self, db: sqlite3.Connection, request: Request, user_id: int | None, layout: dict
    ) -> Response:
        path = request.path
        parts = path.strip("/").split("/")
        if path == "/":
            rows = [
                [
                    f'<a href="/project/{key}">{esc(key)}</a>',
                    esc(name),
                    str(
                        db.execute(
                            "SELECT COUNT(*) FROM issues WHERE project = ? AND status = 'open'",
                            (key,),
                        ).fetchone()[0]
                    ),
                ]
                for key, name in PROJECTS.items()
            ]
            return page("Projects", table(["Project", "Name", "Open issues"], rows), **layout)
        if path == "/login":
            return login_page(request, layout)
        if path == "/search":
            q = request.query.get("q", "").strip()
            rows = (
                db.execute(
                    "SELECT id, project, title, status FROM issues WHERE title LIKE ? ORDER BY id",
                    (f"%{q}%",),
                ).fetchall()
                if q
                else []
            )
            form = (
                f'<form method="get" action="/search"><label for="q">Search issues</label> '
                f'<input id="q" name="q" value="{esc(q)}"> <button type="submit">Search'
                "</button></form>"
            )
            found = (
                _issue_table(rows) if rows else (f"<p>No issues match {esc(q)}.</p>" if q else "")
            )
            return page("Search", form + found, **layout)
        if parts[0] == "project" and len(parts) == 2 and parts[1] in PROJECTS:
            return self._project(db, request, parts[1], layout)
        if parts[0] == "issues" and len(parts) == 2 and parts[1].isdigit():
            return self._issue(db, int(parts[1]), user_id, layout)
        if path == "/new":
            project = request.query.get("project", "")
            if project not in PROJECTS:
                return not_found(f"The project {project}", **layout)
            if user_id is None:
                return Response.redirect(f"/login?next={quote(f'/new?project={project}')}")
            labels = "".join(f"<option>{label}</option>" for label in LABELS)
            priorities = "".join(f"<option>{p}</option>" for p in PRIORITIES)
            body = (
                f'<form method="post" action="/new"><input type="hidden" name="project" '
                f'value="{project}"><label for="title">Title</label> <input id="title" '
                'name="title" size="50"><br><label for="body">Description</label><br>'
                '<textarea id="body" name="body" rows="4" cols="50"></textarea><br>'
                f'<label for="label">Label</label> <select id="label" name="label">{labels}'
                '</select> <label for="priority">Priority</label> <select id="priority" '
                f'name="priority">{priorities}</select><br><button type="submit">File issue'
                "</button></form>"
            )
            return page(f"New issue in {project}", body, **layout)
        return not_found(f"The page {path}", **layout)

    def _project(
        self, db: sqlite3.Connection, request: Request, project: str, layout: dict
    ) -> Response:
        status = request.query.get("status", "open")
        label = request.query.get("label", "")
        sql, args = "SELECT id, project, title, status FROM issues WHERE project = ?", [project]
        if status in ("open", "closed"):
            sql, args = sql + " AND status = ?", [*args, status]
        if label in LABELS:
            sql, args = sql + " AND label = ?", [*args, label]
        rows = db.execute(sql + " ORDER BY id", args).fetchall()
        base = f"/project/{project}"
        statuses = " | ".join(
            f'<a href="{base}?status={s}&amp;label={label}">{s}</a>'
            for s in ("open", "closed", "all")
        )
        labels = " | ".join(
            f'<a href="{base}?status={status}&amp;label={x}">{x}</a>' for x in LABELS
        )
        body = (
            f'<p><a href="/new?project={project}">New issue</a></p>'
            f"<p>Status: {statuses}</p><p>Label: {labels} | "
            f'<a href="{base}?status={status}">any</a></p>'
            f"<p>Showing {len(rows)} {'' if status == 'all' else status + ' '}issues"
            f"{f' labelled {label}' if label in LABELS else ''}.</p>"
            + (_issue_table(rows) if rows else "")
        )
        return page(f"{project}: {PROJECTS[project]}", body, **layout)

    def _issue(
        self, db: sqlite3.Connection, issue_id: int, user_id: int | None, layout: dict
    ) -> Response:
        row = db.execute(
            "SELECT i.id, i.project, i.title, i.body, i.label, i.priority, i.status, a.username, "
            "s.username FROM issues i JOIN users a ON a.id = i.author_id LEFT JOIN users s ON "
            "s.id = i.assignee_id WHERE i.id = ?",
            (issue_id,),
        ).fetchone()
        if row is None:
            return not_found(f"Issue #{issue_id}", **layout)
        _, project, title, text, label, priority, status, author, assignee = row
        comments = db.execute(
            "SELECT u.username, c.body, c.created_at FROM comments c JOIN users "
            "u ON u.id = c.author_id WHERE c.issue_id = ? ORDER BY c.id",
            (issue_id,),
        ).fetchall()
        listed = "".join(
            f"<li><strong>{esc(u)}</strong> ({esc(at)}): {esc(b)}</li>" for u, b, at in comments
        )
        body = (
            f'<p>Project: <a href="/project/{project}">{project}</a></p>'
            f"<p>Status: {status}</p><p>Label: {label}</p><p>Priority: {priority}</p>"
            f"<p>Reported by {esc(author)}; assigned to {esc(assignee or 'nobody')}.</p>"
            f"<p>{esc(text)}</p><h2>Comments</h2><ul>{listed}</ul>"
        )
        if user_id is None:
            body += f'<p><a href="/login?next=/issues/{issue_id}">Log in to comment</a></p>'
            return page(f"#{issue_id} {title}", body, **layout)
        users = "".join(
            f"<option{' selected' if n == assignee else ''}>{esc(n)}</option>"
            for (n,) in db.execute("SELECT username FROM users ORDER BY username")
        )
        toggle = "Reopen issue" if status == "closed" else "Close issue"
        body += (
            f'<form method="post" action="/issues/{issue_id}/comment"><label for="comment">'
            f'Comment</label><br><textarea id="comment" name="body" rows="3" cols="50" '
            f'data-issue="{issue_id}"></textarea><br><button type="submit">Add comment'
            f'</button></form><form method="post" action="/issues/{issue_id}/status">'
            f'<button type="submit">{toggle}</button></form>'
            f'<form method="post" action="/issues/{issue_id}/assign"><label for="assignee">'
            f'Assignee</label> <select id="assignee" name="assignee"><option value="">'
            f'nobody</option>{users}</select> <button type="submit">Assign</button></form>'
        )
        return page(f"#{issue_id} {title}", body, script=_DRAFT, **layout)

    def _post(self, db: sqlite3.Connection, request: Request, user_id: int | None) -> Response:
        form, path = request.form, request.path
        if path == "/login":
            return check_login(db, request, HOST)
        if path == "/logout":
            return log_out(db, request)
        if user_id is None:
            return Response.redirect("/login")
        parts = path.strip("/").split("/")
        if path == "/new":
            project, title = form.get("project", ""), " ".join(form.get("title", "").split())
            if project not in PROJECTS or not title:
                return Response.redirect(f"/new?project={quote(project)}")
            label = form.get("label") if form.get("label") in LABELS else LABELS[0]
            priority = form.get("priority") if form.get("priority") in PRIORITIES else "low"
            cursor = db.execute(
                "INSERT INTO issues (project, title, body, label, priority, status, author_id, "
                "assignee_id, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?, NULL, ?)",
                (project, title, form.get("body", "").strip(), label, priority, user_id, tick(db)),
            )
            return Response.redirect(f"/issues/{cursor.lastrowid}")
        if len(parts) == 3 and parts[0] == "issues" and parts[1].isdigit():
            issue_id = int(parts[1])
            exists = db.execute("SELECT status FROM issues WHERE id = ?", (issue_id,)).fetchone()
            if exists is None:
                return Response.redirect("/")
            if parts[2] == "comment" and form.get("body", "").strip():
                db.execute(
                    "INSERT INTO comments (issue_id, author_id, body, created_at) VALUES "
                    "(?, ?, ?, ?)",
                    (issue_id, user_id, form["body"].strip(), tick(db)),
                )
            elif parts[2] == "status":
                new = "open" if exists[0] == "closed" else "closed"
                db.execute("UPDATE issues SET status = ? WHERE id = ?", (new, issue_id))
                tick(db)
            elif parts[2] == "assign":
                who = db.execute(
                    "SELECT id FROM users WHERE username = ?", (form.get("assignee", ""),)
                ).fetchone()
                db.execute(
                    "UPDATE issues SET assignee_id = ? WHERE id = ?",
                    (who[0] if who else None, issue_id),
                )
                tick(db)
            return Response.redirect(f"/issues/{issue_id}")
        return Response(400, "Bad request", "text/plain")


def _issue_table(rows: list[tuple[int, str, str, str]]) -> str:
    return table(
        ["Issue", "Project", "Title", "Status"],
        [
            [
                f'<a href="/issues/{i}">#{i}</a>',
                esc(p),
                f'<a href="/issues/{i}">{esc(t)}</a>',
                esc(s),
            ]
            for i, p, t, s in rows
        ],
    )
