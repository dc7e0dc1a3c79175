"""MiniWoB++ tasks as families (``miniwob.<page>``), and experts for those they can solve.

Every deterministic page of the package is a family; a task is the page and a seed.
The check is the page's own (:class:`~pivotgym.envs.browser.miniwob.MiniWobSite`): its
raw reward once it reports itself done, and only while the task's first tab still
shows the task's page (the URL check BrowserGym makes too). The goal is the page's
utterance, read when the world opens.

The experts read the utterance and the page text as an agent does and solve the page
with natural variation (the order of independent steps, ``fill`` or a click and typing,
``check`` or a click): :data:`SOLVERS` lists the pages they cover. One knows more than
the page shows: ``click-checkboxes-soft`` asks for words by meaning, and its expert
knows the page's word groups, read from the package as a person knows the words.
"""

from __future__ import annotations

import ast
import functools
import random
import re
from collections.abc import Callable
from typing import Any

from pivotgym.envs.browser.families import Action, Expert, Family
from pivotgym.envs.browser.families.page_text import Element, find, find_all, parse, static_texts
from pivotgym.envs.browser.miniwob import MiniWobSite, package_root, page_path, task_names
from pivotgym.envs.browser.sites import Site
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.errors import InfraError

MAX_TURNS = 10
# Pages whose solution takes more turns than MAX_TURNS allows (up to 12 boxes to tick,
# then Submit).
TURNS = {"click-checkboxes-large": 15}


def _quoted(utterance: str) -> list[str]:
    return re.findall(r'"([^"]*)"', utterance)


def _click(element: Element) -> Action:
    return "click", {"bid": element.bid}


def _type(rng: random.Random, box: Element, text: str) -> list[Action]:
    if rng.random() < 0.7:
        return [("fill", {"bid": box.bid, "value": text})]
    return [("click", {"bid": box.bid}), ("keyboard_type", {"text": text})]


def _tick(rng: random.Random, box: Element) -> Action:
    return ("check", {"bid": box.bid}) if rng.random() < 0.5 else _click(box)


def _submit(page: str) -> Action:
    for name in ("Submit", "submit", "Login", "Search"):
        try:
            return _click(find(page, "button", name))
        except LookupError:
            continue
    raise LookupError("no submit button")


def _boxes(page: str) -> list[Element]:
    return [e for e in parse(page) if e.role == "textbox"]


def _click_named(role: str) -> Callable[[str, str, random.Random], list[Action]]:
    def solve(utterance: str, page: str, rng: random.Random) -> list[Action]:
        return [_click(find(page, role, _quoted(utterance)[0]))]

    return solve


def _click_words(utterance: str, page: str, rng: random.Random) -> list[Action]:
    return [_click(find(page, "StaticText", _quoted(utterance)[0]))]


def _button_sequence(utterance: str, page: str, rng: random.Random) -> list[Action]:
    first, second = re.findall(r"button (\w+)", utterance)[:2]
    return [_click(find(page, "button", first)), _click(find(page, "button", second))]


def _click_test_2(utterance: str, page: str, rng: random.Random) -> list[Action]:
    return [_click(find(page, "button", re.search(r"button (\w+)", utterance)[1]))]


def _select_boxes(role: str) -> Callable[[str, str, random.Random], list[Action]]:
    def solve(utterance: str, page: str, rng: random.Random) -> list[Action]:
        listed = re.search(r"Select (.*?) and click Submit", utterance)
        assert listed is not None
        words = [w.strip() for w in re.split(r",| and ", listed[1]) if w.strip()]
        if listed[1].strip() == "nothing":
            words = []
        steps = [_tick(rng, find(page, role, w)) for w in words]
        rng.shuffle(steps)
        return [*steps, _submit(page)]

    return solve


def _similar_boxes(utterance: str, page: str, rng: random.Random) -> list[Action]:
    """Tick the boxes whose words mean what the listed ones do, by the page's own word
    groups."""
    listed = re.search(r"Select words similar to (.*?) and click Submit", utterance)
    assert listed is not None
    wanted = [w.strip() for w in listed[1].split(",") if w.strip() and listed[1] != "nothing"]
    groups = _synonyms()
    steps = []
    for box in find_all(page, "checkbox"):
        if any(box.name in group and word in group for word in wanted for group in groups):
            steps.append(_tick(rng, box))
    rng.shuffle(steps)
    return [*steps, _submit(page)]


@functools.cache
def _synonyms() -> list[list[str]]:
    source = (package_root() / "html" / page_path("click-checkboxes-soft")).read_text()
    found = re.search(r"var SYNONYMS = (\[.*?\]);", source, re.S)
    if found is None:
        raise LookupError("the page's word groups were not found")
    return ast.literal_eval(found[1])


def _enter_text(
    transform: Callable[[str], str],
) -> Callable[[str, str, random.Random], list[Action]]:
    def solve(utterance: str, page: str, rng: random.Random) -> list[Action]:
        box = _boxes(page)[0]
        return [*_type(rng, box, transform(_quoted(utterance)[0])), _submit(page)]

    return solve


def _enter_text_cased(utterance: str, page: str, rng: random.Random) -> list[Action]:
    upper = "upper case" in utterance
    return _enter_text(str.upper if upper else str.lower)(utterance, page, rng)


def _login_user(utterance: str, page: str, rng: random.Random) -> list[Action]:
    username, password = _quoted(utterance)[:2]
    user_box, password_box = _boxes(page)[:2]
    steps = [_type(rng, user_box, username), _type(rng, password_box, password)]
    rng.shuffle(steps)
    return [*steps[0], *steps[1], _submit(page)]


def _enter_password(utterance: str, page: str, rng: random.Random) -> list[Action]:
    password = _quoted(utterance)[0]
    first, second = _boxes(page)[:2]
    return [*_type(rng, first, password), *_type(rng, second, password), _submit(page)]


def _choose_list(utterance: str, page: str, rng: random.Random) -> list[Action]:
    item = re.search(r"Select (.*) from the list", utterance)
    assert item is not None
    return [
        ("select_option", {"bid": find_all(page, "combobox")[0].bid, "options": item[1]}),
        _submit(page),
    ]


def _focus_text(utterance: str, page: str, rng: random.Random) -> list[Action]:
    boxes = _boxes(page)
    nth = re.search(r"(\d+)(st|nd|rd|th)", utterance)
    box = boxes[int(nth[1]) - 1] if nth else boxes[0]
    return [("focus", {"bid": box.bid}) if rng.random() < 0.5 else _click(box)]


def _click_tab(utterance: str, page: str, rng: random.Random) -> list[Action]:
    number = re.search(r"Tab #(\d+)", utterance)
    assert number is not None
    return [_click(find(page, "tab", f"Tab #{number[1]}"))]


def _click_widget(utterance: str, page: str, rng: random.Random) -> list[Action]:
    kind = _quoted(utterance)[0]
    role = {
        "checkbox": "checkbox",
        "radio": "radio",
        "button": "button",
        "text": "textbox",
        "textarea": "textbox",
    }.get(kind, kind)
    return [_click(find_all(page, role)[0])]


def _click_test(utterance: str, page: str, rng: random.Random) -> list[Action]:
    return [_click(find_all(page, "button")[0])]


def _texts(page: str) -> list[str]:
    return [e.name for e in parse(page) if e.role == "StaticText"] + static_texts(page)


def _arithmetic(utterance: str, page: str, rng: random.Random) -> list[Action]:
    for text in _texts(page):
        found = re.fullmatch(r"(-?\d+)\s*([-+x*×])\s*(-?\d+)\s*=", text.strip())
        if found:
            a, op, b = int(found[1]), found[2], int(found[3])
            value = a + b if op == "+" else a - b if op == "-" else a * b
            return [*_type(rng, _boxes(page)[0], str(value)), _submit(page)]
    raise LookupError("no arithmetic problem on the page")


def _algebra(utterance: str, page: str, rng: random.Random) -> list[Action]:
    for text in _texts(page):
        found = re.fullmatch(r"([\dx+\- ]+?)\s*=\s*(-?\d+)", text.strip())
        if not found or "x" not in found[1]:
            continue
        tokens = re.findall(r"\d+|x|[+-]", found[1])

        def left(x: int, tokens: list[str] = tokens) -> int:
            total, sign = 0, 1
            for token in tokens:
                if token in "+-":
                    sign = 1 if token == "+" else -1
                else:
                    total, sign = total + sign * (x if token == "x" else int(token)), 1
            return total

        slope = left(1) - left(0)
        if slope:
            x = (int(found[2]) - left(0)) // slope
            return [*_type(rng, _boxes(page)[0], str(x)), _submit(page)]
    raise LookupError("no equation on the page")


def _read_table(utterance: str, page: str, rng: random.Random) -> list[Action]:
    key = re.search(r"value of (.+) into", utterance)
    assert key is not None
    cells = [e for e in parse(page) if e.role == "cell"]
    value = next(cells[i + 1].name for i, c in enumerate(cells[:-1]) if c.name == key[1])
    return [*_type(rng, _boxes(page)[0], value), _submit(page)]


def _text_transform(utterance: str, page: str, rng: random.Random) -> list[Action]:
    elements = parse(page)
    box = next(i for i, e in enumerate(elements) if e.role == "textbox")
    letters = "".join(e.name for e in elements[1:box] if e.role == "StaticText")
    return [*_type(rng, elements[box], letters), _submit(page)]


SOLVERS: dict[str, Callable[[str, str, random.Random], list[Action]]] = {
    "click-button": _click_named("button"),
    "click-button-sequence": _button_sequence,
    "click-checkboxes": _select_boxes("checkbox"),
    "click-checkboxes-large": _select_boxes("checkbox"),
    "click-checkboxes-soft": _similar_boxes,
    "click-link": _click_words,
    "click-option": _select_boxes("radio"),
    "click-tab": _click_tab,
    "click-test": _click_test,
    "click-test-2": _click_test_2,
    "click-widget": _click_widget,
    "choose-list": _choose_list,
    "enter-password": _enter_password,
    "enter-text": _enter_text(lambda s: s),
    "enter-text-2": _enter_text_cased,
    "focus-text": _focus_text,
    "focus-text-2": _focus_text,
    "login-user": _login_user,
    "enter-text-dynamic": _enter_text(lambda s: s),
    "read-table": _read_table,
    "simple-algebra": _algebra,
    "simple-arithmetic": _arithmetic,
    "text-transform": _text_transform,
    "unicode-test": _click_named("button"),
}


class MiniWobExpert(Expert):
    """Plans the page's solution from the first page it sees, then plays it out."""

    plan: list[Action] | None = None
    page = ""
    # Bids whose click was taken back, pressed instead.
    pressed: frozenset[str] = frozenset()

    def act(self, goal: str, page: str, url: str) -> Action | None:
        self.page = page
        if self.plan is None:
            try:
                self.plan = SOLVERS[self.task.params["page"]](goal, page, self.rng)
            except (LookupError, AssertionError, IndexError, TypeError, ValueError):
                return None
        return self.plan.pop(0) if self.plan else None

    def failed(self, action: Action) -> bool:
        """A click that did not land (another element covers the target, as pages that
        place buttons at random may do) is taken back and the element pressed instead,
        which needs no pointer: Space for a box, Enter for the rest. Once for a bid."""
        bid = action[1].get("bid")
        if self.plan is None or action[0] != "click" or bid in self.pressed:
            return False
        self.pressed |= {bid}
        role = next((e.role for e in parse(self.page) if e.bid == bid), "")
        key = "Space" if role in ("checkbox", "radio") else "Enter"
        self.plan.insert(0, ("press", {"bid": bid, "key_comb": key}))
        return True


class MiniWobFamily(Family):
    def __init__(self, page: str) -> None:
        self.page = page
        self.name = f"miniwob.{page}"

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        turns = TURNS.get(self.page, MAX_TURNS)
        return BrowserTask(task_id, self.name, seed, "", {"page": self.page}, turns)

    def validate(self, task: BrowserTask) -> None:
        MiniWobSite(self.page, task.seed)  # refuses a page that does not load

    def _site(self, task: BrowserTask) -> MiniWobSite:
        return MiniWobSite(self.page, task.seed)

    def sites(self, task: BrowserTask) -> dict[str, Site]:
        site = self._site(task)
        return {site.host: site}

    def start_url(self, task: BrowserTask) -> str:
        return self._site(task).url

    async def goal(self, task: BrowserTask, world: Any) -> str:
        site = world.sites[self._site(task).host]
        return task.goal or await site.utterance(world.pages[0])

    async def done(self, task: BrowserTask, world: Any) -> bool:
        if not self._on_task_page(task, world):
            return False
        site = world.sites[self._site(task).host]
        return (await site.status(world.pages[0]))[0]

    def _on_task_page(self, task: BrowserTask, world: Any) -> bool:
        return bool(world.pages) and world.pages[0].url == self.start_url(task)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        if not self._on_task_page(task, world):
            return 0.0, {"reason": "the task's tab left the task's page"}
        site = world.sites[self._site(task).host]
        done, raw, reason = await site.status(world.pages[0])
        return float(done and raw > 0), {"done": done, "raw_reward": raw, "reason": reason}

    def expert(self, task: BrowserTask, seed: int) -> Expert | None:
        if self.page not in SOLVERS:
            return None
        return MiniWobExpert(task, random.Random(seed))


def families() -> list[MiniWobFamily]:
    """A family for every deterministic page; none where the package is missing."""
    try:
        return [MiniWobFamily(page) for page in task_names()]
    except InfraError:
        return []
