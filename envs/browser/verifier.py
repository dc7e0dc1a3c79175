"""The browser env's one-turn functional verifier (its default: ``browser``).

The sampled turn and the expert's run in two forks of the restored world (the
expert's once a state, kept for the state's other samples), and their effects are
compared, whatever path the actions took:

- **the same effect** passes: every site's database holds the same rows, the tabs show
  the same URLs, and the current page reads the same (its text, bids aside: a link
  clicked and its URL typed reach the same page; a value picked from a list and typed
  into it fill the same form);
- **a later step, taken earlier**, passes: where the expert's turn and the sample's
  only fill in the current page (no database change, no navigation), a sample whose
  every changed field takes the value the expert gives that field further on, on the
  same page, is the expert's work in another order (the password before the user name);
- **an answer** (``send_msg_to_user``, ``report_infeasible``) passes when the expert's
  turn answers too and the task's own check accepts the sample's answer in its fork
  (or, where the expert's own answer fails the check, when the answers are the same);
- an action that fails (no such bid, a hidden element) or changes nothing where the
  expert's changes something fails, as does anything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pivotgym.envs.browser.actions import CHAT
from pivotgym.envs.browser.families import get_family
from pivotgym.envs.browser.families.page_text import parse
from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, infra, passed

KEPT = 256  # states whose expert turn is kept
_BID = re.compile(r"^(\s*)\[[^\]]+\] ", re.M)
_FIELDS = ("textbox", "searchbox", "combobox", "checkbox", "radio", "spinbutton", "slider")


@dataclass(frozen=True)
class Effect:
    """What a turn left: the databases, the tabs, the current page's text (bids aside),
    its form fields, the messages sent, and whether every call ran."""

    databases: str
    urls: tuple[str, ...]
    active: int
    page: str
    fields: tuple[tuple[str, str, str], ...]
    messages: tuple[str, ...]
    failed: bool


def fields_of(page: str) -> tuple[tuple[str, str, str], ...]:
    """The page's form fields in order: role, name and value (or checked state)."""
    out = []
    for element in parse(page):
        if element.role in _FIELDS:
            state = str(element.checked) if element.role in ("checkbox", "radio") else element.value
            out.append((element.role, element.name, state))
    return tuple(out)


async def effect_of(env: Any, failed_calls: bool) -> Effect:
    world = env.world
    digest = hashlib.sha256()
    for host in sorted(world.databases):
        for line in world.databases[host].iterdump():
            digest.update(line.encode())
    page = (await world.mark(max_chars=env.options.max_page_chars))["text"]
    return Effect(
        digest.hexdigest(),
        tuple(p.url for p in world.pages),
        world.active,
        _BID.sub(r"\1", page),
        fields_of(page),
        tuple(world.messages),
        failed_calls,
    )


async def _run(env: Any, calls: list[Call]) -> Effect:
    failed_calls = False
    for call in calls:
        try:
            _, info = await env.call_tool(call.name, call.arguments)
            failed_calls |= info.get("error") == "action_failed"
        except ValueError:
            failed_calls = True
    return await effect_of(env, failed_calls)


def later_fields(state: State) -> dict[tuple[str, str], set[str]]:
    """The values the expert's trajectory gives each field of the current page from this
    turn on, while it stays on the page (by the URL its observations show)."""
    trajectory, turn = state.candidate.trajectory, state.candidate.turn
    here = _url(state.prefix[-1].get("content") or "")
    values: dict[tuple[str, str], set[str]] = {}
    for later in range(turn, trajectory.num_turns):
        for message in trajectory.tool_results(later):
            text = message.get("content") or ""
            if _url(text) != here:
                return values
            for role, name, value in fields_of(text):
                values.setdefault((role, name), set()).add(value)
    return values


def _url(observation: str) -> str | None:
    found = re.search(r"^URL: (\S+)$", observation, re.M)
    return found[1] if found else None


class BrowserVerifier(Verifier):
    name = "browser"

    def __init__(self) -> None:
        self._expert: dict[str, tuple[Effect, float]] = {}

    async def check(
        self,
        state: State,
        action: dict[str, Any],
        calls: list[Call],
        reference: dict[str, Any],
        reference_calls: list[Call],
    ) -> Verdict:
        env = state.env
        if getattr(env, "world", None) is None or not hasattr(env.world, "databases"):
            return infra("browser needs a browser environment restored at s_t")
        if not reference_calls:
            return passed("no call, as the expert") if not calls else failed("calls a tool")
        if not calls:
            return failed("the expert acts; the sample calls no tool")
        key = json.dumps(
            [state.key, [[c.name, c.arguments] for c in reference_calls]], sort_keys=True
        )
        expert = self._expert.get(key)
        forks = await env.afork(1 if expert else 2)
        try:
            before = await effect_of(env, False)
            if expert is None:
                mine, theirs = await asyncio.gather(
                    _run(forks[0], calls), self._expert_run(forks[1], reference_calls)
                )
                if len(self._expert) >= KEPT:
                    del self._expert[next(iter(self._expert))]
                self._expert[key] = expert = theirs
            else:
                mine = await _run(forks[0], calls)
            theirs_effect, theirs_check = expert
            if mine.failed:
                return failed("an action of the sample failed")
            if any(c.name in CHAT for c in reference_calls):
                return await self._answer(forks[0], calls, mine, theirs_effect, theirs_check)
            if any(c.name in CHAT for c in calls):
                return failed("answers where the expert acts")
            if mine == theirs_effect:
                return passed("the same effect as the expert's turn")
            if mine == before:
                return failed("changes nothing where the expert's turn does")
            same_place = (
                mine.databases == before.databases == theirs_effect.databases
                and mine.urls == before.urls == theirs_effect.urls
            )
            if same_place and self._fills_ahead(state, before, mine):
                return passed("fills what the expert fills later on this page")
            return failed(
                "another effect than the expert's turn",
                urls=list(mine.urls),
                expert_urls=list(theirs_effect.urls),
            )
        finally:
            for fork in forks:
                await fork.aclose()

    @staticmethod
    async def _expert_run(fork: Any, calls: list[Call]) -> tuple[Effect, float]:
        effect = await _run(fork, calls)
        reward = 0.0
        if any(c.name in CHAT for c in calls):
            reward, _ = await get_family(fork.world.task.family).check(fork.world.task, fork.world)
        return effect, reward

    @staticmethod
    async def _answer(
        fork: Any, calls: list[Call], mine: Effect, theirs: Effect, expert_reward: float
    ) -> Verdict:
        if not any(c.name in CHAT for c in calls):
            return failed("acts where the expert answers")
        if expert_reward < 1.0:
            same = mine.messages == theirs.messages
            return passed("the expert's answer") if same else failed("another answer")
        task = fork.world.task
        reward, info = await get_family(task.family).check(task, fork.world)
        if reward >= 1.0:
            return passed("an answer the task's check accepts")
        return failed(f"an answer the task's check refuses: {info.get('reason', '')}")

    @staticmethod
    def _fills_ahead(state: State, before: Effect, mine: Effect) -> bool:
        if len(before.fields) != len(mine.fields):
            return False
        changed = [(a, b) for a, b in zip(before.fields, mine.fields, strict=True) if a != b]
        if not changed or any(a[:2] != b[:2] for a, b in changed):
            return False
        ahead = later_fields(state)
        return all(b[2] in ahead.get(b[:2], set()) for _, b in changed)
