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
    depth: int
    text: str = ""  # the static text right under it, joined

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
    """The page's elements, each with the static text directly below it."""
    out: list[Element] = []
    texts: list[list[str]] = []
    for line in page.splitlines():
        found = _LINE.match(line)
        if found:
            out.append(
                Element(
                    found["bid"],
                    found["role"],
                    _unquote(found["name"]),
                    found["props"].strip(),
                    len(found["indent"]) // 2,
                )
            )
            texts.append([])
            continue
        text = _TEXT.match(line)
        if text and out:
            depth = len(text["indent"]) // 2
            for i in range(len(out) - 1, -1, -1):  # the nearest element above it
                if out[i].depth < depth:
                    texts[i].append(_unquote(text["text"]))
                    break
    return [
        Element(e.bid, e.role, e.name, e.props, e.depth, " ".join(t))
        for e, t in zip(out, texts, strict=True)
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
