"""The SWE env's costs beside their floors, on the bundled suite, in one run.

1. ``fork(8)`` of a repository sandbox (boltons, the largest repository) against the
   bare floor: eight sandboxes of the same task started at once, each copying the
   repository (target: within 2x);
2. reset to the last turn of the longest bundled trajectory with a cold cache (replay
   from the task's start) and again with a warm one; and every turn of the first
   ``--trajectories`` bundled trajectories restored in order through one cache, with the
   most steps any turn replayed (target: at most one);
3. the ``swe`` verifier's cost for a sample it must grade by running the tests (an edit
   equivalent to the expert's fix, other code) against running the same test files
   directly in a sandbox of the fixed tree (target: within 1.2x);
4. 16 episodes at once, each replaying a bundled trajectory's actions as its policy:
   failures (target: none), rewards and wall-clock.

    python bench/bench_swe.py [--backend bwrap|docker] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from report import print_table, ratio_line, write_json

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.envs.swe.tasks import materialize
from pivotgym.envs.swe.verifier import SWEVerifier
from pivotgym.verifiers.base import State

med = statistics.median


async def fork_vs_floor(backend: str, rounds: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("swe", split="train")
    trajectory = next(t for t in train if t.task["repo"] == "boltons")
    env = pivotgym.make("swe", tasks=[], sandbox=backend)
    await env.areset(options={"trajectory": trajectory, "turn": 2})
    spec = env.spec_for(env.task)
    forks, floor = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        worlds = await env.world.fork(8)
        await asyncio.gather(*(w.sandbox.exec(["true"]) for w in worlds))
        forks.append(time.perf_counter() - start)
        await asyncio.gather(*(w.close() for w in worlds))
        start = time.perf_counter()
        boxes = await asyncio.gather(*(env.backend.create(spec) for _ in range(8)))
        await asyncio.gather(*(b.exec(["true"]) for b in boxes))
        floor.append(time.perf_counter() - start)
        await asyncio.gather(*(b.close() for b in boxes))
    await env.aclose()
    files = sum(1 for p in materialize(env.task).rglob("*") if p.is_file())
    return {"fork8_s": forks, "floor_s": floor, "repo_files": files,
            "ratio": med(forks) / med(floor)}  # fmt: skip


async def restores(backend: str, n: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("swe", split="train")
    longest = max(train, key=lambda t: t.num_turns)
    cold_env = pivotgym.make("swe", tasks=[], sandbox=backend)
    start = time.perf_counter()
    await cold_env.areset(options={"trajectory": longest, "turn": longest.num_turns})
    cold = time.perf_counter() - start
    start = time.perf_counter()
    await cold_env.areset(options={"trajectory": longest, "turn": longest.num_turns})
    warm = time.perf_counter() - start
    await cold_env.aclose()
    env = pivotgym.make("swe", tasks=[], sandbox=backend)
    most, turns = 0, 0
    for trajectory in train[:n]:
        for turn in range(trajectory.num_turns + 1):
            _, info = await env.areset(options={"trajectory": trajectory, "turn": turn})
            most = max(most, info["replayed_steps"])
            turns += 1
    await env.aclose()
    return {"turns": longest.num_turns, "cold_s": cold, "warm_s": warm, "restored_turns": turns,
            "most_replayed_in_a_turn": most}  # fmt: skip


async def verifier_cost(backend: str, rounds: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("swe", split="train")
    trajectory = next(t for t in train if t.task["repo"] == "inflection")
    fix_turn = max(c.turn for c in candidates([trajectory])
                   if '"str_replace"' in str(c.reference.get("tool_calls")))  # fmt: skip
    candidate = next(c for c in candidates([trajectory]) if c.turn == fix_turn)
    env = pivotgym.make("swe", tasks=[], sandbox=backend)
    await env.areset(options={"trajectory": trajectory, "turn": fix_turn})
    state = State(candidate, list(env.tools), env=env, task=env.task)
    reference = candidate.reference
    call = reference["tool_calls"][0]
    arguments = json.loads(call["function"]["arguments"])
    indent = arguments["new_str"][: len(arguments["new_str"]) - len(arguments["new_str"].lstrip())]
    other = dict(arguments, new_str=f"{indent}_unused = None\n{arguments['new_str']}")
    sample = {**reference, "tool_calls": [{**call, "function": {**call["function"],
              "arguments": json.dumps(other)}}]}  # fmt: skip
    verifier = SWEVerifier()
    await verifier.verify(state, sample, reference)  # grades the expert's outcome once
    timed, direct = [], []
    fixed = (await env.afork(1))[0]
    await fixed.call_tool(call["function"]["name"], arguments)
    for _ in range(rounds):
        start = time.perf_counter()
        verdict = await verifier.verify(state, sample, reference)
        timed.append(time.perf_counter() - start)
        assert verdict.reward == 1.0, verdict
        start = time.perf_counter()
        await fixed.sandbox.exec(["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                  "--no-header", "--tb=no", "--show-capture=no", "-rfEsxXp",
                                  *env.task.test_files])  # fmt: skip
        direct.append(time.perf_counter() - start)
    await fixed.aclose()
    await env.aclose()
    return {"verify_s": timed, "tests_directly_s": direct, "ratio": med(timed) / med(direct)}


async def concurrent(backend: str, n: int = 16) -> dict[str, Any]:
    train = pivotgym.load_trajectories("swe", split="train")[:n]

    async def play(trajectory: Any) -> tuple[float, str | None]:
        env = pivotgym.make("swe", tasks=[], sandbox=backend)
        try:
            await env.areset(options={"trajectory": trajectory, "turn": 0})
            reward, error = 0.0, None
            for turn in range(trajectory.num_turns):
                _, reward, term, trunc, info = await env.astep(trajectory.action(turn))
                error = error or info.get("infra_error")
                if term or trunc:
                    break
            return reward, error
        finally:
            await env.aclose()

    start = time.perf_counter()
    results = await asyncio.gather(*(play(t) for t in train), return_exceptions=True)
    wall = time.perf_counter() - start
    failures = [str(r) for r in results if isinstance(r, BaseException) or r[1]]
    rewards = [r[0] for r in results if not isinstance(r, BaseException)]
    return {"episodes": n, "failures": failures, "resolved": sum(r == 1.0 for r in rewards),
            "wall_s": wall}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trajectories", type=int, default=20)
    args = parser.parse_args()

    async def everything() -> dict[str, Any]:
        return {
            "fork": await fork_vs_floor(args.backend, args.rounds),
            "restore": await restores(args.backend, args.trajectories),
            "verifier": await verifier_cost(args.backend, args.rounds),
            "concurrent": await concurrent(args.backend),
        }

    report = asyncio.run(everything())
    f, r, v, c = report["fork"], report["restore"], report["verifier"], report["concurrent"]
    print_table(["measure", "pivotgym", "floor / other", "ratio"], [
        ["fork(8) of a repository sandbox (s)", med(f["fork8_s"]), med(f["floor_s"]), f["ratio"]],
        [f"reset to turn {r['turns']}: warm vs cold cache (s)", r["warm_s"], r["cold_s"],
         r["warm_s"] / r["cold_s"]],
        ["verifier per graded sample vs tests directly (s)", med(v["verify_s"]),
         med(v["tests_directly_s"]), v["ratio"]],
    ])  # fmt: skip
    print(ratio_line("fork(8) vs floor", f["ratio"], 2.0))
    print(ratio_line("verifier vs tests directly", v["ratio"], 1.2))
    print(f"restored {r['restored_turns']} turns; at most {r['most_replayed_in_a_turn']} "
          "step(s) replayed for one turn")  # fmt: skip
    print(f"{c['episodes']} concurrent episodes: {len(c['failures'])} failures, "
          f"{c['resolved']} resolved, {c['wall_s']:.1f} s")  # fmt: skip
    write_json(f"swe_{args.backend}", report)


if __name__ == "__main__":
    main()
