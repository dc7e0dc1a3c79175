"""The ``browser`` verifier on a labelled sample: how often each of its rules is right.

Candidates of the bundled trajectories, and at each, actions whose right verdict is
known by construction, grouped by what the expert's turn does:

- navigation (a click that loads another page): accept the expert's and ``goto`` of the
  URL it reaches; reject ``goto`` of the site's home page (elsewhere, unless that is
  where the expert goes);
- form filling (``fill`` / ``select_option``): accept the expert's; accept the next
  field's value filled first where the expert fills it next on the same page; reject the
  same field filled with another value;
- submitting (a click that posts a form): accept the expert's; reject a click on
  another element of the page and doing nothing (``noop``);
- answering: accept the expert's answer and the answer reworded around the same
  value; reject another value;
- and, at every kind, a random other turn of the same conversation (rejected unless it
  does the same).

    python bench/bench_browser_verifier.py [--candidates 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
from collections import Counter
from typing import Any

from report import count_verdict, verdict_report

import pivotgym
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.envs.browser.expert import call
from pivotgym.envs.browser.families.page_text import parse
from pivotgym.envs.browser.verifier import BrowserVerifier
from pivotgym.verifiers.base import restore

# Families whose check reads the answer sent to the user.
ANSWERED = frozenset(
    {
        "shop.order-total",
        "shop.cheapest",
        "tracker.count-open",
        "wiki.fact",
        "wiki.two-hop",
        "wiki.three-hop",
    }
)


def _url(text: str) -> str:
    found = re.search(r"^URL: (\S+)$", text, re.M)
    return found[1] if found else ""


def _act(name: str, **arguments: Any) -> dict[str, Any]:
    return call(name, 0, arguments)


def variants(c: Candidate, rng: random.Random) -> tuple[str, list[tuple[str, bool, dict]]]:
    t = c.trajectory
    function = c.reference["tool_calls"][0]["function"]
    name, arguments = function["name"], json.loads(function["arguments"])
    before = t.prefix(c.turn)[-1]["content"] or ""
    after = t.prefix(c.turn + 1)[-1]["content"] if c.turn + 1 < t.num_turns else ""
    out: list[tuple[str, bool, dict]] = [("the expert's turn", True, c.reference)]
    others = [i for i in range(t.num_turns) if i != c.turn and t.action(i) != c.reference]
    if others:
        other = t.action(rng.choice(others))
        same = other["tool_calls"][0]["function"] == function
        out.append(("another turn of the conversation", same, other))
    if name in ("send_msg_to_user", "report_infeasible"):
        text = arguments.get("text", "")
        value = re.search(r"(\$?[\d,.]+\d|#\d+)", text)
        # Only where the task is checked on the answer: an order placed or an issue filed
        # is checked on the database, whatever the message says.
        if value and c.trajectory.task["family"] in ANSWERED:
            out.append(
                (
                    "the same value, reworded",
                    True,
                    _act("send_msg_to_user", text=f"Here it is: {value[1]}"),
                )
            )
            wrong = value[1][:-1] + str((int(value[1][-1]) + 1) % 10)
            out.append(("another value", False, _act("send_msg_to_user", text=f"It is {wrong}.")))
        return "answering", out
    if name in ("fill", "select_option"):
        elements = {e.bid: e for e in parse(before)}
        target = elements.get(arguments["bid"])
        if name == "fill" and target is not None:
            out.append(
                (
                    "the field with another value",
                    False,
                    _act("fill", bid=arguments["bid"], value=arguments["value"] + "x"),
                )
            )
        nxt = t.action(c.turn + 1) if c.turn + 1 < t.num_turns else None
        if nxt is not None and _url(t.prefix(c.turn + 2)[-1]["content"] or "") == _url(before):
            call_next = nxt["tool_calls"][0]["function"]
            if (
                call_next["name"] in ("fill", "select_option")
                and json.loads(call_next["arguments"])["bid"] != arguments["bid"]
            ):
                out.append(("the next field filled first", True, nxt))
        return "form filling", out
    if name == "click" and _url(after) and _url(after) != _url(before):
        out.append(("goto the URL it reaches", None, _act("goto", url=_url(after))))
        home = _url(before).split("/")[0] + "//" + _url(before).split("/")[2] + "/"
        if home != _url(after):
            out.append(("goto the home page", False, _act("goto", url=home)))
        return "navigation", out
    clickable = [e for e in parse(before) if e.role in ("button", "link")
                 and e.bid != arguments.get("bid")]  # fmt: skip
    if clickable:
        other = rng.choice(clickable)
        out.append(("a click on another element", False, _act("click", bid=other.bid)))
    out.append(("nothing (noop)", False, _act("noop", wait_ms=0)))
    return "in-page action", out


async def measure(n: int, seed: int) -> dict[str, dict[str, int]]:
    trajectories = pivotgym.load_trajectories("browser", split="train")
    rng = random.Random(seed)
    pool = list(candidates(rng.sample(trajectories, min(len(trajectories), n))))
    chosen = rng.sample(pool, min(n, len(pool)))
    verifier = BrowserVerifier()
    env = pivotgym.make("browser", tasks=[])
    tally: dict[str, Counter] = {}
    try:
        for candidate in chosen:
            state = await restore(env, candidate)
            kind, labelled = variants(candidate, rng)
            for label, accept, action in labelled:
                verdict = await verifier.verify(state, action, candidate.reference)
                if accept is None:
                    # A typed URL reaches the page a link does; where the click posted a
                    # form (a login, an order) it does not do what the click did.
                    accept = _same_page_by_get(candidate)
                    label = f"{label} ({'a link' if accept else 'a form post'})"
                count_verdict(tally, f"{kind}: {label}", accept, verdict)
    finally:
        await env.aclose()
    return {k: dict(c) for k, c in tally.items()}


def _same_page_by_get(c: Candidate) -> bool:
    """Whether the expert's click loaded its page with a ``GET`` (a link, or the apps'
    search forms, which are the only forms they send by ``GET``) rather than posting."""
    arguments = json.loads(c.reference["tool_calls"][0]["function"]["arguments"])
    before = c.trajectory.prefix(c.turn)[-1]["content"] or ""
    return any(
        e.bid == arguments["bid"] and (e.role == "link" or e.name == "Search")
        for e in parse(before)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tally = asyncio.run(measure(args.candidates, args.seed))
    verdict_report("browser_verifier", tally, candidates=args.candidates)


if __name__ == "__main__":
    main()
