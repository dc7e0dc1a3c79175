"""The τ² env's costs beside τ²'s own, on τ²'s packaged airline and retail tasks.

Conversations are the gold actions of each domain's train tasks played through the env
(one call a turn, as ``tests/test_tau2.py`` builds them). Side by side, in one run:

1. ``restore``: reset to every turn of every conversation through one snapshot cache,
   vs τ²'s ``set_state`` from a fresh environment at every turn (what τ² does to reach
   a state: parse the database, replay the prefix);
2. ``fork``: fork(8) of a restored state vs eight such ``set_state`` replays;
3. ``step``: one env step of a read tool vs calling τ²'s toolkit directly.

    python bench/bench_tau2.py [--tasks 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

from report import print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_tau2 import call, gold_trajectory

import pivotgym
from pivotgym.envs.tau2.domain import get_domain
from pivotgym.envs.tau2.messages import to_tau2


def tau2_set_state(domain: str, messages: list, names: set) -> float:
    start = time.perf_counter()
    environment = get_domain(domain).environment()
    environment.set_state(None, None, to_tau2(messages, names))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10, help="train tasks per domain")
    args = parser.parse_args()
    rows, report = [], {}
    for domain in ("airline", "retail"):
        names = {t["function"]["name"] for t in get_domain(domain).tools}
        models = [t for t in get_domain(domain).tasks("train") if t.evaluation_criteria.actions]
        trajectories = [gold_trajectory(domain, m) for m in models[: args.tasks]]
        env = pivotgym.make("tau2", domain=domain)
        ours, theirs = [], []
        for t in trajectories:
            for turn in range(t.num_turns + 1):
                start = time.perf_counter()
                env.reset(options={"trajectory": t, "turn": turn})
                ours.append(time.perf_counter() - start)
                theirs.append(tau2_set_state(domain, t.prefix(turn), names))
        longest = max(trajectories, key=lambda t: t.num_turns)
        env.reset(options={"trajectory": longest, "turn": longest.num_turns})
        forks, replays = [], []
        for _ in range(5):
            start = time.perf_counter()
            branches = env.fork(8)
            forks.append(time.perf_counter() - start)
            for b in branches:
                b.close()
            replays.append(sum(tau2_set_state(domain, env.messages, names) for _ in range(8)))
        read = next(
            a
            for m in models
            for a in m.evaluation_criteria.actions or []
            if get_domain(domain).tool_type(a.name) == "read"
        )
        steps, direct = [], []
        toolkit = get_domain(domain).environment().tools
        for _ in range(50):
            branch = env.fork(1)[0]
            start = time.perf_counter()
            branch.step(call(read.name, read.arguments))
            steps.append(time.perf_counter() - start)
            branch.close()
            start = time.perf_counter()
            with contextlib.suppress(Exception):  # a gold read meant to fail costs the same
                toolkit.use_tool(read.name, **read.arguments)
            direct.append(time.perf_counter() - start)
        env.close()
        med = statistics.median
        figures = {
            "restores": len(ours),
            "restore_ms": 1000 * med(ours),
            "tau2_set_state_ms": 1000 * med(theirs),
            "replayed_calls": env.cache.replayed_steps,
            "fork8_ms": 1000 * med(forks),
            "tau2_8_set_state_ms": 1000 * med(replays),
            "step_ms": 1000 * med(steps),
            "toolkit_ms": 1000 * med(direct),
            "read_tool": read.name,
        }
        report[domain] = figures
        rows += [
            (
                domain,
                "restore a turn (median)",
                figures["restore_ms"],
                figures["tau2_set_state_ms"],
            ),
            (domain, "fork(8) / 8 set_state", figures["fork8_ms"], figures["tau2_8_set_state_ms"]),
            (domain, f"step {read.name} / toolkit", figures["step_ms"], figures["toolkit_ms"]),
        ]
    print_table(("domain", "operation", "pivotgym ms", "τ² ms"), rows)
    print(json.dumps(report, indent=1))
    write_json("tau2", report)


if __name__ == "__main__":
    main()
