"""The ``swe`` verifier on a labelled sample: how often each of its rules is right.

Candidates of the bundled trajectories, and at each, actions whose right verdict is
known by construction, grouped by the rule that judges them (what the expert's turn
is):

- edit: accept the expert's edit, the same edit with a comment added (the same syntax
  tree) and with a statement that does nothing after it (another tree, the same tests'
  outcome); reject a wrong fix (a bug of the same kind elsewhere in the function) and an
  edit of the tests instead;
- test run: accept the expert's, and ``python -m pytest FILE`` of the failing test's
  file; reject the same file collected only, a run of another test, and ``ls``;
- exploration: accept the expert's, and a view of the function's whole module around it
  (a wider range); reject a view of another module;
- and, at every kind, a random other turn of the same conversation (rejected unless it
  is the same action).

A state whose replay diverges (a test that draws random numbers prints other values
each run) is counted apart and left out.

    python bench/bench_swe_verifier.py [--candidates 120]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import shlex
from collections import Counter
from typing import Any

from report import count_verdict, verdict_report

import pivotgym
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.envs.swe.expert import replacement
from pivotgym.envs.swe.mutate import mutations
from pivotgym.envs.swe.tasks import materialize, task_from_json
from pivotgym.envs.swe.verifier import SWEVerifier, pytest_runs, takes_in
from pivotgym.errors import DivergenceError
from pivotgym.verifiers.base import restore


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "v", "type": "function", "function": function}]}  # fmt: skip


def variants(candidate: Candidate, rng: random.Random) -> tuple[str, list[tuple[str, bool, dict]]]:
    reference = candidate.reference
    call = reference["tool_calls"][0]["function"]
    name, arguments = call["name"], json.loads(call["arguments"])
    task = task_from_json(candidate.trajectory.task)
    mutation = task.extra["mutation"]
    out: list[tuple[str, bool, dict]] = [("the expert's turn", True, reference)]
    others = [candidate.trajectory.action(t) for t in range(candidate.trajectory.num_turns)
              if t != candidate.turn]  # fmt: skip
    others = [a for a in others if a["tool_calls"][0]["function"] != call]
    other = rng.choice(others) if others else None
    later = [candidate.trajectory.action(t) for t in range(candidate.turn + 1,
             candidate.trajectory.num_turns)]  # fmt: skip
    taken_back = any('"undo_edit"' in a["tool_calls"][0]["function"]["arguments"] for a in later)
    if name == "str_replace_editor" and arguments["command"] == "str_replace" and taken_back:
        kind = "edit, a wrong guess"
    elif name == "str_replace_editor" and arguments["command"] == "str_replace":
        kind = "edit"
        commented = dict(arguments, new_str=arguments["new_str"] + "  # fixed")
        out.append(("the edit with a comment", True, _call(name, **commented)))
        last = arguments["new_str"].rsplit("\n", 1)[-1]
        indent = last[: len(last) - len(last.lstrip())]
        padded = dict(arguments, new_str=f"{arguments['new_str']}\n{indent}pass")
        buggy = (materialize(task) / mutation["module"]).read_text()
        if _parses(buggy.replace(arguments["old_str"], padded["new_str"])):
            # a statement that does nothing after the fix (where one can stand there)
            out.append(("the edit and a statement that does nothing", True, _call(name, **padded)))
        wrong = [m for m in mutations(buggy, mutation["function"])
                 if not (m.start <= mutation["start"] < m.end)]  # fmt: skip
        if wrong:
            m = rng.choice(wrong)
            old, new = replacement(buggy, m.start, m.end, m.text)
            out.append(("a wrong fix", False, _call(name, command="str_replace",
                        path=arguments["path"], old_str=old, new_str=new)))  # fmt: skip
        test_file = task.fail_to_pass[0].split("::")[0]
        out.append(("an edit of the tests", False, _call(
            "bash", command=f"sed -i 's/assert /assert True or /' {test_file}")))  # fmt: skip
    elif name == "bash" and pytest_runs(arguments.get("command", "")):
        kind = "test run"
        if other is not None:
            # Another run of the failing tests shows the same; anything else does not.
            runs_them = _runs_failing_tests(task, other)
            out.append(("another turn" + (", a run of the failing tests" if runs_them else ""),
                        runs_them, other))  # fmt: skip
            other = None
        test_file = task.fail_to_pass[0].split("::")[0]
        out.append(("the failing test's file", True, _call(
            "bash", command=f"python -m pytest {test_file}")))  # fmt: skip
        out.append(("its file, collected only", False, _call(
            "bash", command=f"python -m pytest --collect-only -q {test_file}")))  # fmt: skip
        if task.pass_to_pass:
            passing = rng.choice(task.pass_to_pass)
            out.append(("another test", False, _call(
                "bash", command=f"python -m pytest {shlex.quote(passing)}")))  # fmt: skip
        out.append(("ls instead", False, _call("bash", command="ls")))
    elif name == "submit":
        kind = "submit"
    else:
        kind = "exploration"
        if name == "str_replace_editor" and arguments.get("view_range"):
            first, last = arguments["view_range"]
            wider = dict(arguments, view_range=[max(1, first - 10), last])
            out.append(("a wider view", True, _call(name, **wider)))
        path = f"/testbed/{task.test_files[0]}"
        out.append(("a view of another file", False, _call(name="str_replace_editor",
                    command="view", path=path, view_range=[1, 20])))  # fmt: skip
    if other is not None:
        out.append(("another turn", False, other))
    return kind, out


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def _runs_failing_tests(task: Any, action: dict) -> bool:
    call = action["tool_calls"][0]["function"]
    if call["name"] != "bash":
        return False
    command = json.loads(call["arguments"]).get("command", "")
    return any(not narrows and any(takes_in(tests, t) for t in task.fail_to_pass)
               for tests, narrows in pytest_runs(command))  # fmt: skip


async def measure(n: int, seed: int) -> tuple[dict[str, dict[str, int]], list[str]]:
    trajectories = pivotgym.load_trajectories("swe", split="train")
    rng = random.Random(seed)
    pool = list(candidates(rng.sample(trajectories, min(len(trajectories), n))))
    chosen = rng.sample(pool, min(n, len(pool)))
    verifier = SWEVerifier()
    env = pivotgym.make("swe", tasks=[])
    tally: dict[str, Counter] = {}
    diverged: list[str] = []
    for candidate in chosen:
        try:
            state = await restore(env, candidate)
        except DivergenceError:  # a test whose output varies from run to run (module doc)
            diverged.append(candidate.id)
            continue
        kind, labelled = variants(candidate, rng)
        for label, accept, action in labelled:
            verdict = await verifier.verify(state, action, candidate.reference)
            count_verdict(tally, f"{kind}: {label}", accept, verdict)
    await env.aclose()
    return {k: dict(c) for k, c in tally.items()}, diverged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tally, diverged = asyncio.run(measure(args.candidates, args.seed))
    print(f"states left out, their replay diverged: {len(diverged)} {diverged}")
    verdict_report("swe_verifier", tally, candidates=args.candidates, diverged=diverged)


if __name__ == "__main__":
    main()
