"""The public library network: members, branches, the catalogue and its copies, loans,
holds and fines.

An online help-desk agent renews loans, places, cancels and redirects holds, takes fine
payments, records lost copies and tells members their due dates, under a policy with
conditions (a renewal cap, no renewal of an overdue loan or of a title others queue for, a
fine limit that blocks renewals and holds, hold limits per membership tier, no pickup
change once a hold is ready) that make some requests refusable. The domain is held out
(no training tasks are drawn from it): its words and rules are unlike the others'.
"""

from __future__ import annotations

import datetime
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pivotgym.envs.tools.db import Database, Row, Table
from pivotgym.envs.tools.domain import (
    Call,
    Domain,
    Fact,
    Scenario,
    ToolTask,
    introduce,
    register_domain,
)
from pivotgym.envs.tools.toolkit import ToolError, Toolkit
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, pick

TODAY = "2027-06-14"
MAX_RENEWALS = 2
FINE_LIMIT = 10.0
HOLD_LIMITS = {"junior": 2, "adult": 4, "friend": 8}
LOAN_DAYS = {"book": 21, "large_print": 21, "audiobook": 14, "dvd": 7}
FORMAT_WORDS = {"book": "book", "large_print": "large-print edition",
                "audiobook": "audiobook", "dvd": "DVD"}  # fmt: skip
BRANCHES = ("Central", "Riverside", "Northgate", "Elm Park", "Harbour", "Westfield")
# Title words avoid every fact phrase ("card", "name", "branch", "email"): the scripted
# user scans the agent's questions, which quote titles, for those phrases.
ADJECTIVES = ("Silent", "Golden", "Hidden", "Last", "Winter", "Crimson", "Quiet", "Distant",
              "Broken", "Salt", "Paper", "Glass", "Midnight", "Wild", "Iron", "Amber")  # fmt: skip
NOUNS = ("Harbour", "Orchard", "Lantern", "Garden", "River", "Mountain", "Archive", "Island",
         "Compass", "Kingdom", "Bridge", "Forest", "Lighthouse", "Station", "Meadow", "Tide",
         "Engine", "Mirror", "Signal", "Cathedral", "Fox", "Comet")  # fmt: skip


@dataclass(frozen=True)
class Member:
    card_number: str
    name: str
    email: str
    tier: Literal["junior", "adult", "friend"]
    home_branch_id: str


@dataclass(frozen=True)
class Branch:
    branch_id: str
    name: str


@dataclass(frozen=True)
class Title:
    isbn: str
    title: str
    author: str
    format: Literal["book", "large_print", "audiobook", "dvd"]
    replacement_cost: float


@dataclass(frozen=True)
class Copy:
    barcode: str
    isbn: str
    branch_id: str
    status: Literal["on_shelf", "on_loan", "in_transit", "lost"] = "on_shelf"


@dataclass(frozen=True)
class Loan:
    loan_id: str
    card_number: str
    barcode: str
    isbn: str
    due_date: str
    renewals_used: int = 0
    status: Literal["active", "returned", "lost"] = "active"


@dataclass(frozen=True)
class Hold:
    hold_id: str
    card_number: str
    isbn: str
    pickup_branch_id: str
    position: int  # place in the title's queue while waiting; 0 once ready or cancelled
    status: Literal["waiting", "ready", "cancelled"] = "waiting"


@dataclass(frozen=True)
class Fine:
    fine_id: str
    card_number: str
    amount: float
    reason: str
    status: Literal["unpaid", "paid"] = "unpaid"


TABLES = (
    Table("members", Member, key="card_number"),
    Table("branches", Branch, key="branch_id"),
    Table("titles", Title, key="isbn"),
    Table("copies", Copy, key="barcode"),
    Table("loans", Loan, key="loan_id"),
    Table("holds", Hold, key="hold_id"),
    Table("fines", Fine, key="fine_id"),
)

_per_tier = ", ".join(f"{tier} {limit}" for tier, limit in HOLD_LIMITS.items())
POLICY = f"""# Library help desk policy

You are the online help desk of the Oakridge Public Library network. Today is {TODAY}.
Help members with their loans, holds and fines, using the tools.

## Identifying the member
- At the start of the conversation, before handling any request, identify the member:
  by their library card number, or by their full name together with the email address
  on file. Never reveal or change anything of a member you have not identified.

## Changes need consent
- Before any change (a renewal, a hold placed, cancelled or moved, a fine payment, a copy
  reported lost), state exactly what you will do and ask the member to confirm. Act only
  after an explicit yes.

## Fines
- A member who owes more than {FINE_LIMIT:.2f} in unpaid fines (all together) can neither
  renew loans nor place holds until they pay; tell them the amount they owe.
- Fines are paid in full, each fine as its own payment, with the card on file.
- A copy reported lost is charged at its replacement cost, added to the member's fines.
  Tell the member that amount before they confirm.

## Renewals
- Loan periods: book and large print {LOAN_DAYS["book"]} days, audiobook
  {LOAN_DAYS["audiobook"]} days, DVD {LOAN_DAYS["dvd"]} days. A renewal extends the due
  date by one loan period.
- A loan can be renewed at most {MAX_RENEWALS} times. An overdue loan (due before today)
  cannot be renewed: it must be returned. Nor can a loan whose title (that ISBN) has
  holds waiting. When you refuse a renewal, tell the member the loan's due date.

## Holds
- The most holds a member may have at once, by membership tier: {_per_tier}. Waiting
  and ready holds count. Refuse a hold beyond the limit.
- New holds are picked up at the member's home branch. Tell the member their position in
  the queue.
- A hold's pickup branch can be changed only while it is waiting. A ready hold is on the
  shelf at its branch already: it must be collected there (or cancelled).

## Answering
- Give dates as YYYY-MM-DD and amounts with two decimals. Do not make up information
  that the tools did not give you.
"""

tools = Toolkit()


def _plus(date: str, days: int) -> str:
    return (datetime.date.fromisoformat(date) + datetime.timedelta(days=days)).isoformat()


def _get(db: Database, table: str, key: str) -> Any:
    row = db.get(table, key)
    if row is None:
        raise ToolError(f"{key} not found in {table}")
    return row


def _about(db: Database, isbn: str) -> dict:
    """What a listing says of the title it is about (members know titles, not ISBNs)."""
    title = db.get("titles", isbn)
    return {"title": title.title, "format": title.format,
            "replacement_cost": title.replacement_cost}  # fmt: skip


@tools.read
def find_member(db: Database, name: str, email: str) -> Member:
    """Find a member by full name and the email address on file.

    name: the member's full name, as registered
    email: the email address on file
    """
    for member in db.rows("members"):
        if member.name.lower() == name.strip().lower() and member.email == email.strip().lower():
            return member
    raise ToolError("no member with that name and email address")


@tools.read
def get_member(db: Database, card_number: str) -> Member:
    """Get a member's record by library card number.

    card_number: for example 290001001
    """
    return _get(db, "members", card_number)


@tools.read
def list_loans(db: Database, card_number: str) -> list[dict]:
    """List a member's current loans with their titles, in due-date order.

    card_number: the member's library card number
    """
    get_member(db, card_number)
    loans = sorted(db.where("loans", card_number=card_number, status="active"),
                   key=lambda x: x.due_date)  # fmt: skip
    return [{**vars(x), **_about(db, x.isbn)} for x in loans]


@tools.read
def list_holds(db: Database, card_number: str) -> list[dict]:
    """List a member's waiting and ready holds, with titles and pickup branch names.

    card_number: the member's library card number
    """
    get_member(db, card_number)
    holds = [h for h in db.where("holds", card_number=card_number) if h.status != "cancelled"]
    branches = {b.branch_id: b.name for b in db.rows("branches")}
    return [{**vars(h), **_about(db, h.isbn), "pickup_branch": branches[h.pickup_branch_id]}
            for h in holds]  # fmt: skip


@tools.read
def list_fines(db: Database, card_number: str) -> dict:
    """List a member's fines, paid and unpaid, with the unpaid total.

    card_number: the member's library card number
    """
    get_member(db, card_number)
    fines = db.where("fines", card_number=card_number)
    return {"fines": fines, "unpaid_total": round(sum(f.amount for f in fines
                                                      if f.status == "unpaid"), 2)}  # fmt: skip


@tools.read
def search_catalog(db: Database, query: str) -> list[Title]:
    """Search the catalogue (every format) for titles or authors holding all the words.

    query: words of the title or of the author's name
    """
    words = query.lower().split()
    if not words:
        raise ToolError("give some words of a title or an author")
    return [t for t in db.rows("titles")
            if all(w in f"{t.title} {t.author}".lower() for w in words)][:20]  # fmt: skip


@tools.read
def get_title(db: Database, isbn: str) -> dict:
    """Get a title with its copies (branch and status) and how many holds wait on it.

    isbn: the title's ISBN, from search_catalog or list_loans
    """
    copies = [{"barcode": c.barcode, "branch_id": c.branch_id, "status": c.status}
              for c in db.where("copies", isbn=isbn)]  # fmt: skip
    waiting = len(db.where("holds", isbn=isbn, status="waiting"))
    return {**vars(_get(db, "titles", isbn)), "copies": copies, "holds_waiting": waiting}


@tools.read
def list_branches(db: Database) -> list[Branch]:
    """List the library's branches."""
    return list(db.rows("branches"))


@tools.write
def renew_loan(db: Database, loan_id: str) -> Loan:
    """Renew a current loan: its due date moves on by one loan period of its format.

    loan_id: the loan's ID, from list_loans
    """
    loan = _get(db, "loans", loan_id)
    if loan.status != "active":
        raise ToolError(f"loan {loan_id} is {loan.status}, not on loan")
    days = LOAN_DAYS[db.get("titles", loan.isbn).format]
    return db.update("loans", loan_id, due_date=_plus(loan.due_date, days),
                     renewals_used=loan.renewals_used + 1)  # fmt: skip


@tools.write
def place_hold(db: Database, card_number: str, isbn: str, pickup_branch_id: str) -> Hold:
    """Place a hold on a title; it joins the end of the title's queue.

    card_number: the member's library card number
    isbn: the title's ISBN, from search_catalog
    pickup_branch_id: the branch where the member will collect it
    """
    get_member(db, card_number)
    _get(db, "titles", isbn), _get(db, "branches", pickup_branch_id)
    holds = [h for h in db.where("holds", isbn=isbn) if h.status != "cancelled"]
    if any(h.card_number == card_number for h in holds):
        raise ToolError(f"member {card_number} already has a hold on {isbn}")
    position = 1 + sum(h.status == "waiting" for h in holds)
    return db.insert(Hold(f"H{70001 + db.count('holds')}", card_number, isbn, pickup_branch_id,
                          position))  # fmt: skip


@tools.write
def cancel_hold(db: Database, hold_id: str) -> Hold:
    """Cancel a waiting or ready hold; the holds behind it in the queue move up.

    hold_id: the hold's ID, from list_holds
    """
    hold = _get(db, "holds", hold_id)
    if hold.status == "cancelled":
        raise ToolError(f"hold {hold_id} is already cancelled")
    for other in db.where("holds", isbn=hold.isbn, status="waiting"):
        if hold.status == "waiting" and other.position > hold.position:
            db.update("holds", other.hold_id, position=other.position - 1)
    return db.update("holds", hold_id, status="cancelled", position=0)


@tools.write
def update_pickup_branch(db: Database, hold_id: str, branch_id: str) -> Hold:
    """Change the branch where a hold will be collected.

    hold_id: the hold's ID, from list_holds
    branch_id: the new pickup branch's ID, from list_branches
    """
    hold, _ = _get(db, "holds", hold_id), _get(db, "branches", branch_id)
    if hold.status == "cancelled" or hold.pickup_branch_id == branch_id:
        raise ToolError(f"hold {hold_id} is cancelled or already for pickup at {branch_id}")
    return db.update("holds", hold_id, pickup_branch_id=branch_id)


@tools.write
def pay_fine(db: Database, fine_id: str) -> Fine:
    """Pay one unpaid fine in full with the card on file.

    fine_id: the fine's ID, from list_fines
    """
    if _get(db, "fines", fine_id).status == "paid":
        raise ToolError(f"fine {fine_id} is already paid")
    return db.update("fines", fine_id, status="paid")


@tools.write
def report_lost_copy(db: Database, loan_id: str) -> dict:
    """Record the copy of a current loan as lost; its replacement cost becomes a fine.

    loan_id: the loan's ID, from list_loans
    """
    loan = _get(db, "loans", loan_id)
    if loan.status != "active":
        raise ToolError(f"loan {loan_id} is {loan.status}, not on loan")
    db.update("copies", loan.barcode, status="lost")
    fine = Fine(f"F{80001 + db.count('fines')}", loan.card_number,
                db.get("titles", loan.isbn).replacement_cost, "lost item")  # fmt: skip
    return {"loan": db.update("loans", loan_id, status="lost"), "fine": db.insert(fine)}


# ----------------------------------------------------------------------- the database


def generate_db(rng: random.Random, scale: int) -> Iterable[Row]:
    branches = [Branch(f"BR{i + 1}", BRANCHES[i % 6] + (f" {i // 6 + 1}" if i >= 6 else ""))
                for i in range(6 * scale)]  # fmt: skip
    yield from branches
    names = [f"The {a} {n}" for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(names)
    titles, copies = [], {}
    for i in range(160 * scale):
        work = names[i % len(names)] + (f" Volume {i // len(names) + 1}" if i >= len(names) else "")
        author = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES)
        for fmt, p in (("book", 1), ("large_print", 0.2), ("audiobook", 0.3), ("dvd", 0.15)):
            if rng.random() >= p:
                continue
            cost = {"book": rng.choice((14.99, 19.99, 24.99)), "large_print": 27.5,
                    "audiobook": 34.99, "dvd": 19.99}[fmt]  # fmt: skip
            titles.append(Title(f"9780{len(titles) + 100000:06d}{rng.randint(100, 999)}", work,
                                author, fmt, cost))  # fmt: skip
            for _ in range(rng.randint(1, 3)):
                barcode = f"31{len(copies) + 1:08d}"
                status = rng.choices(("on_shelf", "in_transit", "lost"), (92, 5, 3))[0]
                copies[barcode] = Copy(barcode, titles[-1].isbn, rng.choice(branches).branch_id,
                                       status)  # fmt: skip
    yield from titles
    work_of = {t.isbn: t.title for t in titles}
    popular = rng.sample(titles, len(titles) // 4)  # holds gather on a few titles
    members, loans, holds, fines, emails = [], [], [], [], set()
    for i in range(300 * scale):
        name = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES)
        email = ""
        while not email or email in emails:  # name and email identify one member only
            email = name.lower().replace(" ", ".") + f"{rng.randint(1, 99)}@mailbox.example"
        emails.add(email)
        tier = rng.choices(("junior", "adult", "friend"), (25, 60, 15))[0]
        member = Member(f"2900{1001 + i:05d}", name, email, tier, rng.choice(branches).branch_id)
        members.append(member)
        works = set()  # one loan or hold per work, so that the member's words name one
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):
            copy = copies[rng.choice(list(copies))]
            if copy.status == "on_shelf" and work_of[copy.isbn] not in works:
                works.add(work_of[copy.isbn])
                copies[copy.barcode] = Copy(copy.barcode, copy.isbn, copy.branch_id, "on_loan")
                loans.append(Loan(f"LN{50001 + len(loans)}", member.card_number, copy.barcode,
                                  copy.isbn, _plus(TODAY, rng.randint(-6, 20)),
                                  rng.choice((0, 0, 0, 1, 1, 2))))  # fmt: skip
        wanted = {"junior": (0, 1, 2, 2), "adult": (0, 1, 2, 3, 4, 4), "friend": (0, 1, 3)}[tier]
        for title in (rng.choice(popular) for _ in range(rng.choice(wanted))):
            if title.title not in works:
                works.add(title.title)
                holds.append((member.card_number, title.isbn, member.home_branch_id))
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
            fines.append(Fine(f"F{80001 + len(fines)}", member.card_number,
                              rng.choice((50, 120, 250, 400, 675, 900, 1250)) / 100,
                              rng.choice(("overdue", "overdue", "damaged item")),
                              "unpaid" if rng.random() < 0.6 else "paid"))  # fmt: skip
    yield from members
    yield from copies.values()
    yield from loans
    queue: Counter[str] = Counter()
    for i, (card, isbn, branch_id) in enumerate(holds):
        if isbn not in queue and rng.random() < 0.4:  # a copy is set aside for the first
            queue[isbn] = 0
            yield Hold(f"H{70001 + i}", card, isbn, branch_id, 0, "ready")
        else:
            queue[isbn] += 1
            yield Hold(f"H{70001 + i}", card, isbn, branch_id, queue[isbn])
    yield from fines


# ------------------------------------------------------------------------- the tasks

# Labels follow "your" in the expert's questions; each is found by its own phrases and by
# no other fact's, and no task's confirm line (a question too) holds any of them.
FACTS = {
    "card_number": Fact("library card number", ("card number", "library card")),
    "name": Fact("full name", ("full name", "your name")),
    "email": Fact("email address on file", ("email", "e-mail")),
    "branch": Fact("preferred branch", ("preferred branch", "which branch", "what branch")),
}


def _identify(member: Member, rng: random.Random):
    """How the member introduces themself (:func:`introduce`)."""
    card, name, email = member.card_number, member.name, member.email
    return introduce(
        rng,
        by_id=("card_number", f"My library card number is {card}.",
               Call("get_member", {"card_number": card})),
        by_facts=(("name", "email"), f"I'm {name}, email {email}.", f"This is {name}.",
                  Call("find_member", {"name": name, "email": email})),
    )  # fmt: skip


def _base(member: Member, goal: str, openings: tuple[str, ...], rng: random.Random,
          *groups: tuple, asked: tuple[str, ...] = (), **known: str) -> dict:  # fmt: skip
    """A task's scenario, ``ask`` and look-ups (identification, then ``groups``), as fields
    of :class:`ToolTask`. ``known`` are the request's facts: those named in ``asked`` the
    agent asks for, the others the opening (one of ``openings``) states."""
    intro, volunteered, ask, lookup = _identify(member, rng)
    words = (pick(rng, ("Hi.", "Hello,", "Good evening.", "")), pick(rng, openings), intro)
    facts = {"card_number": member.card_number, "name": member.name, "email": member.email}
    scenario = Scenario(
        persona=f"{member.name}, a {member.tier} member of the library ({member.email}).",
        goal=goal,
        opening=" ".join(part for part in words if part),
        known={**facts, **known},
        volunteered=(*volunteered, *(k for k in known if k not in asked)),
    )
    return {"scenario": scenario, "ask": (*ask, *asked), "lookups": ((lookup,), *groups)}


def _task(family: str, rng: random.Random, **fields) -> ToolTask:
    return ToolTask(name=f"library-{family}-{rng.randrange(16**8):08x}", domain="library",
                    family=family, **fields)  # fmt: skip


def _owed(db: Database) -> Counter[str]:
    owed: Counter[str] = Counter()
    for fine in db.where("fines", status="unpaid"):
        owed[fine.card_number] += fine.amount
    return owed


def _of(db: Database, row: Any) -> tuple[Member, Title, str]:
    """The member and title of a loan or hold, and how the member names the title."""
    title = db.get("titles", row.isbn)
    return db.get("members", row.card_number), title, _what(title)


def _what(title: Title) -> str:
    return f"{title.title} ({FORMAT_WORDS[title.format]})"  # the format tells editions apart


def gen_renew(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    owed = _owed(db)
    waiting = Counter(h.isbn for h in db.where("holds", status="waiting"))

    def block(loan: Loan) -> str | None:  # why the policy forbids renewing, checked in order
        if loan.due_date < TODAY:
            return "it is overdue and must be returned"
        if loan.renewals_used >= MAX_RENEWALS:
            return f"it has already been renewed {MAX_RENEWALS} times, the most allowed"
        if round(owed[loan.card_number], 2) > FINE_LIMIT:
            return (f"you owe {owed[loan.card_number]:.2f} in unpaid fines, more than the "
                    f"{FINE_LIMIT:.2f} limit")  # fmt: skip
        return "other members have holds waiting on it" if waiting[loan.isbn] else None

    loan = rng.choice([x for x in db.where("loans", status="active")
                       if (block(x) is not None) == refuse])  # fmt: skip
    member, title, what = _of(db, loan)
    card = member.card_number
    base = _base(member, f"renew their loan of {what}",
                 (f"Could I renew {what}?", f"I'd like more time with {what}; can you renew it?",
                  f"Please renew my loan of {what}."),
                 rng, (Call("list_loans", {"card_number": card}),
                       Call("list_fines", {"card_number": card})))  # fmt: skip
    why = block(loan)
    if why is None or why.startswith("other"):  # the loan and fines allow it: check the queue
        base["lookups"] += ((Call("get_title", {"isbn": loan.isbn}),),)
    if why is not None:
        owes = (f"{owed[card]:.2f}",) if "fines" in why else ()
        return _task("renew_refused", rng, **base,
                     outcome=(f"I'm sorry, I can't renew {what}: {why}. Its due date is "
                              f"{loan.due_date}."),
                     required_info=(loan.due_date, *owes))  # fmt: skip
    due = _plus(loan.due_date, LOAN_DAYS[title.format])
    return _task("renew", rng, **base, writes=((Call("renew_loan", {"loan_id": loan.loan_id}),),),
                 confirm=f"renew your loan of {what} so that it is due back on {due}",
                 outcome=f"{title.title} is renewed: it is now due back on {due}.",
                 required_info=(due,))  # fmt: skip


def gen_hold(db: Database, rng: random.Random, refuse: str | None = None) -> ToolTask | None:
    owed = _owed(db)
    held = Counter(h.card_number for h in db.rows("holds") if h.status != "cancelled")

    # What the policy says to a hold for each member: fines are checked first.
    case = {m.card_number: "fines" if round(owed[m.card_number], 2) > FINE_LIMIT else
            "limit" if held[m.card_number] >= HOLD_LIMITS[m.tier] else None
            for m in db.rows("members")}  # fmt: skip
    member = db.get("members", rng.choice([c for c, why in case.items() if why == refuse]))
    card = member.card_number
    title = rng.choice(list(db.rows("titles")))
    if any(_of(db, x)[1].title == title.title
           for table in ("loans", "holds") for x in db.where(table, card_number=card)):  # fmt: skip
        return None  # the member already has that work, on loan or on hold
    what = _what(title)
    base = _base(member, f"place a hold on {what} by {title.author}",
                 (f"I'd like to put a hold on {what} by {title.author}.",
                  f"Can you reserve {what}, the one by {title.author}, for me?",
                  f"Please place a hold for me on {what}."),
                 rng, (Call("list_fines", {"card_number": card}),
                       Call("list_holds", {"card_number": card})))  # fmt: skip
    if refuse == "fines":
        return _task("hold_fines", rng, **base,
                     outcome=(f"I'm sorry, I can't place a hold: you owe {owed[card]:.2f} in "
                              f"unpaid fines, more than the {FINE_LIMIT:.2f} allowed. Once they "
                              "are paid you can place holds again."),
                     required_info=(f"{owed[card]:.2f}",))  # fmt: skip
    limit = HOLD_LIMITS[member.tier]
    if refuse == "limit":
        return _task("hold_limit", rng, **base,
                     outcome=(f"I'm sorry, you already have {held[card]} holds, and "
                              f"{member.tier} members may have at most {limit} holds. Once one "
                              "is collected or cancelled you can place another."),
                     required_info=(f"{limit} holds",))  # fmt: skip
    branch = db.get("branches", member.home_branch_id)
    position = 1 + len(db.where("holds", isbn=title.isbn, status="waiting"))
    base["lookups"] += ((Call("search_catalog", {"query": title.title}),),)
    return _task("place_hold", rng, **base,
                 writes=((Call("place_hold", {"card_number": card, "isbn": title.isbn,
                                              "pickup_branch_id": branch.branch_id}),),),
                 confirm=f"place a hold on {what} for pickup at {branch.name}",
                 outcome=(f"Your hold on {title.title} is placed for pickup at {branch.name}; "
                          f"you are at position {position} in the queue."),
                 required_info=(f"position {position}",))  # fmt: skip


def gen_cancel_hold(db: Database, rng: random.Random) -> ToolTask | None:
    hold = rng.choice([h for h in db.rows("holds") if h.status != "cancelled"])
    member, title, what = _of(db, hold)
    base = _base(member, f"cancel their hold on {what}",
                 (f"I no longer need {what}; please cancel my hold.",
                  f"Can you cancel my reservation of {title.title}?"),
                 rng, (Call("list_holds", {"card_number": member.card_number}),))  # fmt: skip
    return _task("cancel_hold", rng, **base,
                 writes=((Call("cancel_hold", {"hold_id": hold.hold_id}),),),
                 confirm=f"cancel your hold {hold.hold_id} on {what}",
                 outcome=f"Your hold {hold.hold_id} on {title.title} is cancelled.",
                 required_info=(hold.hold_id,))  # fmt: skip


def gen_pickup(db: Database, rng: random.Random, ready: bool = False) -> ToolTask | None:
    hold = rng.choice(db.where("holds", status="ready" if ready else "waiting"))
    member, title, what = _of(db, hold)
    old = db.get("branches", hold.pickup_branch_id)
    new = rng.choice([b for b in db.rows("branches") if b.branch_id != old.branch_id])
    said = rng.random() < 0.6
    calls = (Call("list_holds", {"card_number": member.card_number}),)
    base = _base(member, f"collect their hold on {what} at {new.name} instead",
                 tuple(o.format(new.name if said else "another branch") for o in (
                     f"Could I pick up my hold on {title.title} at {{}} instead?",
                     f"Please move the pickup of my hold on {what} to {{}}.")),
                 rng, calls if ready else (*calls, Call("list_branches", {})),
                 asked=() if said else ("branch",), branch=new.name)  # fmt: skip
    if ready:
        return _task("pickup_ready", rng, **base,
                     outcome=(f"I'm sorry, your hold on {title.title} is already ready on the "
                              f"shelf at {old.name}, so its pickup branch can't be changed. "
                              f"Please collect it at {old.name}, or I can cancel it for you."),
                     required_info=(old.name,))  # fmt: skip
    return _task("change_pickup", rng, **base,
                 writes=((Call("update_pickup_branch", {"hold_id": hold.hold_id,
                                                        "branch_id": new.branch_id}),),),
                 confirm=f"send your hold on {what} to {new.name} instead of {old.name}",
                 outcome=f"Done: your hold on {title.title} will wait for you at {new.name}.",
                 required_info=(new.name,))  # fmt: skip


def gen_pay_fines(db: Database, rng: random.Random) -> ToolTask | None:
    owed = _owed(db)
    member = db.get("members", rng.choice(sorted(owed)))
    fines = db.where("fines", card_number=member.card_number, status="unpaid")
    total, n = f"{owed[member.card_number]:.2f}", len(fines)
    base = _base(member, "pay off all their unpaid fines with the card on file",
                 ("I'd like to pay off my fines.", "Can I clear what I owe the library?",
                  "Please settle all my library fines with my card on file."),
                 rng, (Call("list_fines", {"card_number": member.card_number}),))  # fmt: skip
    return _task("pay_fines", rng, **base,
                 writes=(tuple(Call("pay_fine", {"fine_id": f.fine_id}) for f in fines),),
                 confirm=f"pay your {n} unpaid fine(s), {total} in all, with the card on file",
                 outcome=f"Paid: {n} fine(s), {total} in total. You owe nothing now.",
                 required_info=(total,))  # fmt: skip


def gen_report_lost(db: Database, rng: random.Random) -> ToolTask | None:
    loan = rng.choice(db.where("loans", status="active"))
    member, title, what = _of(db, loan)
    cost = f"{title.replacement_cost:.2f}"
    base = _base(member, f"report {what} they borrowed as lost",
                 (f"I'm afraid I've lost {what} I borrowed.",
                  f"I can't find the library's copy of {title.title} anywhere; I think it's lost."),
                 rng, (Call("list_loans", {"card_number": member.card_number}),))  # fmt: skip
    return _task("report_lost", rng, **base,
                 writes=((Call("report_lost_copy", {"loan_id": loan.loan_id}),),),
                 confirm=(f"record {what} (copy {loan.barcode}) as lost, which adds its "
                          f"replacement cost of {cost} to your fines"),
                 outcome=(f"{title.title} is recorded as lost, and its replacement cost of "
                          f"{cost} is added to your fines."),
                 required_info=(cost,))  # fmt: skip


def gen_loans_due(db: Database, rng: random.Random) -> ToolTask | None:
    member = db.get("members", rng.choice(db.where("loans", status="active")).card_number)
    loans = list_loans(db, member.card_number)
    base = _base(member, "find out when each of their loans is due back",
                 ("When are my loans due back?", "What do I have out, and when is each due?",
                  "Could you tell me my due dates?"),
                 rng, (Call("list_loans", {"card_number": member.card_number}),))  # fmt: skip
    items = "; ".join(f"{x['title']} ({FORMAT_WORDS[x['format']]}) is due on {x['due_date']}"
                      for x in loans)  # fmt: skip
    return _task("loans_due", rng, **base, outcome=f"Here are your loans: {items}.",
                 required_info=tuple(dict.fromkeys(x["due_date"] for x in loans)))  # fmt: skip


DOMAIN = register_domain(
    Domain(
        name="library",
        description="a public library network: loans, renewals, holds, fines, lost copies",
        tables=TABLES,
        generate_db=generate_db,
        toolkit=tools,
        policy=POLICY,
        facts=FACTS,
        task_generators={
            "renew": gen_renew,
            "renew_refused": partial(gen_renew, refuse=True),
            "place_hold": gen_hold,
            "hold_fines": partial(gen_hold, refuse="fines"),
            "hold_limit": partial(gen_hold, refuse="limit"),
            "cancel_hold": gen_cancel_hold,
            "change_pickup": gen_pickup,
            "pickup_ready": partial(gen_pickup, ready=True),
            "pay_fines": gen_pay_fines,
            "report_lost": gen_report_lost,
            "loans_due": gen_loans_due,
        },
        held_out=True,
    )
)
