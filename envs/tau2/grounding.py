"""What a τ² conversation has told the agent, and how an agent can learn the rest.

An agent cannot guess an identifier: a user id, an order, item or reservation id, a
flight number, a date, a code. A call that uses one is *grounded* when the value was
said before it: by the user, or in a tool's result. The values that need grounding
(:func:`must_ground`) are the single words that carry a digit or an ``@ # _``, or that
are written in capitals or capitalised (names, codes, cities), and that the tool's
schema does not list as an option; numbers, booleans and free text of several words
(an amount the policy computes, a reason, a summary) are the agent's own.

:class:`Knowledge` is what the conversation holds so far: its text, and the values of
its tool results by the field they came under, the pools from which look-ups take their
arguments. A date counts as said when the user said its month and day ("May 24" is
``2024-05-24`` in the latest year the conversation shows), or a date said or shown
moved by the days the user speaks of ("the day after").

:func:`reveal` finds look-ups that ground a value: breadth first over the domain's
read tools, each called with arguments from the pools (a parameter takes the values
of fields of its name, of its plural, ``orders`` for ``order_id``, or of fields its
description names, ``iata`` for "the IATA code"; the newest values first), until a
result holds the value. It runs them through the caller (on a fork of the world) and
returns the chain of calls an agent would make, in order.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MONTHS = (
    *("january", "february", "march", "april", "may", "june"),
    *("july", "august", "september", "october", "november", "december"),
)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_WORD = re.compile(r"[a-z]+")
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
MAX_COMBINATIONS = 400  # candidate argument sets of one tool at one level of the search
MAX_DEPTH = 3


def must_ground(value: Any, options: frozenset[str] = frozenset()) -> bool:
    """Whether ``value`` (an argument leaf) is something the agent must have been told."""
    if not isinstance(value, str) or not value or value in options:
        return False
    if any(c.isspace() for c in value.strip()):
        return False  # the agent's own words: a reason, a summary, an expression
    return (
        any(c.isdigit() for c in value)
        or any(c in value for c in "@#_")
        or value[0].isupper()
        or (value.isupper() and len(value) > 1)
    )


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def schema_options(schema: dict[str, Any]) -> frozenset[str]:
    """Every value a tool's schema lists as an option (``enum``), at any depth."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(str(v) for v in node.get("enum", ()) if isinstance(v, str))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return frozenset(found)


def _valid(iso: str) -> bool:
    try:
        dt.date.fromisoformat(iso)
    except ValueError:
        return False
    return True


def _token(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w])" + re.escape(value.lower()) + r"(?![\w])")


@dataclass(frozen=True)
class Lookup:
    """A read call: its tool and arguments."""

    name: str
    arguments: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, name: str, arguments: dict[str, Any]) -> Lookup:
        return cls(name, tuple(sorted(arguments.items(), key=lambda kv: kv[0])))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arguments)


@dataclass
class Knowledge:
    """What the conversation has shown the agent (module docstring)."""

    text: str = ""
    said: str = ""
    pools: dict[str, list[Any]] = field(default_factory=dict)
    years: set[str] = field(default_factory=set)

    def copy(self) -> Knowledge:
        pools = {k: list(v) for k, v in self.pools.items()}
        return Knowledge(self.text, self.said, pools, set(self.years))

    def hear(self, text: str, *, user: bool = True) -> None:
        """Something said: a user's message (or a result, ``user=False``)."""
        self.text += "\n" + text.lower()
        if user:
            self.said += "\n" + text.lower()
        self.years.update(m.group(1) for m in _ISO.finditer(text))
        for m in re.finditer(r"[\w@#.\-]+", text):
            token = m.group(0).strip(".")
            # Identifiers, and the names a user gives (capitalised words past the first).
            named = user and token[:1].isupper() and len(token) > 1 and m.start() > 0
            if any(c.isdigit() or c in "@#_" for c in token) or named:
                self._pool("", token)

    def read(self, content: str) -> None:
        """A tool's result: heard, and its fields' values pooled by field name (an
        error tells nothing)."""
        if content.startswith("Error:"):
            return
        self.hear(content, user=False)
        try:
            data = json.loads(content)
        except ValueError:
            self._pool("", content.strip())
            return
        self._walk(data, "")

    def _walk(self, node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()):
                    for inner in v:  # a table keyed by id: {"credit_card_1": {...}}
                        self._pool(k, inner)
                self._walk(v, k)
        elif isinstance(node, list):
            for v in node:
                self._walk(v, key)
        elif isinstance(node, str | int) and not isinstance(node, bool):
            self._pool(key, node)

    def _pool(self, key: str, value: Any) -> None:
        # Latest first: a look-up takes the values just seen before older ones.
        pool = self.pools.setdefault(key, [])
        if value in pool:
            pool.remove(value)
        pool.insert(0, value)

    def grounded(self, value: Any) -> bool:
        text = str(value)
        if _token(text).search(self.text):
            return True
        return bool(_ISO.fullmatch(text)) and text in self.dates()

    def dates(self) -> list[str]:
        """The dates of the conversation, as ISO dates: the ``date`` fields of results
        and the dates the user said, written so or as a month and day ("May 24", in the
        latest year the conversation shows); and those dates moved by the days the user
        speaks of ("the next day", "2 days")."""
        out = [str(v) for v in self.pools.get("date", ()) if _ISO.fullmatch(str(v))]
        out += [m.group(0) for m in _ISO.finditer(self.said)]
        year = max(self.years, default=None)
        for i, month in enumerate(MONTHS):
            pattern = rf"\b(?:{month}|{month[:3]})\.? (\d{{1,2}})(?:st|nd|rd|th)?(?!\d)"
            for m in re.finditer(pattern, self.said) if year else ():
                out.append(f"{year}-{i + 1:02d}-{int(m.group(1)):02d}")
        shifts = {
            int(n) if n.isdigit() else _NUMBERS[n]
            for n in re.findall(r"\b(\d+|one|two|three|four|five) days?\b", self.said)
        }
        if re.search(r"\b(?:next|following) day\b|\bday after\b", self.said):
            shifts.add(1)
        if re.search(r"\bday before\b|\bprevious day\b", self.said):
            shifts.add(-1)
        moved = []
        for iso in out:
            day = dt.date.fromisoformat(iso) if _valid(iso) else None
            for shift in sorted(shifts) if day else ():
                moved += [(day + dt.timedelta(days=d)).isoformat() for d in (shift, -shift)]
        return list(dict.fromkeys(out + moved))

    def pool(self, parameter: str, description: str) -> list[Any]:
        """The values a look-up's ``parameter`` may take (module docstring)."""
        if parameter == "date" or parameter.endswith("_date"):
            return self.dates()
        stem = parameter.removesuffix("_id")
        keys = [parameter, stem + "s", stem]
        keys += [w for w in _WORD.findall(description.lower()) if w in self.pools and len(w) > 2]
        values: list[Any] = []
        for key in dict.fromkeys(keys):
            values.extend(v for v in self.pools.get(key, ()) if v not in values)
        if not values:
            values = list(self.pools.get("", ()))  # identifiers said, and bare results
        return values


def reveal(
    value: Any,
    knowledge: Knowledge,
    reads: dict[str, dict[str, Any]],
    call: Callable[[Lookup], str],
    made: set[Lookup],
) -> list[Lookup] | None:
    """The look-ups, in order, after which ``value`` is grounded (``[]``: it is already);
    ``None`` when none of the domain's reads reveals it within :data:`MAX_DEPTH` levels.

    ``reads`` are the read tools' parameter schemas by name; ``call`` runs one look-up
    on the world and returns its result; ``made`` are look-ups the conversation has
    made already (not made again)."""
    if knowledge.grounded(value):
        return []
    scratch = knowledge.copy()
    tried = set(made)
    produced: dict[Lookup, list[Lookup]] = {}  # a look-up -> the look-ups its arguments need
    source: dict[str, Lookup] = {}  # a value -> the first look-up that showed it
    for _ in range(MAX_DEPTH):
        level = [c for c in _candidates(scratch, reads) if c not in tried]
        if not level:
            return None
        for lookup in level:
            tried.add(lookup)
            needs = [source[str(v)] for _, v in lookup.arguments if str(v) in source]
            produced[lookup] = needs
            result = call(lookup)
            if _token(str(value)).search(result.lower()) or (
                _ISO.fullmatch(str(value)) and str(value) in result
            ):
                return _chain(lookup, produced)
            before = {k: set(map(str, v)) for k, v in scratch.pools.items()}
            scratch.read(result)
            for k, values in scratch.pools.items():
                for v in values:
                    if str(v) not in before.get(k, ()) and str(v) not in source:
                        source[str(v)] = lookup
    return None


def _chain(last: Lookup, produced: dict[Lookup, list[Lookup]]) -> list[Lookup]:
    order: list[Lookup] = []

    def visit(lookup: Lookup) -> None:
        for need in produced.get(lookup, ()):
            if need not in order:
                visit(need)
        if lookup not in order:
            order.append(lookup)

    visit(last)
    return order


def _candidates(knowledge: Knowledge, reads: dict[str, dict[str, Any]]) -> list[Lookup]:
    out = []
    for name, schema in sorted(reads.items()):
        properties = schema.get("properties", {})
        required = schema.get("required", list(properties))
        pools = [knowledge.pool(p, properties.get(p, {}).get("description", "")) for p in required]
        if any(not p for p in pools):
            continue
        # The pools are latest first, so the combinations kept are of the newest values.
        for values in itertools.islice(itertools.product(*pools), MAX_COMBINATIONS):
            out.append(Lookup.of(name, dict(zip(required, values, strict=True))))
    return out
