"""The bank: customers, accounts, cards, card transactions, payees, transfers and disputes.

A support agent of a retail bank freezes, unfreezes and replaces cards, changes daily card
limits, moves money between a customer's accounts or to saved payees, adds payees and
opens disputes on card transactions, under a policy with conditions (fraud holds, lost
cards, a maximum limit per card type, a cap on payee transfers, frozen accounts, a 60-day
dispute window) that make some requests refusable.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Literal

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
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, dates_after, pick

TODAY = "2027-06-10"
_today = datetime.date.fromisoformat(TODAY)
DISPUTE_DAYS = 60
# The first date a dispute may be opened for: the policy states it, so that the agent
# compares dates instead of counting days.
DISPUTE_CUTOFF = (_today - datetime.timedelta(days=DISPUTE_DAYS)).isoformat()
MAX_LIMIT = {"debit": 2500.0, "credit": 5000.0}
PAYEE_MAX = 3000.0
FRAUD_LINE = "1-800-555-0142"
Reason = Literal["unrecognized", "not_received", "wrong_amount", "refund_missing"]
# What a customer says about a charge, for each dispute reason.
REASONS = {
    "unrecognized": "I don't recognize it",
    "not_received": "I paid, but the order never arrived",
    "wrong_amount": "they charged me more than the price we agreed",
    "refund_missing": "I returned the item, but the refund never came",
}
MERCHANTS = ("Corner Grocer", "FuelStop", "City Transit", "Bookhaven", "Cafe Lumen",
             "MegaMart", "StreamFlix", "Pharma Plus", "Urban Outfit", "TechHub",
             "Green Garden", "Skyline Air", "Pizza Roma", "HomeWorks", "PetPal")  # fmt: skip
# 150 days of card history, oldest first: some inside the dispute window, most not.
HISTORY = dates_after((_today - datetime.timedelta(days=150)).isoformat(), 150)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    date_of_birth: str
    phone: str
    email: str


@dataclass(frozen=True)
class Account:
    account_id: str
    customer_id: str
    kind: Literal["checking", "savings"]
    balance: float
    status: Literal["open", "frozen"] = "open"


@dataclass(frozen=True)
class Card:
    card_id: str
    customer_id: str
    account_id: str
    kind: Literal["debit", "credit"]
    last4: str
    daily_limit: float
    status: Literal["active", "frozen", "cancelled", "lost"] = "active"
    frozen_by: Literal["customer", "bank"] | None = None
    replaced_by: str | None = None


@dataclass(frozen=True)
class Transaction:
    txn_id: str
    card_id: str
    date: str
    merchant: str
    amount: float


@dataclass(frozen=True)
class Payee:
    payee_id: str
    customer_id: str
    name: str
    account_number: str


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    from_account_id: str
    to_account_id: str | None
    payee_id: str | None
    amount: float
    date: str
    balance_after: float


@dataclass(frozen=True)
class Dispute:
    dispute_id: str
    txn_id: str
    customer_id: str
    reason: Reason
    opened_on: str
    status: Literal["open", "resolved"] = "open"


TABLES = (
    Table("customers", Customer, key="customer_id"),
    Table("accounts", Account, key="account_id"),
    Table("cards", Card, key="card_id"),
    Table("transactions", Transaction, key="txn_id"),
    Table("payees", Payee, key="payee_id"),
    Table("transfers", Transfer, key="transfer_id"),
    Table("disputes", Dispute, key="dispute_id"),
)

POLICY = f"""# Bank support policy

You are customer support of Northgate Bank. Today is {TODAY}. Help customers with their
cards, accounts, transfers, payees and card disputes, using the tools.

## Identifying the customer
- Before looking up or changing anything about a customer, identify them: either by their
  customer ID, or by their full name, date of birth and the last 4 digits of the phone
  number on file, all three.
- Never reveal or change anything of a customer you have not identified this way.

## Changes need consent
- Before any change (freezing, unfreezing or replacing a card, a new limit, a transfer, a
  new payee, a dispute), state exactly what you will do and ask the customer to confirm.
  Act only after an explicit yes.

## Cards
- Any active card can be frozen at the customer's request.
- A card frozen by the customer (frozen_by "customer") can be unfrozen. A card frozen by
  the bank (frozen_by "bank") is on a fraud hold: refuse, and tell the customer to call
  the fraud team at {FRAUD_LINE}.
- A card reported lost or cancelled can never be reactivated: refuse, and tell the
  customer the last 4 digits of its replacement card.
- A lost or stolen card (active or frozen) is reported with report_lost_card, which blocks
  it and orders a replacement with the same daily limit. Tell the customer the last 4
  digits of the replacement.
- The daily limit of a card can be at most {MAX_LIMIT["debit"]:.2f} for a debit card and
  {MAX_LIMIT["credit"]:.2f} for a credit card. Refuse a higher limit and tell the customer
  the maximum; lowering a limit is always allowed.

## Transfers
- Money can be sent from a customer's account to their other account, or to one of their
  saved payees. A new payee must be added first (name and 8-digit account number).
- A frozen account cannot send transfers: refuse, and explain that the freeze must be
  resolved at a branch. Frozen accounts can still receive money.
- A transfer to a payee can be at most {PAYEE_MAX:.2f}. Refuse a larger one and do not
  split it into smaller transfers. Between a customer's own accounts there is no limit
  other than the balance.

## Disputes
- A dispute can be opened for a card transaction at most {DISPUTE_DAYS} days old: dated
  on or after {DISPUTE_CUTOFF}. Refuse older ones, and say so.
- The reason is one of: unrecognized (the customer does not recognize the charge),
  not_received (paid, but the goods or service never came), wrong_amount (charged a
  different amount than agreed), refund_missing (returned or cancelled, but no refund).

## Answering
- Give amounts with two decimals and no thousands separator (1234.50) and dates as
  YYYY-MM-DD. Do not make up information that the tools did not give you.
"""

tools = Toolkit()


def _get(db: Database, table: str, key: str, what: str) -> Row:
    row = db.get(table, key)
    if row is None:
        raise ToolError(f"{what} {key} not found")
    return row


def _card(db: Database, card_id: str) -> Card:
    return _get(db, "cards", card_id, "card")


def _account(db: Database, account_id: str) -> Account:
    return _get(db, "accounts", account_id, "account")


def _replacement(db: Database, card: Card) -> tuple[str, str]:
    """The ID and last 4 digits the replacement of ``card`` gets (the generators predict
    them, to tell the customer)."""
    number = 30001 + db.count("cards")
    last4 = f"{(int(card.last4) * 7 + number * 13) % 10000:04d}"
    return f"CD{number}", last4 if last4 != card.last4 else f"{(int(last4) + 1) % 10000:04d}"


@tools.read
def find_customer(db: Database, name: str, date_of_birth: str, phone_last4: str) -> Customer:
    """Find a customer by full name, date of birth and the last 4 digits of their phone.

    name: the customer's full name, as registered
    date_of_birth: YYYY-MM-DD
    phone_last4: the last 4 digits of the phone number on file
    """
    wanted = (name.strip().lower(), date_of_birth.strip(), phone_last4.strip())
    for customer in db.rows("customers"):
        if (customer.name.lower(), customer.date_of_birth, customer.phone[-4:]) == wanted:
            return customer
    raise ToolError("no customer with that name, date of birth and phone number")


@tools.read
def get_customer(db: Database, customer_id: str) -> Customer:
    """Get a customer's record by customer ID.

    customer_id: for example C10001
    """
    return _get(db, "customers", customer_id, "customer")


@tools.read
def list_accounts(db: Database, customer_id: str) -> list[Account]:
    """List a customer's accounts with their balances and status.

    customer_id: the customer's ID
    """
    get_customer(db, customer_id)
    return db.where("accounts", customer_id=customer_id)


@tools.read
def list_cards(db: Database, customer_id: str) -> list[Card]:
    """List every card of a customer, including frozen, lost and cancelled ones.

    customer_id: the customer's ID
    """
    get_customer(db, customer_id)
    return db.where("cards", customer_id=customer_id)


@tools.read
def list_transactions(db: Database, card_id: str,
                      start_date: str | None = None) -> list[Transaction]:  # fmt: skip
    """List a card's transactions in date order, optionally only from a date on.

    card_id: the card's ID
    start_date: YYYY-MM-DD, the first date to include
    """
    _card(db, card_id)
    found = db.where("transactions", card_id=card_id)
    found = [t for t in found if start_date is None or t.date >= start_date]
    return sorted(found, key=lambda t: (t.date, t.txn_id))


@tools.read
def list_payees(db: Database, customer_id: str) -> list[Payee]:
    """List the payees a customer has saved.

    customer_id: the customer's ID
    """
    get_customer(db, customer_id)
    return db.where("payees", customer_id=customer_id)


@tools.read
def list_transfers(db: Database, account_id: str) -> list[Transfer]:
    """List the transfers sent from an account.

    account_id: the account's ID
    """
    _account(db, account_id)
    return db.where("transfers", from_account_id=account_id)


@tools.read
def list_disputes(db: Database, customer_id: str) -> list[Dispute]:
    """List a customer's disputes, open and resolved.

    customer_id: the customer's ID
    """
    get_customer(db, customer_id)
    return db.where("disputes", customer_id=customer_id)


@tools.write
def freeze_card(db: Database, card_id: str) -> Card:
    """Freeze an active card at the customer's request; no payments go through until unfrozen.

    card_id: the card's ID
    """
    card = _card(db, card_id)
    if card.status != "active":
        raise ToolError(f"card {card_id} is {card.status}, not active")
    return db.update("cards", card_id, status="frozen", frozen_by="customer")


@tools.write
def unfreeze_card(db: Database, card_id: str) -> Card:
    """Unfreeze a frozen card; it becomes active again.

    card_id: the card's ID
    """
    card = _card(db, card_id)
    if card.status != "frozen":
        raise ToolError(f"card {card_id} is {card.status}, not frozen")
    return db.update("cards", card_id, status="active", frozen_by=None)


@tools.write
def report_lost_card(db: Database, card_id: str) -> Card:
    """Block a lost or stolen card for good and order a replacement; returns the new card.

    card_id: the lost card's ID
    """
    card = _card(db, card_id)
    if card.status in ("lost", "cancelled"):
        raise ToolError(f"card {card_id} is already {card.status}")
    new_id, last4 = _replacement(db, card)
    new = Card(new_id, card.customer_id, card.account_id, card.kind, last4, card.daily_limit)
    db.update("cards", card_id, status="lost", frozen_by=None, replaced_by=new_id)
    return db.insert(new)


@tools.write
def set_card_limit(db: Database, card_id: str, daily_limit: float) -> Card:
    """Set the daily spending limit of an active or frozen card.

    card_id: the card's ID
    daily_limit: the new limit, in dollars
    """
    card = _card(db, card_id)
    if card.status in ("lost", "cancelled"):
        raise ToolError(f"card {card_id} is {card.status}")
    if daily_limit <= 0:
        raise ToolError("the daily limit must be positive")
    return db.update("cards", card_id, daily_limit=round(daily_limit, 2))


@tools.write
def transfer_funds(db: Database, from_account_id: str, amount: float, to_account_id:
                   str | None = None, payee_id: str | None = None) -> Transfer:  # fmt: skip
    """Send money from an account to the customer's other account or to a saved payee.

    from_account_id: the account the money leaves
    amount: in dollars
    to_account_id: another account of the same customer (or give payee_id)
    payee_id: a payee saved by the same customer (or give to_account_id)
    """
    source, amount = _account(db, from_account_id), round(amount, 2)
    if (to_account_id is None) == (payee_id is None):
        raise ToolError("give either to_account_id or payee_id")
    if amount <= 0:
        raise ToolError("the amount must be positive")
    if to_account_id is not None:
        target = _account(db, to_account_id)
        if target.customer_id != source.customer_id or target.account_id == source.account_id:
            raise ToolError("to_account_id must be another account of the same customer")
    elif _get(db, "payees", payee_id, "payee").customer_id != source.customer_id:
        raise ToolError(f"payee {payee_id} is not saved by this customer")
    if amount > source.balance:
        raise ToolError(f"insufficient funds: the balance is {source.balance:.2f}")
    after = round(source.balance - amount, 2)
    db.update("accounts", from_account_id, balance=after)
    if to_account_id is not None:
        db.update("accounts", to_account_id, balance=round(target.balance + amount, 2))
    transfer_id = f"TR{60001 + db.count('transfers')}"
    return db.insert(
        Transfer(transfer_id, from_account_id, to_account_id, payee_id, amount, TODAY, after)
    )


@tools.write
def add_payee(db: Database, customer_id: str, name: str, account_number: str) -> Payee:
    """Save a new payee for a customer, so that transfers can be sent to them.

    customer_id: the customer's ID
    name: the payee's full name
    account_number: the payee's 8-digit account number
    """
    get_customer(db, customer_id)
    digits = "".join(ch for ch in account_number if ch.isdigit())
    if len(digits) != 8:
        raise ToolError("the account number must have 8 digits")
    if any(p.account_number == digits for p in db.where("payees", customer_id=customer_id)):
        raise ToolError(f"a payee with account number {digits} is already saved")
    payee_id = f"PY{5001 + db.count('payees')}"
    return db.insert(Payee(payee_id, customer_id, " ".join(name.split()), digits))


@tools.write
def open_dispute(db: Database, txn_id: str, reason: Reason) -> Dispute:
    """Open a dispute on a card transaction.

    txn_id: the transaction's ID, from list_transactions
    reason: unrecognized, not_received, wrong_amount or refund_missing
    """
    txn = _get(db, "transactions", txn_id, "transaction")
    if db.where("disputes", txn_id=txn_id):
        raise ToolError(f"transaction {txn_id} is already disputed")
    customer_id = _card(db, txn.card_id).customer_id
    dispute_id = f"DP{7001 + db.count('disputes')}"
    return db.insert(Dispute(dispute_id, txn_id, customer_id, reason, TODAY))


# ----------------------------------------------------------------------- the database


def generate_db(rng: random.Random, scale: int) -> Iterable[Row]:
    # IDs are dense and in order: the tools' next ID is a count (see _replacement).
    accounts, cards, txns, payees, transfers, disputes = [], [], [], [], [], []
    people: set[tuple[str, str]] = set()
    for i in range(300 * scale):
        name = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES)
        born = f"{rng.randint(1945, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        while (name, born) in people:  # name and birth date must single out one customer
            born = f"{int(born[:4]) + 1}{born[4:]}"
        people.add((name, born))
        cid, phone = f"C{10001 + i}", f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        email = name.lower().replace(" ", ".") + f"{rng.randint(1, 99)}@example.com"
        yield Customer(cid, name, born, phone, email)
        mine = []
        for kind in ("checking", "savings") if rng.random() < 0.65 else ("checking",):
            balance = round(rng.uniform(60, 9000 if kind == "checking" else 40000), 2)
            frozen = rng.random() < (0.12 if kind == "checking" else 0.06)
            mine.append(Account(f"AC{20001 + len(accounts)}", cid, kind, balance,
                                "frozen" if frozen else "open"))  # fmt: skip
            accounts.append(mine[-1])
        checking = mine[0].account_id
        digits = [f"{d:04d}" for d in rng.sample(range(10000), 3)]  # distinct per customer
        for kind, last4 in (("debit", digits[0]), ("credit", digits[1])):
            if kind == "credit" and rng.random() < 0.5:
                continue
            limit = float(rng.choice((500, 1000, 1500, 2000) if kind == "debit" else
                                     (1000, 2000, 3000, 4000)))  # fmt: skip
            r = rng.random()
            status, by = (("active", None) if r < 0.56 else ("frozen", "customer") if r < 0.8
                          else ("frozen", "bank"))  # fmt: skip
            card = Card(f"CD{30001 + len(cards)}", cid, checking, kind, last4, limit, status, by)
            cards.append(card)
            favourites = rng.sample(MERCHANTS, 4)  # so that a card repeats its merchants
            for _ in range(rng.randint(5, 10)):
                shop = rng.choice(favourites) if rng.random() < 0.7 else rng.choice(MERCHANTS)
                txn = Transaction(f"TX{400001 + len(txns)}", card.card_id, rng.choice(HISTORY),
                                  shop, round(rng.uniform(3, 250), 2))  # fmt: skip
                txns.append(txn)
                if rng.random() < 0.03:
                    state = "open" if txn.date >= DISPUTE_CUTOFF else "resolved"
                    reason = pick(rng, tuple(REASONS))
                    disputes.append(Dispute(f"DP{7001 + len(disputes)}", txn.txn_id, cid,
                                            reason, txn.date, state))  # fmt: skip
        if rng.random() < 0.3:  # an earlier debit card, replaced by the current one
            debit = next(c for c in cards[-2:] if c.customer_id == cid and c.kind == "debit")
            cards.append(Card(f"CD{30001 + len(cards)}", cid, checking, "debit", digits[2],
                              debit.daily_limit, pick(rng, ("lost", "lost", "cancelled")),
                              None, debit.card_id))  # fmt: skip
        names: set[str] = set()  # one payee per name, so "send it to <name>" is unambiguous
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            payee = Payee(f"PY{5001 + len(payees)}", cid,
                          pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES),
                          f"{rng.randint(10000000, 99999999)}")  # fmt: skip
            if payee.name in names:
                continue
            names.add(payee.name)
            payees.append(payee)
            if rng.random() < 0.5:
                sent, tid = float(rng.randint(2, 60) * 10), f"TR{60001 + len(transfers)}"
                transfers.append(Transfer(tid, checking, None, payee.payee_id, sent,
                                          rng.choice(HISTORY), mine[0].balance))  # fmt: skip
    yield from accounts
    yield from cards
    yield from txns
    yield from payees
    yield from transfers
    yield from disputes


# ------------------------------------------------------------------------- the tasks

# Labels follow "your" in the expert's questions; each label is found by its own phrases
# and by no other fact's ("payee's name" must not hit the customer's "full name").
FACTS = {
    "name": Fact("full name", ("full name", "your name")),
    "date_of_birth": Fact("date of birth", ("date of birth", "birth date", "birthday", "born")),
    "phone_last4": Fact("last 4 digits of the phone number on file", ("phone", "mobile")),
    "customer_id": Fact("customer ID", ("customer id", "customer number")),
    "card_last4": Fact("card's last 4 digits", ("card's last 4", "card number", "which card",
                                                "digits of the card", "last 4 of the card")),
    "new_limit": Fact("new daily limit", ("new daily limit", "new limit", "what limit",
                                          "which limit", "limit would you like")),
    "transfer_amount": Fact("transfer amount", (
        "transfer amount", "how much would you like to transfer", "how much would you like to",
        "how much to transfer", "how much to send", "amount to transfer", "amount to send")),
    "payee_name": Fact("payee's name", ("payee's name", "payee name", "name of the payee",
                                        "recipient's name", "name of the recipient")),
    "payee_account": Fact("payee's account number", ("account number",)),
}  # fmt: skip


def _identify(customer: Customer, rng: random.Random):
    """How the customer introduces themself (:func:`introduce`)."""
    cid, name, born, last4 = (customer.customer_id, customer.name, customer.date_of_birth,
                              customer.phone[-4:])  # fmt: skip
    return introduce(
        rng,
        by_id=("customer_id", f"My customer ID is {cid}.",
               Call("get_customer", {"customer_id": cid})),
        by_facts=(("name", "date_of_birth", "phone_last4"),
                  f"I'm {name}, born {born}; my phone number ends in {last4}.", f"This is {name}.",
                  Call("find_customer", {"name": name, "date_of_birth": born,
                                         "phone_last4": last4})),
        odds=(0.35, 0.35, 0.7),
    )  # fmt: skip


def _base(customer: Customer, goal: str, opening: str, rng: random.Random, *reads: Call,
          asked: tuple[str, ...] = (), **known: str) -> dict:  # fmt: skip
    """A task's scenario, ``ask`` and look-ups (identification, then ``reads``), as fields
    of :class:`ToolTask`. ``known`` are the request's facts: those named in ``asked`` the
    agent asks for, the others ``opening`` states."""
    intro, volunteered, ask, lookup = _identify(customer, rng)
    facts = {"name": customer.name, "date_of_birth": customer.date_of_birth,
             "phone_last4": customer.phone[-4:], "customer_id": customer.customer_id,
             **known}  # fmt: skip
    greeting = pick(rng, ("Hi.", "Hello,", "Good afternoon.", ""))
    scenario = Scenario(
        persona=f"{customer.name}, a customer of the bank (born {customer.date_of_birth}).",
        goal=goal,
        opening=" ".join(part for part in (greeting, opening, intro) if part),
        known=facts,
        volunteered=(*volunteered, *(k for k in known if k not in asked)),
    )
    lookups = ((lookup,), reads) if reads else ((lookup,),)
    return {"scenario": scenario, "ask": (*ask, *asked), "lookups": lookups}


def _card_base(db: Database, card: Card, goal: str, openings: tuple[str, ...],
               rng: random.Random, **more) -> tuple[dict, str]:  # fmt: skip
    """The fields of a request about one card, which the opening names by kind and last 4
    digits (``{what}`` in ``goal`` and ``openings``); the agent lists the cards to find it."""
    what = f"{card.kind} card ending {card.last4}"
    reads = Call("list_cards", {"customer_id": card.customer_id})
    return _base(db.get("customers", card.customer_id), goal.format(what=what),
                 pick(rng, openings).format(what=what), rng, reads, card_last4=card.last4,
                 **more), what  # fmt: skip


def _task(family: str, rng: random.Random, **fields) -> ToolTask:
    return ToolTask(name=f"bank-{family}-{rng.randrange(16**8):08x}", domain="bank",
                    family=family, **fields)  # fmt: skip


def _cards(db: Database, *statuses: str) -> list[Card]:
    return [c for c in db.rows("cards") if c.status in statuses]


def gen_freeze(db: Database, rng: random.Random) -> ToolTask | None:
    card = rng.choice(_cards(db, "active"))
    base, what = _card_base(db, card, "freeze the {what} for now", (
        "Please freeze my {what}; I can't find it, but it may turn up.",
        "I'd like to temporarily lock my {what}.",
        "Can you put a freeze on my {what} for now?"), rng)  # fmt: skip
    return _task(
        "freeze_card", rng, **base, writes=((Call("freeze_card", {"card_id": card.card_id}),),),
        confirm=f"freeze your {what} ({card.card_id}); you can unfreeze it later",
        outcome=f"Your {what} is frozen: no payments go through until you unfreeze it.",
        required_info=(card.last4,),
    )  # fmt: skip


def gen_unfreeze(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    if not refuse:  # a card the customer froze: it can be unfrozen
        card = rng.choice([c for c in _cards(db, "frozen") if c.frozen_by == "customer"])
        base, what = _card_base(db, card, "unfreeze the {what}", (
            "I found my {what} again; please unfreeze it.",
            "Can you unfreeze my {what}?",
            "I froze my {what} last week and want to use it again."), rng)  # fmt: skip
        return _task(
            "unfreeze_card", rng, **base,
            writes=((Call("unfreeze_card", {"card_id": card.card_id}),),),
            confirm=f"unfreeze your {what} ({card.card_id})",
            outcome=f"Your {what} is active again.", required_info=(card.last4,),
        )  # fmt: skip
    # a fraud hold, or a lost or cancelled card: neither may be switched back on
    card = rng.choice([c for c in db.rows("cards") if c.frozen_by == "bank" or c.replaced_by])
    if card.status == "frozen":
        base, what = _card_base(db, card, "get the {what} working again", (
            "My {what} suddenly stopped working. Please unfreeze it.",
            "Why is my {what} frozen? I want it unfrozen."), rng)  # fmt: skip
        why, info = f"was frozen by our fraud team. Please call them at {FRAUD_LINE}", FRAUD_LINE
    else:
        new = db.get("cards", card.replaced_by)
        base, what = _card_base(db, card, "reactivate the old {what}", (
            "I reported my {what} lost, but I found it again. Can you reactivate it?",
            "Could you switch my old {what} back on?"), rng)  # fmt: skip
        why = (f"is {card.status} and can never be reactivated. Please use its replacement, "
               f"your {new.kind} card ending {new.last4}")  # fmt: skip
        info = new.last4
    return _task("unfreeze_refused", rng, **base, required_info=(info,),
                 outcome=f"I'm sorry, I can't turn your {what} back on: it {why}.")  # fmt: skip


def gen_lost(db: Database, rng: random.Random) -> ToolTask | None:
    card = rng.choice(_cards(db, "active", "frozen"))
    new_id, last4 = _replacement(db, card)
    base, what = _card_base(db, card, "replace the lost {what}", (
        "I lost my {what}. Please block it and send me a new one.",
        "My {what} was stolen yesterday; I need it cancelled and replaced.",
        "I can't find my {what} anywhere. Can you replace it?"), rng)  # fmt: skip
    return _task(
        "report_lost", rng, **base,
        writes=((Call("report_lost_card", {"card_id": card.card_id}),),),
        confirm=f"block your {what} ({card.card_id}) as lost for good and order a replacement",
        outcome=(f"Your {what} is blocked, and a replacement {card.kind} card ending {last4} "
                 f"({new_id}) is on its way, with the same daily limit of {card.daily_limit:.2f}."),
        required_info=(last4,),
    )  # fmt: skip


def gen_limit(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    card = rng.choice(_cards(db, "active"))
    cap, old = MAX_LIMIT[card.kind], card.daily_limit
    if refuse:
        new = cap + 500 * rng.randint(1, 4)
    else:
        new = float(pick(rng, [k for k in range(250, int(cap) + 1, 250) if k != old]))
    verb = "raise" if new > old else "lower"
    asked = rng.random() < 0.4  # the agent asks for the new limit
    to = "" if asked else f" to {new:.0f}"
    base, what = _card_base(
        db, card, f"{verb} the daily limit of the {{what}} to {new:.2f}",
        (f"I'd like to {verb} the daily limit on my {{what}}{to}.",
         f"Please {verb} my {{what}}'s daily spending limit{to}."),
        rng, asked=("new_limit",) if asked else (), new_limit=f"{new:.2f}",
    )  # fmt: skip
    if refuse:
        return _task("card_limit_refused", rng, **base, required_info=(f"{cap:.2f}",),
                     outcome=(f"I'm sorry, the daily limit of a {card.kind} card can be at most "
                              f"{cap:.2f}, so I can't set it to {new:.2f}. Your limit stays "
                              f"{old:.2f}."))  # fmt: skip
    return _task(
        "card_limit", rng, **base,
        writes=((Call("set_card_limit", {"card_id": card.card_id, "daily_limit": new}),),),
        confirm=f"change the daily limit of your {what} from {old:.2f} to {new:.2f}",
        outcome=f"The daily limit of your {what} is now {new:.2f}.",
        required_info=(f"{new:.2f}",),
    )  # fmt: skip


def gen_transfer(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    mode = pick(rng, ("frozen", "over")) if refuse else "ok"
    payers = {p.customer_id for p in db.rows("payees")}
    savers = {a.customer_id for a in db.rows("accounts") if a.kind == "savings"}
    accounts = list(db.rows("accounts"))
    if mode == "frozen":  # with somewhere to send to, so that only the freeze is in the way
        pool = [a for a in accounts if a.status == "frozen"
                and (a.customer_id in savers or a.customer_id in payers)]  # fmt: skip
    elif mode == "over":  # a payee transfer above the cap that the balance would cover
        pool = [a for a in accounts if a.status == "open" and a.customer_id in payers
                and a.balance > PAYEE_MAX + 100]  # fmt: skip
    else:
        pool = [a for a in accounts if a.status == "open" and a.balance >= 100]
    source = rng.choice(pool)
    cid = source.customer_id
    others = [a for a in db.where("accounts", customer_id=cid) if a.account_id != source.account_id]
    payees = db.where("payees", customer_id=cid)
    to_payee = mode == "over" or not others or (bool(payees) and rng.random() < 0.5)
    if to_payee and not payees:
        return None
    if mode == "over":
        top = int(min(source.balance, 3 * PAYEE_MAX)) // 50
        amount = float(rng.randint(int(PAYEE_MAX) // 50 + 1, top) * 50)
    else:
        cap = min(source.balance, PAYEE_MAX) if to_payee else source.balance
        amount = round(rng.uniform(20, cap * 0.9), pick(rng, (0, 2)))
    if to_payee:
        payee = rng.choice(payees)
        where, their, dest = payee.name, payee.name, {"payee_id": payee.payee_id}
        goal = f"send {amount:.2f} from their {source.kind} account to {payee.name}"
    else:
        to = others[0]
        where, their = f"my {to.kind} account", f"your {to.kind} account {to.account_id}"
        dest = {"to_account_id": to.account_id}
        goal = f"move {amount:.2f} from their {source.kind} account to their {to.kind} account"
    asked = rng.random() < 0.4  # the agent asks for the amount
    how_much, kind = "some money" if asked else f"{amount:.2f}", source.kind
    reads = ("list_accounts", "list_payees") if to_payee else ("list_accounts",)
    base = _base(
        db.get("customers", cid), goal,
        pick(rng, (f"I want to send {how_much} from my {kind} account to {where}.",
                   f"Please transfer {how_much} to {where}, from my {kind} account.")),
        rng, *(Call(name, {"customer_id": cid}) for name in reads),
        asked=("transfer_amount",) if asked else (), transfer_amount=f"{amount:.2f}",
    )  # fmt: skip
    if refuse:
        why, info = ((f"your {kind} account {source.account_id} is frozen, so it can't send "
                      "transfers; the freeze must be resolved at a branch", source.account_id)
                     if mode == "frozen" else
                     (f"a transfer to a payee can be at most {PAYEE_MAX:.2f}, so I can't send "
                      f"{amount:.2f} to {where}", f"{PAYEE_MAX:.2f}"))  # fmt: skip
        return _task("transfer_refused", rng, **base, outcome=f"I'm sorry, {why}.",
                     required_info=(info,))  # fmt: skip
    after = f"{round(source.balance - round(amount, 2), 2):.2f}"  # as transfer_funds does
    return _task(
        "transfer", rng, **base,
        writes=((Call("transfer_funds", {"from_account_id": source.account_id,
                                         "amount": amount, **dest}),),),
        confirm=f"transfer {amount:.2f} from your {kind} account to {their}",
        outcome=(f"Done: {amount:.2f} went to {their}. Your {kind} account "
                 f"{source.account_id} now holds {after}."),
        required_info=(after,),
    )  # fmt: skip


def gen_add_payee(db: Database, rng: random.Random) -> ToolTask | None:
    customer = rng.choice(list(db.rows("customers")))
    name = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES)
    if any(p.name == name for p in db.where("payees", customer_id=customer.customer_id)):
        return None
    number = f"{rng.randint(10000000, 99999999)}"
    opening = pick(rng, ("I'd like to add a new payee.", "Can you set up a new payee?"))
    asked = ("payee_name", "payee_account")
    if rng.random() < 0.4:  # name and number in the opening
        opening, asked = f"Please add {name} as a payee, account number {number}.", ()
    base = _base(customer, f"save {name} (account {number}) as a payee", opening, rng,
                 asked=asked, payee_name=name, payee_account=number)  # fmt: skip
    payee_id = f"PY{5001 + db.count('payees')}"
    return _task(
        "add_payee", rng, **base,
        writes=((Call("add_payee", {"customer_id": customer.customer_id, "name": name,
                                    "account_number": number}),),),
        confirm=f"save {name}, account number {number}, as a new payee",
        outcome=f"{name} is saved as payee {payee_id}; you can now send transfers to them.",
        required_info=(payee_id,),
    )  # fmt: skip


def gen_dispute(db: Database, rng: random.Random, late: bool = False) -> ToolTask | None:
    disputed = {d.txn_id for d in db.rows("disputes")}
    pool = [t for t in db.rows("transactions") if t.txn_id not in disputed]
    txn = rng.choice([t for t in pool if (t.date < DISPUTE_CUTOFF) == late])
    if sum(t.merchant == txn.merchant and t.date == txn.date
           for t in db.where("transactions", card_id=txn.card_id)) > 1:  # fmt: skip
        return None  # which charge is meant would be ambiguous
    card = db.get("cards", txn.card_id)
    reason = pick(rng, tuple(REASONS))
    why = REASONS[reason]
    charge = f"the {txn.amount:.2f} charge at {txn.merchant} on {txn.date}"
    base, what = _card_base(db, card, f"dispute {charge} on the {{what}}", (
        f"I want to dispute {charge} on my {{what}}: {why}.",
        f"There's a problem with {charge} on my {{what}}. {why.capitalize()}."), rng)  # fmt: skip
    base["lookups"] += ((Call("list_transactions", {"card_id": card.card_id}),),)
    if late:
        return _task("dispute_late", rng, **base, required_info=(txn.date,),
                     outcome=(f"I'm sorry, I can't open a dispute for {charge}: disputes are only "
                              f"possible within {DISPUTE_DAYS} days, for transactions on or after "
                              f"{DISPUTE_CUTOFF}, and {txn.date} is earlier."))  # fmt: skip
    dispute_id = f"DP{7001 + db.count('disputes')}"
    return _task(
        "dispute", rng, **base,
        writes=((Call("open_dispute", {"txn_id": txn.txn_id, "reason": reason}),),),
        confirm=f"open a dispute ({reason}) for {charge} ({txn.txn_id})",
        outcome=f"I've opened dispute {dispute_id} for {charge}; we'll be in touch.",
        required_info=(dispute_id,),
    )  # fmt: skip


def gen_balance(db: Database, rng: random.Random) -> ToolTask | None:
    customer = rng.choice(list(db.rows("customers")))
    accounts = db.where("accounts", customer_id=customer.customer_id)
    if len(accounts) == 2 and rng.random() < 0.4:
        answer = f"{sum(a.balance for a in accounts):.2f}"
        goal = "learn the total balance of their accounts"
        opening = pick(rng, ("How much do I have in my checking and savings accounts together?",
                             "What's my total balance across both accounts?"))  # fmt: skip
        outcome = f"Your checking and savings accounts hold {answer} together."
    else:
        account = rng.choice(accounts)
        answer, kind = f"{account.balance:.2f}", account.kind
        goal = f"learn the balance of their {kind} account"
        opening = pick(rng, (f"What's the balance of my {kind} account?",
                             f"How much money is in my {kind} account right now?"))  # fmt: skip
        outcome = f"The balance of your {kind} account {account.account_id} is {answer}."
    reads = Call("list_accounts", {"customer_id": customer.customer_id})
    base = _base(customer, goal, opening, rng, reads)
    return _task("balance", rng, **base, outcome=outcome, required_info=(answer,))


def gen_spending(db: Database, rng: random.Random) -> ToolTask | None:
    card = rng.choice(_cards(db, "active", "frozen"))
    txns = db.where("transactions", card_id=card.card_id)
    shop = rng.choice(sorted({t.merchant for t in txns}))
    latest = max(t.date for t in txns if t.merchant == shop)
    starts = [m for m in ("2027-01-15", "2027-02-01", "2027-03-01", "2027-04-01",
                          "2027-05-01", "2027-06-01") if m <= latest]  # fmt: skip
    if not starts:
        return None
    since = rng.choice(starts)
    spent = [t for t in txns if t.merchant == shop and t.date >= since]
    if any(db.where("disputes", txn_id=t.txn_id) for t in spent):
        return None  # whether a disputed charge counts would be ambiguous
    total = f"{sum(t.amount for t in spent):.2f}"
    base, what = _card_base(
        db, card, f"learn how much they spent at {shop} with the {{what}} since {since}",
        (f"How much have I spent at {shop} with my {{what}} since {since}?",
         f"Could you add up my {shop} purchases on my {{what}} from {since} on?"), rng,
    )  # fmt: skip
    base["lookups"] += ((Call("list_transactions", {"card_id": card.card_id,
                                                    "start_date": since}),),)  # fmt: skip
    outcome = f"Since {since} you spent {total} at {shop} with your {what}."
    return _task("spending", rng, **base, outcome=outcome, required_info=(total,))


DOMAIN = register_domain(
    Domain(
        name="bank",
        description="a retail bank's support desk: cards, limits, transfers, payees, disputes",
        tables=TABLES,
        generate_db=generate_db,
        toolkit=tools,
        policy=POLICY,
        facts=FACTS,
        # One generator per family, so that each family gets an equal share of the tasks;
        # a refusal and its allowed twin share their scenario and look-ups.
        task_generators={
            "freeze_card": gen_freeze,
            "unfreeze_card": gen_unfreeze,
            "unfreeze_refused": partial(gen_unfreeze, refuse=True),
            "report_lost": gen_lost,
            "card_limit": gen_limit,
            "card_limit_refused": partial(gen_limit, refuse=True),
            "transfer": gen_transfer,
            "transfer_refused": partial(gen_transfer, refuse=True),
            "add_payee": gen_add_payee,
            "dispute": gen_dispute,
            "dispute_late": partial(gen_dispute, late=True),
            "balance": gen_balance,
            "spending": gen_spending,
        },
    )
)
