"""Task families of the issue tracker (:mod:`pivotgym.envs.browser.apps.tracker`).

- ``tracker.file-issue``: log in and file an issue in a project with a title, a label
  and a priority. Checked on the database: exactly one new issue, by that user, with
  those fields.
- ``tracker.close-issue``: log in, comment on an issue found by its title, and close
  it. Checked on the database: the issue closed, and the user's new comment on it.
- ``tracker.count-open`` (held out): count a project's open issues with a label.
  Checked on the answer.
"""

from __future__ import annotations

import random
import re
from typing import Any

from pivotgym.envs.browser.apps.tracker import HOST, LABELS, PRIORITIES, PROJECTS, Tracker, populate
from pivotgym.envs.browser.families import Action, Expert, Family
from pivotgym.envs.browser.families.app import AppFamily
from pivotgym.envs.browser.families.page_text import find
from pivotgym.envs.browser.families.shop import answer_matches
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.envs.tools.words import pick

START = f"http://{HOST}/"
_TITLES = (
    "Broken link on the {}",
    "Typo in the {} help text",
    "Add a shortcut to the {}",
    "Flaky test around the {}",
    "Slow query behind the {}",
)
_AREAS = ("dashboard", "profile page", "invoice view", "team settings", "import wizard")
_COMMENTS = (
    "Fixed in the latest release.",
    "Duplicate of an older report.",
    "Cannot reproduce any more.",
    "Resolved by the new config.",
)


class TrackerFamily(AppFamily):
    site = Tracker()
    populate = staticmethod(populate)


class _LogsIn(Expert):
    """Fills the login form in either order; the rest is the family's."""

    filled: set[str]

    def log_in(self, page: str) -> Action:
        p = self.task.params
        fields = [("Username", p["user"]), ("Password", p["password"])]
        self.rng.shuffle(fields)
        for label, value in fields:
            if label not in self.filled:
                self.filled.add(label)
                return "fill", {"bid": find(page, "textbox", label).bid, "value": value}
        self.filled.clear()
        return "click", {"bid": find(page, "button", "Log in").bid}


class FileIssue(TrackerFamily):
    name = "tracker.file-issue"
    params = ("user", "password", "project", "title", "label", "priority", "issues_before")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        user, password = pick(
            rng, db.execute("SELECT username, password FROM users ORDER BY id").fetchall()
        )
        project = pick(rng, tuple(PROJECTS))
        title = pick(rng, _TITLES).format(pick(rng, _AREAS))
        label, priority = pick(rng, LABELS), pick(rng, PRIORITIES)
        goal = (
            f"Log in to the tracker as {user} (password: {password}) and file an issue in "
            f'the {project} project titled "{title}", labelled {label}, with {priority} '
            "priority."
        )
        before = db.execute("SELECT COUNT(*) FROM issues").fetchone()[0]
        params = {
            "user": user,
            "password": password,
            "project": project,
            "title": title,
            "label": label,
            "priority": priority,
            "issues_before": before,
        }
        return BrowserTask(task_id, self.name, seed, goal, params, 15)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        p = task.params
        new = (
            world.databases[HOST]
            .execute(
                "SELECT i.project, i.title, i.label, i.priority, u.username FROM issues i "
                "JOIN users u ON u.id = i.author_id WHERE i.id > ?",
                (p["issues_before"],),
            )
            .fetchall()
        )
        if len(new) != 1:
            return 0.0, {"reason": f"{len(new)} new issues, not 1"}
        project, title, label, priority, user = new[0]
        wrong = [
            k
            for k, ok in (
                ("project", project == p["project"]),
                ("title", title.strip().lower() == p["title"].lower()),
                ("label", label == p["label"]),
                ("priority", priority == p["priority"]),
                ("author", user == p["user"]),
            )
            if not ok
        ]
        return float(not wrong), {"reason": f"wrong {', '.join(wrong)}" if wrong else "filed"}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return FileIssueExpert(task, random.Random(seed))


class FileIssueExpert(_LogsIn):
    """Logs in first or when the form asks; reaches the form from the project page (from
    the project list); fills the fields in a random order."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.login_first = rng.random() < 0.5
        self.filled: set[str] = set()
        self.order = ["title", "label", "priority"]
        rng.shuffle(self.order)

    def act(self, goal: str, page: str, url: str) -> Action | None:
        p = self.task.params
        path = url.removeprefix(START.rstrip("/"))
        if path.startswith("/login"):
            return self.log_in(page)
        if path.startswith("/issues/"):
            number = re.search(r"#(\d+)", page)
            return "send_msg_to_user", {"text": f"Filed as #{number[1] if number else '?'}."}
        if self.login_first and "Logged in as" not in page:
            return "click", {"bid": find(page, "link", "Log in").bid}
        if path.startswith("/new"):
            if not self.order:
                return "click", {"bid": find(page, "button", "File issue").bid}
            field = self.order.pop(0)
            if field == "title":
                return "fill", {"bid": find(page, "textbox", "Title").bid, "value": p["title"]}
            box = find(page, "combobox", field.capitalize())
            return "select_option", {"bid": box.bid, "options": p[field]}
        if path.startswith(f"/project/{p['project']}"):
            return "click", {"bid": find(page, "link", "New issue").bid}
        try:
            return "click", {"bid": find(page, "link", p["project"]).bid}
        except LookupError:
            return "click", {"bid": find(page, "link", "Projects").bid}


class CloseIssue(TrackerFamily):
    name = "tracker.close-issue"
    params = ("user", "password", "issue", "project", "title", "comment", "comments_before")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        user, password = pick(
            rng, db.execute("SELECT username, password FROM users ORDER BY id").fetchall()
        )
        unique = db.execute(
            "SELECT id, project, title FROM issues WHERE status = 'open' AND "
            "title IN "
            "(SELECT title FROM issues GROUP BY title HAVING COUNT(*) = 1) "
            "ORDER BY id"
        ).fetchall()
        issue, project, title = pick(rng, unique)
        comment = pick(rng, _COMMENTS)
        goal = (
            f"Log in to the tracker as {user} (password: {password}). Find the open issue "
            f'"{title}", comment "{comment}" on it, and close it.'
        )
        before = db.execute("SELECT COUNT(*) FROM comments").fetchone()[0]
        params = {
            "user": user,
            "password": password,
            "issue": issue,
            "project": project,
            "title": title,
            "comment": comment,
            "comments_before": before,
        }
        return BrowserTask(task_id, self.name, seed, goal, params, 20)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        p = task.params
        db = world.databases[HOST]
        status = db.execute("SELECT status FROM issues WHERE id = ?", (p["issue"],)).fetchone()[0]
        comments = db.execute(
            "SELECT c.body FROM comments c JOIN users u ON u.id = c.author_id WHERE c.id > ? AND "
            "c.issue_id = ? AND u.username = ?",
            (p["comments_before"], p["issue"], p["user"]),
        ).fetchall()
        commented = any(answer_matches(body, p["comment"]) for (body,) in comments)
        closed = status == "closed"
        reason = f"issue #{p['issue']} {status}, {'with' if commented else 'without'} the comment"
        return float(closed and commented), {"reason": reason}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return CloseIssueExpert(task, random.Random(seed))


class CloseIssueExpert(_LogsIn):
    """Finds the issue by search or through its project's list, logs in from the issue
    page, then comments and closes (comment first: closing first works as well)."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.search = rng.random() < 0.5
        self.close_first = rng.random() < 0.3
        self.filled: set[str] = set()
        self.done: set[str] = set()

    def act(self, goal: str, page: str, url: str) -> Action | None:
        p = self.task.params
        path = url.removeprefix(START.rstrip("/"))
        if path.startswith("/login"):
            return self.log_in(page)
        if path == f"/issues/{p['issue']}":
            if "Logged in as" not in page:
                return "click", {"bid": find(page, "link", "Log in to comment").bid}
            order = ["close", "comment"] if self.close_first else ["comment", "close"]
            for step in order:
                if step == "close" and "close" not in self.done:
                    self.done.add("close")
                    return "click", {"bid": find(page, "button", "Close issue").bid}
                if step == "comment" and "comment" not in self.done:
                    box = find(page, "textbox", "Comment")
                    if box.value != p["comment"]:
                        return "fill", {"bid": box.bid, "value": p["comment"]}
                    self.done.add("comment")
                    return "click", {"bid": find(page, "button", "Add comment").bid}
            return "send_msg_to_user", {"text": f"Issue #{p['issue']} is commented and closed."}
        try:
            return "click", {"bid": find(page, "link", p["title"]).bid}
        except LookupError:
            pass
        if self.search:
            if path == "/search" or path.startswith("/search?"):
                box = find(page, "textbox", "Search issues")
                if box.value != p["title"]:
                    return "fill", {"bid": box.bid, "value": p["title"]}
                return "click", {"bid": find(page, "button", "Search").bid}
            return "click", {"bid": find(page, "link", "Search").bid}
        if path.startswith(f"/project/{p['project']}"):
            raise LookupError(f"the issue is not listed in {p['project']}")
        try:
            return "click", {"bid": find(page, "link", p["project"]).bid}
        except LookupError:
            return "click", {"bid": find(page, "link", "Projects").bid}


class CountOpen(TrackerFamily):
    name = "tracker.count-open"
    held_out = True
    params = ("project", "label", "count")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        project, label = pick(rng, tuple(PROJECTS)), pick(rng, LABELS)
        count = db.execute(
            "SELECT COUNT(*) FROM issues WHERE project = ? AND label = ? AND status = 'open'",
            (project, label),
        ).fetchone()[0]
        goal = f"How many open issues labelled {label} does the {project} project have?"
        return BrowserTask(
            task_id, self.name, seed, goal, {"project": project, "label": label, "count": count}, 10
        )

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        answer = self.answer(world)
        numbers = re.findall(r"\d+", answer)
        ok = numbers[:1] == [str(task.params["count"])]
        return float(ok), {"reason": f"answered {answer[:80]!r}, it is {task.params['count']}"}


FAMILIES: list[Family] = [FileIssue(), CloseIssue(), CountOpen()]
