"""Reading the page text an agent is shown (:file:`observe.js`), for experts: its
elements with their bids, roles, names and states, in page order."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(
    r"^(?P<indent> *)\[(?P<bid>[^\]]+)\] (?P<role>\S+) '(?P<name>(?:[^'\\]|\\.)*)'"
    r"(?P<props>.*)$"
)
_TEXT = re.compile(r"^(?P<indent> *)StaticText '(?P<text>(?:[^'\\]|\\.)*)'$")


@dataclass(frozen=True)
class Element:
    bid: str
    role: str
    name: str
    props: str

    @property
    def checked(self) -> bool:
        return "checked=true" in self.props

    @property
    def value(self) -> str:
        found = re.search(r"value='((?:[^'\\]|\\.)*)'", self.props)
        return _unquote(found.group(1)) if found else ""


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse(page: str) -> list[Element]:
    """The page's elements, in page order."""
    return [
        Element(m["bid"], m["role"], _unquote(m["name"]), m["props"].strip())
        for m in map(_LINE.match, page.splitlines())
        if m
    ]


def static_texts(page: str) -> list[str]:
    return [_unquote(m["text"]) for m in map(_TEXT.match, page.splitlines()) if m]


def find(page: str, role: str, name: str | None = None, *, contains: bool = False) -> Element:
    """The first element of ``role`` (and ``name``, whole or contained); ``LookupError``
    when there is none."""
    for element in parse(page):
        if element.role != role:
            continue
        if name is None or element.name == name or (contains and name in element.name):
            return element
    raise LookupError(f"no {role} {name!r} on the page")


def find_all(page: str, role: str) -> list[Element]:
    return [e for e in parse(page) if e.role == role]
