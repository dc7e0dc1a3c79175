"""The τ² verifier on a labelled sample: how often its verdict is the right one.

The sample is made from the candidates of the expert's trajectories (the env's ``train``
split) by edits whose right verdict is known by construction:

- accept: the expert's own turn; its calls' arguments reordered; a look-up of the same
  user by email where the expert looked them up by name and zip code; its question
  asking for the same facts in other words; its request to confirm, or its other
  messages, with a preamble;
- reject: another turn of the same conversation (where it differs from this one); an
  identifier argument changed to another record of the same table; a message where
  the expert called a tool; a call where the expert spoke; the expert's message with
  one fact left out; its request to confirm turned into a statement.

    python bench/bench_tau2_verifier.py [--candidates 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from typing import Any

from report import count_verdict, verdict_report

import pivotgym
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.envs.tau2.domain import get_domain
from pivotgym.envs.tau2.user import FACTS, asked_facts
from pivotgym.envs.tau2.verifier import TAU2_FACT, Tau2Verifier
from pivotgym.verifiers.base import restore
from pivotgym.verifiers.dialogue import asks_to_confirm

TABLES = {"order_id": "orders", "user_id": "users", "reservation_id": "reservations"}


def _message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _calling(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "v", "type": "function", "function": function}]}  # fmt: skip


def variants(candidate: Candidate, rng: random.Random) -> list[tuple[str, bool, dict]]:
    reference = candidate.reference
    trajectory = candidate.trajectory
    db = get_domain(trajectory.task["domain"]).pristine.tools.db
    out: list[tuple[str, bool, dict]] = [("the expert's turn", True, reference)]
    mine = json.dumps(reference, sort_keys=True)
    others = [trajectory.action(t) for t in range(1, trajectory.num_turns)]
    others = [a for a in others if json.dumps(a, sort_keys=True) != mine]
    if others:
        out.append(("another turn of the conversation", False, rng.choice(others)))
    calls = reference.get("tool_calls") or []
    if calls:
        name = calls[0]["function"]["name"]
        arguments = json.loads(calls[0]["function"]["arguments"])
        shuffled = list(arguments.items())
        rng.shuffle(shuffled)
        out.append(("arguments reordered", True, _calling(name, dict(shuffled))))
        if name == "find_user_id_by_name_zip":
            users = [u for u in db.users.values()
                     if u.name.first_name == arguments["first_name"]
                     and u.name.last_name == arguments["last_name"]
                     and u.address.zip == arguments["zip"]]  # fmt: skip
            if users:
                out.append(
                    (
                        "the same user by email",
                        True,
                        _calling("find_user_id_by_email", {"email": users[0].email}),
                    )
                )
        for key, table in TABLES.items():
            if key in arguments and hasattr(db, table):
                other = rng.choice([k for k in getattr(db, table) if k != arguments[key]])
                out.append(("an identifier changed", False,
                            _calling(name, {**arguments, key: other})))  # fmt: skip
                break
        out.append(("a message instead of a call", False, _message("Let me check that.")))
        return out
    text = reference.get("content") or ""
    asked = [] if asks_to_confirm(text) else asked_facts(text)
    if asks_to_confirm(text):
        out.append(("the confirmation with a preamble", True, _message("Thanks. " + text)))
        statement = text[: text.rindex(".") + 1] if "." in text else text.replace("?", ".")
        out.append(("the confirmation as a statement", False, _message(statement)))
    elif asked and "?" in text:
        labels = " and ".join(FACTS[f].label for f in asked)
        out.append(("the same facts asked otherwise", True, _message(f"May I have your {labels}?")))
    else:
        out.append(("the message with a preamble", True, _message("Thanks for waiting. " + text)))
        found = [m.group(0) for m in TAU2_FACT.finditer(text)]
        if found:
            dropped = text.replace(rng.choice(found), "it")
            out.append(("one fact left out", False, _message(dropped)))
    out.append(("a call instead of a message", False,
                _calling("calculate", {"expression": "1 + 1"})))  # fmt: skip
    return out


async def measure(n: int, seed: int) -> dict[str, dict[str, int]]:
    trajectories = pivotgym.load_trajectories("tau2", split="train")
    pool = candidates(trajectories)
    rng = random.Random(seed)
    chosen = rng.sample(pool, min(n, len(pool)))
    verifier = Tau2Verifier()
    envs = {d: pivotgym.make("tau2", domain=d) for d in ("airline", "retail")}
    tally: dict[str, Counter] = {}
    for candidate in chosen:
        state = await restore(envs[candidate.trajectory.task["domain"]], candidate)
        for kind, accept, action in variants(candidate, rng):
            verdict = await verifier.verify(state, action, candidate.reference)
            count_verdict(tally, kind, accept, verdict)
    for env in envs.values():
        await env.aclose()
    return {kind: dict(c) for kind, c in tally.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tally = asyncio.run(measure(args.candidates, args.seed))
    verdict_report("tau2_verifier", tally, candidates=args.candidates)


if __name__ == "__main__":
    main()
