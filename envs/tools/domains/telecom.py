"""The mobile operator: account holders, their lines and plans, devices on installments,
data packs and bills.

A customer-care agent changes plans, adds data packs, turns roaming on, suspends and
resumes lines (with a SIM swap after a theft), takes bill payments and answers questions
on data left and device balances, under a policy with conditions (no downgrade while the
line's device is being paid off, no roaming with an overdue bill, a cap on data packs per
billing cycle, a new SIM before a stolen line comes back) that make some requests
refusable or add steps.
"""

from __future__ import annotations

import random
from collections import Counter
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
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, pick

TODAY = "2027-04-12"
CYCLE = "2027-04"  # the billing cycle in progress; only its data packs count towards the cap
NEXT_CYCLE = "2027-05-01"
MAX_PACKS = 2
PACK_PRICES = {1: 4.0, 5: 12.0, 10: 20.0}
ROAMING_FEE = 6.0
INSURANCE_EXCESS = 49.0
MODELS = ("Pixel 9", "Galaxy S25", "iPhone 16", "iPhone 15", "Moto G85", "Xperia 10",
          "Nokia X30", "Galaxy A56")  # fmt: skip
COUNTRIES = ("Portugal", "Japan", "Canada", "Italy", "Mexico", "Turkey", "Norway", "Kenya")
Reason = Literal["lost", "stolen", "customer_request"]


@dataclass(frozen=True)
class Subscriber:
    account_id: str
    name: str
    postcode: str
    email: str


@dataclass(frozen=True)
class Plan:
    plan_id: str
    name: str
    monthly_price: float
    data_gb: int
    international: bool  # roaming included at no daily fee
    contract_months: int


@dataclass(frozen=True)
class Line:
    line_id: str
    account_id: str
    number: str
    plan_id: str
    sim_iccid: str
    status: Literal["active", "suspended"] = "active"
    suspend_reason: Reason | None = None
    data_used_gb: float = 0.0
    roaming: bool = False


@dataclass(frozen=True)
class Device:
    imei: str
    account_id: str
    line_id: str
    model: str
    installment_balance: float
    monthly_installment: float
    insured: bool


@dataclass(frozen=True)
class DataPack:
    pack_id: str
    line_id: str
    size_gb: int
    price: float
    cycle: str


@dataclass(frozen=True)
class Bill:
    bill_id: str
    account_id: str
    period: str
    amount: float
    due_date: str
    status: Literal["unpaid", "paid"] = "unpaid"


TABLES = (
    Table("subscribers", Subscriber, key="account_id"),
    Table("plans", Plan, key="plan_id"),
    Table("lines", Line, key="line_id"),
    Table("devices", Device, key="imei"),
    Table("data_packs", DataPack, key="pack_id"),
    Table("bills", Bill, key="bill_id"),
)

PLANS = (
    Plan("PL1", "Lite 3", 9.0, 3, False, 0),
    Plan("PL2", "Smart 15", 18.0, 15, False, 12),
    Plan("PL3", "Plus 40", 27.0, 40, False, 24),
    Plan("PL4", "Max 80", 36.0, 80, True, 24),
    Plan("PL5", "World 150", 49.0, 150, True, 24),
)

POLICY = f"""# Northwind Mobile customer care policy

You are customer care at Northwind Mobile. Today is {TODAY}; the billing cycle in
progress is {CYCLE} (it renews on {NEXT_CYCLE}). Help account holders using the tools.

## Identifying the caller
- Before looking up or changing anything, identify the account holder: either by their
  account number, or by their full name together with their billing postcode.
- Never reveal or change anything of an account you have not identified this way. A
  line is named by its phone number; use only lines of the identified account.

## Changes need consent
- Before any change (plan, data pack, roaming, suspending or resuming a line, SIM swap,
  payment), state exactly what you will do and ask the customer to confirm. Act
  only after an explicit yes.

## Plans
- A move to a plan with a lower monthly price is a downgrade. A line cannot be
  downgraded while the device on that line (see list_devices) has an installment balance
  above 0.00: refuse, and say how much remains to be paid. Upgrades are always allowed.
- Plan changes, data packs and roaming are only for active lines.

## Data
- Data left this cycle = the plan's data allowance, plus the data packs bought in cycle
  {CYCLE}, minus the data used this cycle (data_used_gb). Give it in GB with one decimal.
- Data packs: 1 GB for {PACK_PRICES[1]:.2f}, 5 GB for {PACK_PRICES[5]:.2f}, 10 GB for
  {PACK_PRICES[10]:.2f}, charged on the next bill. At most {MAX_PACKS} packs per line per
  cycle: refuse more, and say when the allowance renews.

## Roaming
- Roaming can be turned on only if the account has no overdue bill (unpaid with a due
  date before today). Otherwise refuse, and say which amount is overdue.
- Roaming is included on plans with international roaming; on other plans it costs
  {ROAMING_FEE:.2f} per day used abroad. Tell the customer which applies.

## Lost and stolen phones
- Suspend the line of a lost or stolen phone with that reason. If the device on that
  line is insured, tell the customer they can claim a replacement for a
  {INSURANCE_EXCESS:.2f} excess.
- A line suspended as lost or at the customer's request can be resumed directly. A line
  suspended as stolen needs a new SIM first: swap in the new SIM card (its ICCID, from
  the customer), then resume the line.

## Bills and answers
- Bills are paid in full with the card on file.
- Give amounts with two decimals and dates as YYYY-MM-DD. Do not make up information
  that the tools did not give you.
"""

tools = Toolkit()


def _get(db: Database, table: str, key: str, what: str) -> Row:
    row = db.get(table, key)
    if row is None:
        raise ToolError(f"{what} {key} not found")
    return row


def _active(db: Database, line_id: str) -> Line:
    line = _get(db, "lines", line_id, "line")
    if line.status != "active":
        raise ToolError(f"line {line_id} is suspended")
    return line


@tools.read
def find_account(db: Database, name: str, postcode: str) -> Subscriber:
    """Find an account by the holder's full name and billing postcode.

    name: the account holder's full name, as registered
    postcode: the billing postcode, for example 40213
    """
    for sub in db.rows("subscribers"):
        if sub.name.lower() == name.strip().lower() and sub.postcode == postcode.strip():
            return sub
    raise ToolError("no account with that name and postcode")


@tools.read
def get_account(db: Database, account_id: str) -> Subscriber:
    """Get an account by its account number.

    account_id: for example AC10001
    """
    return _get(db, "subscribers", account_id, "account")


@tools.read
def list_lines(db: Database, account_id: str) -> list[Line]:
    """List the lines of an account: number, plan, status, data used this cycle, roaming.

    account_id: the account number
    """
    get_account(db, account_id)
    return db.where("lines", account_id=account_id)


@tools.read
def list_plans(db: Database) -> list[Plan]:
    """List every plan on offer, with monthly price, data allowance and roaming."""
    return list(db.rows("plans"))


@tools.read
def get_plan(db: Database, plan_id: str) -> Plan:
    """Get one plan by its ID.

    plan_id: for example PL2
    """
    return _get(db, "plans", plan_id, "plan")


@tools.read
def list_devices(db: Database, account_id: str) -> list[Device]:
    """List an account's devices, the line each is on, installments left and insurance.

    account_id: the account number
    """
    get_account(db, account_id)
    return db.where("devices", account_id=account_id)


@tools.read
def list_bills(db: Database, account_id: str) -> list[Bill]:
    """List an account's bills, paid and unpaid, with their due dates.

    account_id: the account number
    """
    get_account(db, account_id)
    return db.where("bills", account_id=account_id)


@tools.read
def list_data_packs(db: Database, line_id: str) -> list[DataPack]:
    """List the data packs bought for a line, in every cycle.

    line_id: the line's ID, for example L30001
    """
    _get(db, "lines", line_id, "line")
    return db.where("data_packs", line_id=line_id)


@tools.write
def change_plan(db: Database, line_id: str, plan_id: str) -> Line:
    """Move an active line to another plan, from today.

    line_id: the line's ID
    plan_id: the new plan's ID, from list_plans
    """
    line = _active(db, line_id)
    get_plan(db, plan_id)
    if line.plan_id == plan_id:
        raise ToolError(f"line {line_id} is already on plan {plan_id}")
    return db.update("lines", line_id, plan_id=plan_id)


@tools.write
def add_data_pack(db: Database, line_id: str, size_gb: Literal[1, 5, 10]) -> DataPack:
    """Add a data pack to an active line for this cycle; it is charged on the next bill.

    line_id: the line's ID
    size_gb: 1, 5 or 10
    """
    _active(db, line_id)
    pack = DataPack(f"DP{50001 + db.count('data_packs')}", line_id, size_gb,
                    PACK_PRICES[size_gb], CYCLE)  # fmt: skip
    return db.insert(pack)


@tools.write
def enable_roaming(db: Database, line_id: str) -> Line:
    """Turn roaming on for an active line.

    line_id: the line's ID
    """
    if _active(db, line_id).roaming:
        raise ToolError(f"roaming is already on for line {line_id}")
    return db.update("lines", line_id, roaming=True)


@tools.write
def disable_roaming(db: Database, line_id: str) -> Line:
    """Turn roaming off for a line.

    line_id: the line's ID
    """
    if not _get(db, "lines", line_id, "line").roaming:
        raise ToolError(f"roaming is already off for line {line_id}")
    return db.update("lines", line_id, roaming=False)


@tools.write
def suspend_line(db: Database, line_id: str, reason: Reason) -> Line:
    """Suspend an active line: no calls, texts or data until it is resumed.

    line_id: the line's ID
    reason: lost, stolen or customer_request
    """
    _active(db, line_id)
    return db.update("lines", line_id, status="suspended", suspend_reason=reason)


@tools.write
def resume_line(db: Database, line_id: str) -> Line:
    """Resume a suspended line.

    line_id: the line's ID
    """
    if _get(db, "lines", line_id, "line").status != "suspended":
        raise ToolError(f"line {line_id} is not suspended")
    return db.update("lines", line_id, status="active", suspend_reason=None)


@tools.write
def swap_sim(db: Database, line_id: str, new_iccid: str) -> Line:
    """Move a line to a new SIM card; the old SIM stops working.

    line_id: the line's ID
    new_iccid: the new SIM card's ICCID, 19 digits starting with 89
    """
    _get(db, "lines", line_id, "line")
    iccid = new_iccid.replace(" ", "")
    if not (iccid.isdigit() and len(iccid) == 19 and iccid.startswith("89")):
        raise ToolError("an ICCID is 19 digits starting with 89")
    if any(x.sim_iccid == iccid for x in db.rows("lines")):
        raise ToolError(f"SIM {iccid} is already in use")
    return db.update("lines", line_id, sim_iccid=iccid)


@tools.write
def pay_bill(db: Database, bill_id: str) -> Bill:
    """Pay an unpaid bill in full with the card on file.

    bill_id: the bill's ID
    """
    if _get(db, "bills", bill_id, "bill").status == "paid":
        raise ToolError(f"bill {bill_id} is already paid")
    return db.update("bills", bill_id, status="paid")


# ----------------------------------------------------------------------- the database


def _iccid(rng: random.Random) -> str:
    return f"8944{rng.randint(10**14, 10**15 - 1)}"


def generate_db(rng: random.Random, scale: int) -> Iterable[Row]:
    yield from PLANS
    seen: set[tuple[str, str]] = set()
    numbers: set[str] = set()
    lines, devices, packs, bills = [], [], [], []
    for i in range(400 * scale):
        name, postcode = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES), ""
        while not postcode or (name, postcode) in seen:  # name + postcode must identify
            postcode = f"{rng.randint(10000, 99999)}"
        seen.add((name, postcode))
        email = name.lower().replace(" ", ".") + f"{rng.randint(1, 99)}@example.net"
        sub = Subscriber(f"AC{10001 + i}", name, postcode, email)
        yield sub
        monthly = 0.0
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            number = ""
            while not number or number in numbers:
                number = f"07{rng.randint(100000000, 999999999)}"
            numbers.add(number)
            plan = rng.choice(PLANS)
            reason = pick(rng, ("lost", "lost", "stolen", "customer_request"))
            status, reason = ("suspended", reason) if rng.random() < 0.2 else ("active", None)
            used = round(rng.uniform(0.05, 0.95) * plan.data_gb, 1)  # below the allowance
            line = Line(f"L{30001 + len(lines)}", sub.account_id, number, plan.plan_id,
                        _iccid(rng), status, reason, used, rng.random() < 0.2)  # fmt: skip
            lines.append(line)
            monthly += plan.monthly_price
            if rng.random() < 0.65:
                installment = rng.choice((15.0, 22.5, 30.0, 41.25))
                devices.append(Device(f"35{rng.randint(10**12, 10**13 - 1)}", sub.account_id,
                                      line.line_id, rng.choice(MODELS),
                                      installment * rng.choice((0, 0, 3, 6, 12, 18)),
                                      installment, rng.random() < 0.45))  # fmt: skip
                monthly += installment
            for cycle, count in (("2027-03", rng.choice((0, 1, 2))),
                                 (CYCLE, rng.choice((0, 0, 1, 2, 2)))):  # fmt: skip
                for size in rng.sample(sorted(PACK_PRICES), count):
                    packs.append(DataPack(f"DP{50001 + len(packs)}", line.line_id, size,
                                          PACK_PRICES[size], cycle))  # fmt: skip
        # February's bill is overdue when unpaid; March's is not due yet.
        for period, due, unpaid in (("2027-01", "2027-02-20", 0.0), ("2027-02", "2027-03-20", 0.18),
                                    ("2027-03", "2027-04-20", 0.5)):  # fmt: skip
            amount = round(monthly + rng.choice((0, 0, 4, 12, 16.5)), 2)
            bills.append(Bill(f"B{80001 + len(bills)}", sub.account_id, period, amount, due,
                              "unpaid" if rng.random() < unpaid else "paid"))  # fmt: skip
    yield from lines
    yield from devices
    yield from packs
    yield from bills


# ------------------------------------------------------------------------- the tasks

FACTS = {
    "account_id": Fact("account number", ("account number", "account id")),
    "name": Fact("full name", ("full name", "your name", "name on the account", "holder's name")),
    "postcode": Fact("billing postcode", ("postcode", "post code", "postal code", "zip")),
    "phone_number": Fact("phone number", ("phone number", "mobile number", "which line")),
    "new_sim": Fact("new SIM card's ICCID", ("iccid", "sim card number", "sim number", "new sim")),
    "plan": Fact("plan wanted", ("which plan", "what plan", "new plan", "plan would you like")),
    "pack_size": Fact("data pack size", ("pack size", "which pack", "how many gb")),
    "country": Fact("destination country", ("which country", "what country", "destination")),
}


def _identify(sub: Subscriber, rng: random.Random):
    """How the holder introduces themself (:func:`introduce`)."""
    account, name, postcode = sub.account_id, sub.name, sub.postcode
    return introduce(
        rng,
        by_id=("account_id", f"My account number is {account}.",
               Call("get_account", {"account_id": account})),
        by_facts=(("name", "postcode"), f"I'm {name}, postcode {postcode}.", f"This is {name}.",
                  Call("find_account", {"name": name, "postcode": postcode})),
    )  # fmt: skip


def _which_line(db: Database, line: Line, rng: random.Random):
    """How the holder names the line: (words, volunteered, asked). With one line on the
    account there is nothing to ask; with several, the agent asks unless told."""
    several = len(db.where("lines", account_id=line.account_id)) > 1
    if not several and rng.random() < 0.5:
        return "my line", (), ()
    if several and rng.random() < 0.4:
        return "one of my lines", (), ("phone_number",)
    return f"my number {line.number}", ("phone_number",), ()


def _scenario(db, who, goal, opening, rng, said=(), asked=(), **known):
    """The holder of ``who`` (a line, or an account when no line is meant): ``opening``
    with the line's words for ``{line}``, then the identification."""
    line = who if isinstance(who, Line) else None
    sub = db.get("subscribers", line.account_id) if line else who
    words, line_said, line_asked = _which_line(db, line, rng) if line else ("", (), ())
    intro, id_said, id_asked, lookup = _identify(sub, rng)
    facts = {"account_id": sub.account_id, "name": sub.name, "postcode": sub.postcode, **known}
    if line:
        facts["phone_number"] = line.number
    text = " ".join(part for part in (pick(rng, ("Hi.", "Hello.", "Good afternoon.", "")),
                                      opening.replace("{line}", words), intro) if part)  # fmt: skip
    scenario = Scenario(
        persona=f"{sub.name}, holder of account {sub.account_id} (postcode {sub.postcode}).",
        goal=goal,
        opening=text,
        known=facts,
        volunteered=(*id_said, *line_said, *said),
    )
    return scenario, (*id_asked, *line_asked, *asked), lookup


def _task(family: str, rng: random.Random, **fields) -> ToolTask:
    return ToolTask(name=f"telecom-{family}-{rng.randrange(16**8):08x}", domain="telecom",
                    family=family, **fields)  # fmt: skip


def _lines(db: Database, status: str = "active") -> list[Line]:
    return [x for x in db.rows("lines") if x.status == status]


def _devices(db: Database) -> dict[str, Device]:
    return {d.line_id: d for d in db.rows("devices")}


def _overdue(db: Database) -> dict[str, list[Bill]]:
    out: dict[str, list[Bill]] = {}
    for bill in db.rows("bills"):
        if bill.status == "unpaid" and bill.due_date < TODAY:
            out.setdefault(bill.account_id, []).append(bill)
    return out


def gen_plan_change(db: Database, rng: random.Random, blocked: bool = False) -> ToolTask | None:
    devices = _devices(db)
    plans = list(db.rows("plans"))

    def owing(line: Line) -> bool:
        return line.line_id in devices and devices[line.line_id].installment_balance > 0

    # The refusal needs a downgrade to exist, so a line off the cheapest plan.
    cheapest = min(plans, key=lambda p: p.monthly_price).plan_id
    lines = [x for x in _lines(db) if not blocked or (owing(x) and x.plan_id != cheapest)]
    line = rng.choice(lines)
    current = db.get("plans", line.plan_id)
    cheaper = [p for p in plans if p.monthly_price < current.monthly_price]
    if not blocked and owing(line):  # only an upgrade is allowed
        options = [p for p in plans if p.monthly_price > current.monthly_price]
    else:
        options = cheaper if blocked else [p for p in plans if p != current]
    if not options:
        return None
    plan = rng.choice(options)
    scenario, ask, lookup = _scenario(
        db, line, f"move line {line.number} to the {plan.name} plan",
        pick(rng, (f"I'd like to switch {{line}} to the {plan.name} plan.",
                   f"Can you put {{line}} on {plan.name}, please?",
                   f"Please change the plan on {{line}} to {plan.name}.")),
        rng, said=("plan",), plan=plan.name,
    )  # fmt: skip
    sub = line.account_id
    lookups = ((lookup,), (Call("list_lines", {"account_id": sub}), Call("list_plans", {})))
    if plan.monthly_price < current.monthly_price:  # a downgrade: the device decides
        lookups += ((Call("list_devices", {"account_id": sub}),),)
    if blocked:
        device = devices[line.line_id]
        balance = f"{device.installment_balance:.2f}"
        return _task("downgrade_blocked", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, I can't move {line.number} from {current.name} to "
                              f"{plan.name}: that is a downgrade, and the {device.model} on that "
                              f"line still has {balance} of installments to pay. A downgrade is "
                              "possible once the device is paid off."),
                     required_info=(balance,))  # fmt: skip
    price = f"{plan.monthly_price:.2f}"
    return _task(
        "change_plan", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("change_plan", {"line_id": line.line_id, "plan_id": plan.plan_id}),),),
        confirm=f"move {line.number} from {current.name} to {plan.name} at {price} a month",
        outcome=(f"Done: {line.number} is now on {plan.name}, {price} a month with "
                 f"{plan.data_gb} GB of data."),
        required_info=(plan.name, price),
    )  # fmt: skip


def gen_data_pack(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    bought = Counter(p.line_id for p in db.rows("data_packs") if p.cycle == CYCLE)
    line = rng.choice([x for x in _lines(db) if (bought[x.line_id] >= MAX_PACKS) == refuse])
    size = rng.choice(sorted(PACK_PRICES))
    scenario, ask, lookup = _scenario(
        db, line, f"add a {size} GB data pack to line {line.number}",
        pick(rng, (f"I'm running out of data. Can you add a {size} GB pack to {{line}}?",
                   f"I'd like to buy a {size} GB data pack for {{line}}.",
                   f"Please top up {{line}} with {size} GB of extra data.")),
        rng, said=("pack_size",), pack_size=f"{size} GB",
    )  # fmt: skip
    lookups = ((lookup,), (Call("list_lines", {"account_id": line.account_id}),),
               (Call("list_data_packs", {"line_id": line.line_id}),))  # fmt: skip
    if refuse:
        return _task("data_pack_limit", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, {line.number} already has {MAX_PACKS} data packs "
                              f"this cycle, the most allowed. Your allowance renews on "
                              f"{NEXT_CYCLE}."),
                     required_info=(NEXT_CYCLE,))  # fmt: skip
    price = f"{PACK_PRICES[size]:.2f}"
    return _task(
        "add_data_pack", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("add_data_pack", {"line_id": line.line_id, "size_gb": size}),),),
        confirm=f"add a {size} GB data pack to {line.number} for {price}, on your next bill",
        outcome=f"The {size} GB pack is on {line.number}; {price} will be on your next bill.",
        required_info=(price,),
    )  # fmt: skip


def gen_roaming(db: Database, rng: random.Random, refuse: bool = False) -> ToolTask | None:
    overdue = _overdue(db)
    lines = [x for x in _lines(db) if not x.roaming and (x.account_id in overdue) == refuse]
    line = rng.choice(lines)
    country = pick(rng, COUNTRIES)
    scenario, ask, lookup = _scenario(
        db, line, f"turn on roaming on line {line.number} for a trip to {country}",
        pick(rng, (f"I'm travelling to {country} next week; please turn on roaming for {{line}}.",
                   f"Can you enable roaming on {{line}}? I'll be in {country}.",
                   f"I need {{line}} to work in {country}.")),
        rng, said=("country",), country=country,
    )  # fmt: skip
    account = line.account_id
    lookups = ((lookup,), (Call("list_lines", {"account_id": account}),
                           Call("list_bills", {"account_id": account})))  # fmt: skip
    if refuse:
        bills = overdue[account]
        amount = f"{sum(b.amount for b in bills):.2f}"
        periods = " and ".join(f"{b.period} (due {b.due_date})" for b in bills)
        return _task("roaming_overdue", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, I can't turn on roaming: {amount} is overdue on your "
                              f"account, for the bill of {periods}. Roaming can be enabled once "
                              "no bill is overdue."),
                     required_info=(amount,))  # fmt: skip
    plan = db.get("plans", line.plan_id)
    lookups += ((Call("get_plan", {"plan_id": plan.plan_id}),),)
    info = "included" if plan.international else f"{ROAMING_FEE:.2f}"
    cost = (f"it is included in your {plan.name} plan" if plan.international
            else f"on {plan.name} it costs {info} per day used abroad")  # fmt: skip
    return _task(
        "enable_roaming", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("enable_roaming", {"line_id": line.line_id}),),),
        confirm=f"turn on roaming for {line.number}; {cost}",
        outcome=f"Roaming is on for {line.number}; {cost}. Enjoy {country}!",
        required_info=(info,),
    )  # fmt: skip


def gen_suspend(db: Database, rng: random.Random) -> ToolTask | None:
    line = rng.choice(_lines(db))
    reason = pick(rng, ("lost", "stolen"))
    scenario, ask, lookup = _scenario(
        db, line, f"suspend line {line.number}: the phone was {reason}",
        pick(rng, (f"My phone was {reason}! Please block {{line}}.",
                   f"I think my phone has been {reason}; can you suspend {{line}}?")),
        rng,
    )  # fmt: skip
    device, excess = _devices(db).get(line.line_id), f"{INSURANCE_EXCESS:.2f}"
    outcome, required = f"{line.number} is suspended as of {TODAY}; nobody can use it.", (TODAY,)
    if device is not None and device.insured:  # the policy has the agent mention the claim
        outcome += f" Your {device.model} is insured: claim a replacement for a {excess} excess."
        required += (excess,)
    return _task(
        "suspend_line", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_lines", {"account_id": line.account_id}),
                             Call("list_devices", {"account_id": line.account_id}))),
        writes=((Call("suspend_line", {"line_id": line.line_id, "reason": reason}),),),
        confirm=f"suspend {line.number} because the phone was {reason}",
        outcome=outcome, required_info=required,
    )  # fmt: skip


def gen_resume(db: Database, rng: random.Random, stolen: bool = False) -> ToolTask | None:
    lines = [x for x in _lines(db, "suspended") if (x.suspend_reason == "stolen") == stolen]
    line = rng.choice(lines)
    lookups = ((Call("list_lines", {"account_id": line.account_id}),),)
    if not stolen:
        scenario, ask, lookup = _scenario(
            db, line, f"resume line {line.number}",
            pick(rng, ("Could you reactivate {line}? It's suspended.",
                       "I found my phone; please turn {line} back on."
                       if line.suspend_reason == "lost" else "I'm back; please resume {line}.")),
            rng,
        )  # fmt: skip
        return _task(
            "resume_line", rng, scenario=scenario, ask=ask, lookups=((lookup,), *lookups),
            writes=((Call("resume_line", {"line_id": line.line_id}),),),
            confirm=f"resume {line.number}",
            outcome=f"{line.number} is active again.", required_info=(line.number,),
        )  # fmt: skip
    iccid = _iccid(rng)
    scenario, ask, lookup = _scenario(
        db, line, f"get line {line.number} back on a new SIM card ({iccid}) after a theft",
        pick(rng, ("My stolen phone's line is blocked. I have a new SIM card now; please "
                   "put {line} back in service.",
                   "I got a replacement SIM after my phone was stolen. Can you move {line} "
                   "to it and switch it back on?")),
        rng, asked=("new_sim",), new_sim=iccid,
    )  # fmt: skip
    return _task(
        "resume_stolen", rng, scenario=scenario, ask=ask, lookups=((lookup,), *lookups),
        writes=((Call("swap_sim", {"line_id": line.line_id, "new_iccid": iccid}),),
                (Call("resume_line", {"line_id": line.line_id}),)),
        confirm=f"move {line.number} to the SIM card {iccid}, then resume the line",
        outcome=f"{line.number} now works on your new SIM {iccid} and is active again.",
        required_info=(line.number,),
    )  # fmt: skip


def gen_pay_bills(db: Database, rng: random.Random) -> ToolTask | None:
    bills = [b for b in db.rows("bills") if b.status == "unpaid"]
    account = rng.choice(bills).account_id
    unpaid = [b for b in db.where("bills", account_id=account) if b.status == "unpaid"]
    scenario, ask, lookup = _scenario(
        db, db.get("subscribers", account), "pay everything they owe with the card on file",
        pick(rng, ("I'd like to pay all my outstanding bills with my card on file.",
                   "Please settle whatever I owe you.", "Can I clear my unpaid bills today?")),
        rng,
    )  # fmt: skip
    total = f"{sum(b.amount for b in unpaid):.2f}"
    return _task(
        "pay_bills", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_bills", {"account_id": account}),)),
        writes=(tuple(Call("pay_bill", {"bill_id": b.bill_id}) for b in unpaid),),
        confirm=(f"pay {len(unpaid)} unpaid bill(s), {total} in all, with the card on file: "
                 + ", ".join(f"{b.bill_id} ({b.period}, {b.amount:.2f})" for b in unpaid)),
        outcome=f"All paid: {total} was charged to your card on file.",
        required_info=(total,),
    )  # fmt: skip


def gen_data_left(db: Database, rng: random.Random) -> ToolTask | None:
    line = rng.choice(_lines(db))
    plan = db.get("plans", line.plan_id)
    packs = sum(p.size_gb for p in db.where("data_packs", line_id=line.line_id, cycle=CYCLE))
    left = f"{plan.data_gb + packs - line.data_used_gb:.1f}"
    scenario, ask, lookup = _scenario(
        db, line, f"find out how much data is left this month on line {line.number}",
        pick(rng, ("How much data do I have left on {line} this month?",
                   "Can you tell me my remaining data on {line}?")),
        rng,
    )  # fmt: skip
    return _task(
        "data_left", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_lines", {"account_id": line.account_id}),),
                 (Call("get_plan", {"plan_id": plan.plan_id}),
                  Call("list_data_packs", {"line_id": line.line_id}))),
        outcome=f"You have {left} GB left on {line.number} until the cycle renews on {NEXT_CYCLE}.",
        required_info=(left,),
    )  # fmt: skip


def gen_device_balance(db: Database, rng: random.Random) -> ToolTask | None:
    device = rng.choice([d for d in db.rows("devices") if d.installment_balance > 0])
    if len(db.where("devices", account_id=device.account_id, model=device.model)) > 1:
        return None  # which phone is meant would be ambiguous
    sub = db.get("subscribers", device.account_id)
    scenario, ask, lookup = _scenario(
        db, sub, f"find out how much is left to pay on the {device.model}",
        pick(rng, (f"How much do I still owe on my {device.model}?",
                   f"When will my {device.model} be paid off?")),
        rng,
    )  # fmt: skip
    balance = f"{device.installment_balance:.2f}"
    months = round(device.installment_balance / device.monthly_installment)
    return _task(
        "device_balance", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_devices", {"account_id": device.account_id}),)),
        outcome=(f"{balance} is left to pay on your {device.model}: {months} more monthly "
                 f"installments of {device.monthly_installment:.2f}."),
        required_info=(balance,),
    )  # fmt: skip


DOMAIN = register_domain(
    Domain(
        name="telecom",
        description="a mobile operator's care desk: plans, lines, data, roaming, devices, bills",
        tables=TABLES,
        generate_db=generate_db,
        toolkit=tools,
        policy=POLICY,
        facts=FACTS,
        task_generators={
            # One generator per family, so each is drawn as often (refusals included).
            "change_plan": gen_plan_change,
            "downgrade_blocked": partial(gen_plan_change, blocked=True),
            "add_data_pack": gen_data_pack,
            "data_pack_limit": partial(gen_data_pack, refuse=True),
            "enable_roaming": gen_roaming,
            "roaming_overdue": partial(gen_roaming, refuse=True),
            "suspend_line": gen_suspend,
            "resume_line": gen_resume,
            "resume_stolen": partial(gen_resume, stolen=True),
            "pay_bills": gen_pay_bills,
            "data_left": gen_data_left,
            "device_balance": gen_device_balance,
        },
    )
)
