"""The tool-API verifier on a labelled sample: how often its verdict is the right one.

The sample is made from the bundled trajectories' candidates by edits whose right
verdict is known by construction:

- accept: the expert's calls with their arguments reordered and re-encoded (numbers as
  strings where the schema allows it), the expert's question reworded to ask for the
  same facts, its request to confirm with a preamble, its message reworded around the
  same facts;
- reject: one identifier argument changed to another (a different record), one call of
  a parallel group dropped, a message where the expert called tools, a tool call where
  the expert spoke, the expert's message with one fact removed or a dozen numbers
  added, its request to confirm turned into a statement (the user would not say yes).

    python bench/bench_tool_verifier.py [--candidates 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
from collections import Counter

from report import count_verdict, verdict_report

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.envs.tools.domain import get_domain
from pivotgym.envs.tools.env import ToolsEnv
from pivotgym.envs.tools.user import asked_facts
from pivotgym.envs.tools.verifier import ToolApi
from pivotgym.verifiers.base import restore
from pivotgym.verifiers.dialogue import CONFIRM, facts

ID = re.compile(r"^([A-Z]+-?)(\d+)$")


def _message(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _with_calls(reference: dict, calls: list[dict]) -> dict:
    return {"role": "assistant", "content": reference.get("content"), "tool_calls": calls}


def variants(reference: dict, domain, rng: random.Random) -> list[tuple[str, bool, dict]]:
    out: list[tuple[str, bool, dict]] = []
    calls = reference.get("tool_calls") or []
    if calls:
        reordered = []
        for call in reversed(calls):
            args = json.loads(call["function"]["arguments"])
            items = list(args.items())
            rng.shuffle(items)
            encoded = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                       for k, v in items}  # fmt: skip
            function = {"name": call["function"]["name"], "arguments": json.dumps(encoded)}
            reordered.append({**call, "function": function})
        out.append(("calls reordered and re-encoded", True, _with_calls(reference, reordered)))
        for i, call in enumerate(calls):
            args = json.loads(call["function"]["arguments"])
            for key, value in args.items():
                match = ID.match(value) if isinstance(value, str) else None
                if match:
                    other = f"{match.group(1)}{int(match.group(2)) + 1:0{len(match.group(2))}d}"
                    changed = [dict(c) for c in calls]
                    function = {"name": call["function"]["name"],
                                "arguments": json.dumps({**args, key: other})}  # fmt: skip
                    changed[i] = {**call, "function": function}
                    out.append(("an identifier changed", False, _with_calls(reference, changed)))
                    break
            else:
                continue
            break
        if len(calls) > 1:
            out.append(("a call of the group dropped", False, _with_calls(reference, calls[1:])))
        out.append(("a message instead of calls", False, _message("Let me check that for you.")))
        return out
    text = reference.get("content") or ""
    confirming = "?" in text and CONFIRM.search(text.lower())
    asked = asked_facts(domain, text) if "?" in text and not confirming else []
    if confirming:
        statement = text[: text.rindex(".") + 1] if "." in text else text.replace("?", ".")
        out.append(("the confirmation reworded", True, _message("Before I do it: " + text)))
        out.append(("the confirmation as a statement", False, _message(statement)))
    elif asked:
        labels = " and ".join(domain.facts[name].label for name in asked)
        question = _message(f"Please tell me your {labels}?")
        out.append(("the same facts asked otherwise", True, question))
    else:
        found = sorted(facts(text))
        if found:
            sentences = [x.strip() for x in re.split(r"(?<=[.:;])\s+", text) if x.strip()]
            reworded = "Thank you for waiting. " + " ".join(reversed(sentences))
            out.append(("the message reworded", True, _message(reworded)))
            dropped = text.replace(rng.choice(found), "it")
            out.append(("one fact removed", False, _message(dropped)))
            stuffed = text + " Reference: " + " ".join(str(rng.randrange(100)) for _ in range(12))
            out.append(("the message stuffed with numbers", False, _message(stuffed)))
    function = {"name": domain.tools[0]["function"]["name"], "arguments": "{}"}
    call = {"id": "x", "type": "function", "function": function}
    out.append(("calls instead of a message", False, _with_calls({"content": None}, [call])))
    return out


async def measure(n: int, seed: int) -> dict:
    trajectories = pivotgym.load_trajectories("tools", split="train")
    pool = candidates(trajectories)
    rng = random.Random(seed)
    chosen = rng.sample(pool, min(n, len(pool)))
    verifier = ToolApi()
    env = ToolsEnv()
    tally: dict[str, Counter] = {}
    for candidate in chosen:
        state = await restore(env, candidate)
        domain = get_domain(candidate.trajectory.metadata["domain"])
        for kind, accept, action in variants(candidate.reference, domain, rng):
            verdict = await verifier.verify(state, action, candidate.reference)
            count_verdict(tally, kind, accept, verdict)
    await env.aclose()
    return {kind: dict(c) for kind, c in tally.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tally = asyncio.run(measure(args.candidates, args.seed))
    verdict_report("tool_verifier", tally, candidates=args.candidates)


if __name__ == "__main__":
    main()
