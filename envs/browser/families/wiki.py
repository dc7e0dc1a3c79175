"""Task families of the wiki (:mod:`pivotgym.envs.browser.apps.wiki`): finding facts
across linked pages, BrowseComp's kind of question, and editing.

- ``wiki.fact``: a fact of a person's own article (birth year, occupation).
- ``wiki.two-hop``: a fact of the article a person's article links to (the population
  of their birthplace, the year their employer was founded).
- ``wiki.edit``: log in and change a person's occupation and employer. Checked on the
  database.
- ``wiki.three-hop`` (held out): a fact two links away (the birth year of the founder of
  a person's employer; the country of the headquarters of a person's sibling's employer).

Questions are checked on the answer sent to the user: the value, as the page writes it
or without its thousands separators.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any
from urllib.parse import quote

from pivotgym.envs.browser.apps.wiki import HOST, OCCUPATIONS, Wiki, populate
from pivotgym.envs.browser.families import Action, Expert, Family
from pivotgym.envs.browser.families.app import AppFamily
from pivotgym.envs.browser.families.page_text import find
from pivotgym.envs.browser.families.shop import answer_matches
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.envs.tools.words import pick

START = f"http://{HOST}/"


def _one(db: sqlite3.Connection, sql: str, *args: Any) -> Any:
    return db.execute(sql, args).fetchone()[0]


class WikiFamily(AppFamily):
    site = Wiki()
    populate = staticmethod(populate)
    params: tuple[str, ...] = ("path", "answer")

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        answer = self.answer(world)
        expected = str(task.params["answer"])
        ok = answer_matches(answer, expected) or answer_matches(answer, expected.replace(",", ""))
        return float(ok), {"reason": f"answered {answer[:80]!r}, it is {expected}"}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return ChaseExpert(task, random.Random(seed))


def _question(rng: random.Random, db: sqlite3.Connection, hops: int) -> tuple[str, list[str], str]:
    """A question ``hops`` articles deep from a person: its text, the articles on the way
    (the person's first), and the answer as the last article shows it."""
    person = pick(rng, [n for (n,) in db.execute("SELECT name FROM people ORDER BY name")])
    born, birthplace, occupation, employer, sibling = db.execute(
        "SELECT born, birthplace, occupation, employer, sibling FROM people WHERE name = ?",
        (person,),
    ).fetchone()
    if hops == 1:
        if rng.random() < 0.5:
            return f"In what year was {person} born?", [person], str(born)
        return f"What is {person}'s occupation?", [person], occupation
    if hops == 2:
        if rng.random() < 0.5:
            population = _one(db, "SELECT population FROM cities WHERE name = ?", birthplace)
            return (
                f"What is the population of the city where {person} was born?",
                [person, birthplace],
                f"{population:,}",
            )
        founded = _one(db, "SELECT founded FROM companies WHERE name = ?", employer)
        return (
            f"In what year was the company {person} works for founded?",
            [person, employer],
            str(founded),
        )
    if rng.random() < 0.5:
        founder = _one(db, "SELECT founder FROM companies WHERE name = ?", employer)
        born_founder = _one(db, "SELECT born FROM people WHERE name = ?", founder)
        return (
            f"In what year was the founder of {person}'s employer born?",
            [person, employer, founder],
            str(born_founder),
        )
    sibling_employer = _one(db, "SELECT employer FROM people WHERE name = ?", sibling)
    hq = _one(db, "SELECT headquarters FROM companies WHERE name = ?", sibling_employer)
    country = _one(db, "SELECT country FROM cities WHERE name = ?", hq)
    return (
        f"In which country is the headquarters of the company that employs {person}'s sibling?",
        [person, sibling, sibling_employer, hq],
        country,
    )


class Question(WikiFamily):
    def __init__(self, name: str, hops: int, held_out: bool = False) -> None:
        self.name, self.hops, self.held_out = name, hops, held_out

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        question, path, answer = _question(rng, self.database(seed), self.hops)
        goal = f"Use the wiki to answer: {question}"
        return BrowserTask(
            task_id, self.name, seed, goal, {"path": path, "answer": answer}, 6 + 3 * self.hops
        )


class ChaseExpert(Expert):
    """Reaches the question's person by search or through the people index, follows the
    links of the path (or searches for the next article), and answers from the last."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.search = rng.random() < 0.5
        self.step = 0  # the article of the path the expert is after

    def act(self, goal: str, page: str, url: str) -> Action | None:
        path: list[str] = self.task.params["path"]
        here = url.removeprefix(START.rstrip("/"))
        while self.step < len(path) and here == f"/wiki/{quote(path[self.step])}":
            self.step += 1
        if self.step == len(path):
            return self.finish(page)
        wanted = path[self.step]
        try:
            link = find(page, "link", wanted)
        except LookupError:
            link = None
        if link is not None and (self.step > 0 or not here.startswith("/wiki/")):
            return "click", {"bid": link.bid}
        if self.search:
            if here.startswith("/search") or here == "/":
                box = find(page, "textbox", "Search the wiki")
                if box.value != wanted:
                    return "fill", {"bid": box.bid, "value": wanted}
                return "click", {"bid": find(page, "button", "Search").bid}
            return "click", {"bid": find(page, "link", "Main page").bid}
        return "click", {"bid": find(page, "link", "People").bid}

    def finish(self, page: str) -> Action:
        return "send_msg_to_user", {"text": f"The answer is {self.task.params['answer']}."}


class Edit(WikiFamily):
    name = "wiki.edit"
    params = ("user", "password", "person", "occupation", "employer")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        user, password = pick(
            rng, db.execute("SELECT username, password FROM users ORDER BY id").fetchall()
        )
        person, occupation, employer = pick(
            rng,
            db.execute("SELECT name, occupation, employer FROM people ORDER BY name").fetchall(),
        )
        new_job = pick(rng, [o for o in OCCUPATIONS if o != occupation])
        companies = [c for (c,) in db.execute("SELECT name FROM companies ORDER BY name")]
        new_employer = pick(rng, [c for c in companies if c != employer])
        goal = (
            f"Log in to the wiki as {user} (password: {password}) and update {person}'s "
            f"article: they are now a {new_job} at {new_employer}."
        )
        params = {
            "user": user,
            "password": password,
            "person": person,
            "occupation": new_job,
            "employer": new_employer,
        }
        return BrowserTask(task_id, self.name, seed, goal, params, 14)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        p = task.params
        db = world.databases[HOST]
        occupation, employer = db.execute(
            "SELECT occupation, employer FROM people WHERE name = ?", (p["person"],)
        ).fetchone()
        edited = db.execute("SELECT COUNT(*) FROM people WHERE edited_at IS NOT NULL").fetchone()[0]
        wrong = [
            k
            for k, ok in (
                ("occupation", occupation.lower() == p["occupation"]),
                ("employer", employer == p["employer"]),
                ("other articles", edited == 1),
            )
            if not ok
        ]
        return float(not wrong), {"reason": f"wrong {', '.join(wrong)}" if wrong else "edited"}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return EditExpert(task, random.Random(seed))


class EditExpert(Expert):
    """Logs in first (then finds the article) or from the edit link's login redirect,
    and changes the two fields in either order."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.login_first = rng.random() < 0.5
        self.search = rng.random() < 0.5
        self.order = ["occupation", "employer"]
        rng.shuffle(self.order)
        self.filled: set[str] = set()

    def act(self, goal: str, page: str, url: str) -> Action | None:
        p = self.task.params
        here = url.removeprefix(START.rstrip("/"))
        article = f"/wiki/{quote(p['person'])}"
        if here.startswith("/login"):
            for label, value in (("Username", p["user"]), ("Password", p["password"])):
                if label not in self.filled:
                    self.filled.add(label)
                    return "fill", {"bid": find(page, "textbox", label).bid, "value": value}
            return "click", {"bid": find(page, "button", "Log in").bid}
        if here.startswith("/edit/"):
            if not self.order:
                return "click", {"bid": find(page, "button", "Save changes").bid}
            field = self.order.pop(0)
            if field == "occupation":
                return "fill", {
                    "bid": find(page, "textbox", "Occupation").bid,
                    "value": p["occupation"],
                }
            return "select_option", {
                "bid": find(page, "combobox", "Employer").bid,
                "options": p["employer"],
            }
        if here == article:
            if p["occupation"] in page and f"'{p['employer']}'" in page:
                return "send_msg_to_user", {"text": f"{p['person']}'s article is updated."}
            if "Logged in as" not in page:
                self.login_first = True
                return "goto", {"url": f"{START}edit/{quote(p['person'])}"}
            return "click", {"bid": find(page, "link", "Edit this article").bid}
        if self.login_first and "Logged in as" not in page:
            return "click", {"bid": find(page, "link", "Log in").bid}
        return self._find(page, here)

    def _find(self, page: str, here: str) -> Action:
        """On to the person's article: its link where the page has one, else by search
        or through the people index."""
        person = self.task.params["person"]
        try:
            return "click", {"bid": find(page, "link", person).bid}
        except LookupError:
            pass
        if not self.search:
            return "click", {"bid": find(page, "link", "People").bid}
        if here.startswith("/search") or here == "/":
            box = find(page, "textbox", "Search the wiki")
            if box.value != person:
                return "fill", {"bid": box.bid, "value": person}
            return "click", {"bid": find(page, "button", "Search").bid}
        return "click", {"bid": find(page, "link", "Main page").bid}


FAMILIES: list[Family] = [
    Question("wiki.fact", 1),
    Question("wiki.two-hop", 2),
    Edit(),
    Question("wiki.three-hop", 3, held_out=True),
]
