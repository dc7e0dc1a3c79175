"""A tool-API domain: its database model, tools, policy, user facts and task generators.

A domain is one Python module that builds a :class:`Domain` and registers it (see
``docs/tools.md`` for a walk-through, and ``envs/tools/domains/clinic.py`` for a
complete one). Its parts:

- ``tables``: the :class:`~envs.tools.db.Table` s of its database;
- ``generate_db(rng, scale)``: the rows of a seeded database (``scale`` 1 is the
  bundled size; larger scales grow it proportionally, for benchmarks);
- ``toolkit``: its :class:`~envs.tools.toolkit.Toolkit` (reads and writes);
- ``policy``: the document the agent must follow (Markdown), shown in its system prompt;
- ``facts``: what a user may be asked for, by name, with the words an agent would use
  to ask for it (``"date_of_birth": Fact("date of birth", ("date of birth", "dob",
  "born"))``); the scripted user answers with the facts its scenario holds;
- ``task_generators``: ``generate(db, rng) -> ToolTask | None``, one per family of
  request (a refusal required by the policy is a family of its own); ``None`` when the
  drawn entities do not fit the family, and the builder draws again.

A :class:`ToolTask` is plain data (its JSON is how trajectories carry it): the user's
scenario, the gold actions in the order an expert does them, the information the agent
must communicate, and the expert's own lines. Its end state is not stored: it is the
gold actions replayed on the task's database, so it can never disagree with the tools.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pivotgym.envs.tools.db import Database, Row, Schema, Table, build
from pivotgym.envs.tools.toolkit import Toolkit
from pivotgym.errors import DataError


@dataclass(frozen=True)
class Fact:
    """Something a user knows: how it is called, and the words used to ask for it."""

    label: str
    asked_as: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """A tool call as data: the tool's name and its arguments."""

    name: str
    arguments: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class Scenario:
    """The user of a task: who they are, what they want, what they know.

    ``opening`` is the user's first message; ``volunteered`` names the facts it already
    gives. ``known`` maps fact names to values the user answers with when asked.
    ``accepts`` is whether the user says yes when the agent asks to confirm an action.
    """

    persona: str
    goal: str
    opening: str
    known: Mapping[str, str] = field(default_factory=dict)
    volunteered: tuple[str, ...] = ()
    accepts: bool = True


@dataclass(frozen=True)
class ToolTask:
    """One task of a domain (module docstring).

    ``lookups`` and ``writes`` are the gold actions as groups: the calls of one group do
    not depend on each other (an expert may make them in any order, or at once); groups
    run in order. ``ask`` is what the expert asks the user for before its first look-up
    (the facts the look-ups need that the opening did not give). ``confirm`` is the
    expert's description of the writes when it asks the user to confirm them;
    ``outcome`` its last message, which must carry every string of ``required_info``.
    A refusal task has no writes, and ``outcome`` says why the policy forbids it.
    """

    name: str
    domain: str
    family: str
    scenario: Scenario
    lookups: tuple[tuple[Call, ...], ...]
    writes: tuple[tuple[Call, ...], ...] = ()
    ask: tuple[str, ...] = ()
    confirm: str = ""
    outcome: str = ""
    required_info: tuple[str, ...] = ()
    db_seed: int = 0
    max_turns: int = 30

    @property
    def gold_actions(self) -> list[Call]:
        return [c for group in (*self.lookups, *self.writes) for c in group]

    @functools.cached_property
    def key(self) -> str:
        """Unique across task sets: two tasks of one name (other seeds) differ in it."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()
        return f"tools/{self.domain}/{self.name}/{digest[:16]}"

    @property
    def instruction(self) -> str:
        return self.scenario.opening

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lookups"] = [[c.to_json() for c in g] for g in self.lookups]
        data["writes"] = [[c.to_json() for c in g] for g in self.writes]
        data["scenario"]["known"] = dict(self.scenario.known)
        return data


def task_from_json(data: Any, where: str = "task") -> ToolTask:
    """A :class:`ToolTask` from its JSON; ``DataError`` names the field."""
    if not isinstance(data, dict):
        raise DataError("must be an object", field=where)
    try:
        scenario = data["scenario"]
        return ToolTask(
            name=str(data["name"]),
            domain=str(data["domain"]),
            family=str(data["family"]),
            scenario=Scenario(
                persona=scenario["persona"],
                goal=scenario["goal"],
                opening=scenario["opening"],
                known=dict(scenario.get("known", {})),
                volunteered=tuple(scenario.get("volunteered", ())),
                accepts=bool(scenario.get("accepts", True)),
            ),
            lookups=_groups(data.get("lookups", []), f"{where}.lookups"),
            writes=_groups(data.get("writes", []), f"{where}.writes"),
            ask=tuple(data.get("ask", ())),
            confirm=data.get("confirm", ""),
            outcome=data.get("outcome", ""),
            required_info=tuple(data.get("required_info", ())),
            db_seed=int(data.get("db_seed", 0)),
            max_turns=int(data.get("max_turns", 30)),
        )
    except KeyError as exc:
        raise DataError("missing", field=f"{where}.{exc.args[0]}") from None
    except (TypeError, AttributeError) as exc:
        raise DataError(f"malformed ({exc})", field=where) from None


def _groups(data: Any, where: str) -> tuple[tuple[Call, ...], ...]:
    out = []
    for i, group in enumerate(data):
        calls = []
        for j, call in enumerate(group):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise DataError("a call is {name, arguments}", field=f"{where}[{i}][{j}]")
            arguments = call.get("arguments", {})
            if not isinstance(arguments, dict):
                raise DataError("must be an object", field=f"{where}[{i}][{j}].arguments")
            calls.append(Call(call["name"], arguments))
        out.append(tuple(calls))
    return tuple(out)


def introduce(
    rng: random.Random,
    *,
    by_id: tuple[str, str, Call],
    by_facts: tuple[tuple[str, ...], str, str, Call],
    odds: tuple[float, float, float] = (0.35, 0.4, 0.75),
) -> tuple[str, tuple[str, ...], tuple[str, ...], Call]:
    """How a user identifies themself, drawn with ``rng``: ``(words for the opening,
    facts volunteered, facts the agent must ask for, the look-up that finds them)``.

    ``by_id`` is ``(fact, sentence, look-up)`` for a user who knows their ID (with
    probability ``odds[0]``). ``by_facts`` is ``(facts, sentence giving them all,
    sentence giving the first, look-up)`` for the others, who give every fact (below
    ``odds[1]``), the first only and are asked the rest (below ``odds[2]``), or nothing
    and are asked for all: the variation of "asking vs looking up" an expert meets.
    """
    if rng.random() < odds[0]:
        fact, sentence, lookup = by_id
        return sentence, (fact,), (), lookup
    facts, all_said, first_said, lookup = by_facts
    style = rng.random()
    if style < odds[1]:
        return all_said, facts, (), lookup
    if style < odds[2]:
        return first_said, facts[:1], facts[1:], lookup
    return "", (), facts, lookup


TaskGenerator = Callable[[Database, random.Random], "ToolTask | None"]


@dataclass
class Domain:
    """A tool-API domain (module docstring)."""

    name: str
    description: str
    tables: Sequence[Table]
    generate_db: Callable[[random.Random, int], Iterable[Row]]
    toolkit: Toolkit
    policy: str
    facts: Mapping[str, Fact]
    task_generators: Mapping[str, TaskGenerator]
    held_out: bool = False
    schema: Schema = field(init=False)
    _dbs: dict[tuple[int, int], Database] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.schema = Schema(self.tables)

    def database(self, seed: int = 0, scale: int = 1) -> Database:
        """A fresh fork of the seeded database (generated once per process)."""
        key = (seed, scale)
        if key not in self._dbs:
            rng = random.Random(f"{self.name}-db-{seed}-{scale}")
            db = build(self.schema, self.generate_db(rng, scale))
            db.digest()  # computed once here, its sums are inherited by every fork
            self._dbs[key] = db
        return self._dbs[key].fork()

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.toolkit.schemas


_domains: dict[str, Domain] = {}


def register_domain(domain: Domain, *, replace: bool = False) -> Domain:
    """Make ``domain`` available as ``pivotgym.make("tools", domain=name)``."""
    if domain.name in _domains and not replace and _domains[domain.name] is not domain:
        raise DataError(f"tool domain {domain.name!r} is already registered")
    _domains[domain.name] = domain
    return domain


GROUP = "pivotgym.tool_domains"


def get_domain(name: str) -> Domain:
    """The domain registered as ``name``, loading it from the ``pivotgym.tool_domains``
    entry points (where pivotgym's own domains are declared too) if needed."""
    if name not in _domains:
        for ep in entry_points(group=GROUP):
            if ep.name == name:
                domain = ep.load()
                if not isinstance(domain, Domain):
                    raise DataError(f"entry point {ep.value!r} of group {GROUP} is not a Domain")
                register_domain(domain)
    if name not in _domains:
        raise DataError(f"unknown tool domain {name!r} (domains: {', '.join(domain_names())})")
    return _domains[name]


def domain_names() -> list[str]:
    """Every registered or installed domain."""
    return sorted(set(_domains) | {ep.name for ep in entry_points(group=GROUP)})
