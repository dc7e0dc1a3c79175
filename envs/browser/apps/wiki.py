"""Wiki: an encyclopedia of people, cities and companies that link to each other
(``wiki.test``), for finding facts across pages as BrowseComp asks.

Pages: the main page (the three indexes, a search form, the reader's saved articles,
which the browser keeps in local storage), an index of each kind, an article (an
infobox whose values link to the articles they name, and a paragraph), search over
titles and text, an edit form for a person's infobox (logged in), and log in / log out.
Saving an edit redirects to the article (post/redirect/get); a ``GET`` never writes.

:func:`populate` invents the world from a seed: cities (country, population, year
founded), companies (year founded, founder, headquarters, industry) and people (year
and city of birth, occupation, employer, sibling), so that any fact is reachable from
any person in a few links and no fact can be known without reading the pages.
"""

from __future__ import annotations

import random
import sqlite3
from urllib.parse import quote, unquote

from pivotgym.envs.browser.apps.web import (
    SHARED_SCHEMA,
    check_login,
    current_user,
    esc,
    log_out,
    login_page,
    not_found,
    page,
    tick,
)
from pivotgym.envs.browser.sites import Request, Response, Site
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, pick

HOST = "wiki.test"
OCCUPATIONS = (
    "architect",
    "botanist",
    "cartographer",
    "chemist",
    "composer",
    "engineer",
    "historian",
    "journalist",
    "mathematician",
    "painter",
    "pilot",
    "surgeon",
)
INDUSTRIES = ("shipping", "textiles", "software", "mining", "publishing", "aviation", "brewing")
COUNTRIES = ("Aldoria", "Brevania", "Castellan", "Dorvik", "Estmark")
_SYLLABLES = (
    "bar",
    "cel",
    "dor",
    "fen",
    "gal",
    "har",
    "lin",
    "mor",
    "nes",
    "ost",
    "pel",
    "quin",
    "ros",
    "tal",
    "ven",
    "wick",
)
_NOUNS = ("Anchor", "Beacon", "Crown", "Delta", "Harbor", "Summit", "Lantern", "Meridian")

SCHEMA = (
    SHARED_SCHEMA
    + """
CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL);
CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT NOT NULL, population INTEGER NOT NULL,
    founded INTEGER NOT NULL);
CREATE TABLE companies (name TEXT PRIMARY KEY, founded INTEGER NOT NULL, founder TEXT NOT NULL,
    headquarters TEXT NOT NULL, industry TEXT NOT NULL);
CREATE TABLE people (name TEXT PRIMARY KEY, born INTEGER NOT NULL, birthplace TEXT NOT NULL,
    occupation TEXT NOT NULL, employer TEXT NOT NULL, sibling TEXT NOT NULL,
    edited_at TEXT);
"""
)
KINDS = {"people": "people", "cities": "cities", "companies": "companies"}
# Saved articles live in the browser: a button on each article, a list on the main page.
_SAVED = """
const key = 'saved-articles';
const saved = JSON.parse(localStorage.getItem(key) || '[]');
const list = document.getElementById('saved');
if (list) list.textContent = saved.length ? 'Saved: ' + saved.join(', ') : 'Saved: none';
const save = document.getElementById('save');
if (save) {
  const title = save.dataset.title;
  save.textContent = saved.includes(title) ? 'Saved' : 'Save article';
  save.addEventListener('click', () => {
    if (!saved.includes(title)) saved.push(title);
    localStorage.setItem(key, JSON.stringify(saved));
    save.textContent = 'Saved';
  });
}
"""


def populate(db: sqlite3.Connection, seed: int) -> None:
    rng = random.Random(f"wiki:{seed}")
    cities: set[str] = set()
    while len(cities) < 12:
        name = "".join(pick(rng, _SYLLABLES) for _ in range(rng.randint(2, 3)))
        cities.add(name.capitalize())
    city_list = sorted(cities)
    for city in city_list:
        db.execute(
            "INSERT INTO cities VALUES (?, ?, ?, ?)",
            (
                city,
                pick(rng, COUNTRIES),
                rng.randrange(20, 2000) * 1000 + rng.randrange(1000),
                rng.randrange(900, 1900),
            ),
        )
    people: set[str] = set()
    while len(people) < 40:
        people.add(f"{pick(rng, FIRST_NAMES)} {pick(rng, LAST_NAMES)}")
    person_list = sorted(people)
    companies: set[str] = set()
    while len(companies) < 10:
        companies.add(
            f"{pick(rng, _NOUNS)} {pick(rng, INDUSTRIES).capitalize()} "
            f"{pick(rng, ('Ltd', 'Group', 'Works', 'Company'))}"
        )
    company_list = sorted(companies)
    for company in company_list:
        db.execute(
            "INSERT INTO companies VALUES (?, ?, ?, ?, ?)",
            (
                company,
                rng.randrange(1850, 2010),
                pick(rng, person_list),
                pick(rng, city_list),
                company.split()[1].lower(),
            ),
        )
    for person in person_list:
        sibling = pick(rng, [p for p in person_list if p != person])
        db.execute(
            "INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                person,
                rng.randrange(1900, 2000),
                pick(rng, city_list),
                pick(rng, OCCUPATIONS),
                pick(rng, company_list),
                sibling,
            ),
        )
    for name in rng.sample(FIRST_NAMES, 4):
        db.execute(
            "INSERT INTO users (username, password) VALUES (?, ?)",
            (name.lower(), f"{name.lower()}-{rng.randrange(1000, 9999)}"),
        )


def _link(title: str) -> str:
    return f'<a href="/wiki/{quote(title)}">{esc(title)}</a>'


class Wiki(Site):
    host = HOST
    schema = SCHEMA

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        assert db is not None
        user_id = current_user(db, request)
        user = db.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        layout = {
            "site": "Wiki",
            "user": user[0] if user else None,
            "nav": [
                ("Main page", "/"),
                ("People", "/index/people"),
                ("Cities", "/index/cities"),
                ("Companies", "/index/companies"),
            ],
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
        parts = path.strip("/").split("/", 1)
        if path == "/":
            counts = {
                kind: db.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()[0] for kind in KINDS
            }
            body = (
                _search_form("") + "<p>This wiki has articles on "
                f'<a href="/index/people">{counts["people"]} people</a>, '
                f'<a href="/index/cities">{counts["cities"]} cities</a> and '
                f'<a href="/index/companies">{counts["companies"]} companies</a>.</p>'
                '<p id="saved"></p>'
            )
            return page("Main page", body, script=_SAVED, **layout)
        if path == "/login":
            return login_page(request, layout)
        if parts[0] == "index" and len(parts) == 2 and parts[1] in KINDS:
            titles = [t for (t,) in db.execute(f"SELECT name FROM {parts[1]} ORDER BY name")]
            items = "".join(f"<li>{_link(t)}</li>" for t in titles)
            return page(f"Index of {parts[1]}", f"<ul>{items}</ul>", **layout)
        if path == "/search":
            q = request.query.get("q", "").strip()
            hits = self._search(db, q) if q else []
            items = "".join(f"<li>{_link(t)}</li>" for t in hits)
            found = (
                f"<ul>{items}</ul>"
                if hits
                else (f"<p>No articles match {esc(q)}.</p>" if q else "")
            )
            return page(f"Search: {q}" if q else "Search", _search_form(q) + found, **layout)
        if parts[0] == "wiki" and len(parts) == 2:
            return self._article(db, unquote(parts[1]), user_id, layout)
        if parts[0] == "edit" and len(parts) == 2:
            title = unquote(parts[1])
            row = db.execute(
                "SELECT occupation, employer FROM people WHERE name = ?", (title,)
            ).fetchone()
            if row is None:
                return not_found(f"The article {title}", **layout)
            if user_id is None:
                return Response.redirect(f"/login?next={quote(path)}")
            options = "".join(
                f"<option{' selected' if c == row[1] else ''}>{esc(c)}</option>"
                for (c,) in db.execute("SELECT name FROM companies ORDER BY name")
            )
            body = (
                f'<form method="post" action="/edit/{quote(title)}"><label for="occupation">'
                f'Occupation</label> <input id="occupation" name="occupation" '
                f'value="{esc(row[0])}"><br><label for="employer">Employer</label> '
                f'<select id="employer" name="employer">{options}</select><br>'
                '<button type="submit">Save changes</button></form>'
            )
            return page(f"Editing {title}", body, **layout)
        return not_found(f"The page {path}", **layout)

    @staticmethod
    def _search(db: sqlite3.Connection, q: str) -> list[str]:
        like = f"%{q}%"
        hits = db.execute(
            "SELECT name FROM people WHERE name LIKE ?1 OR occupation LIKE ?1 OR employer LIKE ?1 "
            "UNION SELECT name FROM cities WHERE name LIKE ?1 OR country LIKE ?1 "
            "UNION SELECT name FROM companies WHERE name LIKE ?1 OR industry LIKE ?1 "
            "ORDER BY name",
            (like,),
        ).fetchall()
        return [h for (h,) in hits][:25]

    def _article(
        self, db: sqlite3.Connection, title: str, user_id: int | None, layout: dict
    ) -> Response:
        person = db.execute(
            "SELECT born, birthplace, occupation, employer, sibling FROM people WHERE name = ?",
            (title,),
        ).fetchone()
        city = db.execute(
            "SELECT country, population, founded FROM cities WHERE name = ?", (title,)
        ).fetchone()
        company = db.execute(
            "SELECT founded, founder, headquarters, industry FROM companies WHERE name = ?",
            (title,),
        ).fetchone()
        if person:
            born, birthplace, occupation, employer, sibling = person
            facts = [
                ("Born", str(born)),
                ("Birthplace", _link(birthplace)),
                ("Occupation", esc(occupation)),
                ("Employer", _link(employer)),
                ("Sibling", _link(sibling)),
            ]
            text = (
                f"{esc(title)} (born {born} in {_link(birthplace)}) is a {esc(occupation)} "
                f"who works for {_link(employer)}."
            )
            if user_id is not None:
                text += f' <a href="/edit/{quote(title)}">Edit this article</a>'
        elif city:
            country, population, founded = city
            facts = [
                ("Country", esc(country)),
                ("Population", f"{population:,}"),
                ("Founded", str(founded)),
            ]
            text = f"{esc(title)} is a city in {esc(country)}, founded in {founded}."
        elif company:
            founded, founder, headquarters, industry = company
            facts = [
                ("Founded", str(founded)),
                ("Founder", _link(founder)),
                ("Headquarters", _link(headquarters)),
                ("Industry", esc(industry)),
            ]
            text = (
                f"{esc(title)} is a {esc(industry)} company founded in {founded} by "
                f"{_link(founder)}, based in {_link(headquarters)}."
            )
        else:
            return not_found(f"The article {title}", **layout)
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in facts)
        body = (
            f'<table aria-label="Infobox">{rows}</table><p>{text}</p>'
            f'<button type="button" id="save" data-title="{esc(title)}">Save article</button>'
        )
        return page(title, body, script=_SAVED, **layout)

    def _post(self, db: sqlite3.Connection, request: Request, user_id: int | None) -> Response:
        path = request.path
        if path == "/login":
            return check_login(db, request, HOST)
        if path == "/logout":
            return log_out(db, request)
        parts = path.strip("/").split("/", 1)
        if parts[0] == "edit" and len(parts) == 2:
            title = unquote(parts[1])
            if user_id is None:
                return Response.redirect(f"/login?next={quote(path)}")
            occupation = " ".join(request.form.get("occupation", "").split())
            employer = request.form.get("employer", "")
            known = db.execute("SELECT 1 FROM companies WHERE name = ?", (employer,)).fetchone()
            if occupation and known:
                db.execute(
                    "UPDATE people SET occupation = ?, employer = ?, edited_at = ? WHERE name = ?",
                    (occupation, employer, tick(db), title),
                )
            return Response.redirect(f"/wiki/{quote(title)}")
        return Response(400, "Bad request", "text/plain")


def _search_form(q: str) -> str:
    return (
        f'<form method="get" action="/search"><label for="q">Search the wiki</label> '
        f'<input id="q" name="q" value="{esc(q)}"> <button type="submit">Search</button>'
        "</form>"
    )
