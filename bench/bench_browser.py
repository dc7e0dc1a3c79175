"""The browser env's costs beside their floors, on the bundled apps' data, in one run.

1. ``fork(8)`` of a world (a shop checkout, logged in, a form half filled) against the
   issue's floor, eight bare new contexts plus eight copies of the shop's database
   (target: within 2x), and against a floor that also loads the page in each context;
2. reset to the last turn of the longest bundled trajectory with a cold cache (replay
   from the task's start) and with a warm one; every turn of the first
   ``--trajectories`` trajectories restored in order through one cache, with the most
   steps any turn replayed (target: at most one);
3. the ``browser`` verifier's cost per sample (an equivalent action: the URL typed where
   the expert clicks its link) against one step of the env;
4. the memory a context with a loaded app page adds to the browser's processes (their
   PSS, read from ``/proc``, with ``--contexts`` such contexts open beside the browser
   alone; target: at most 60 MB a context);
5. 32 episodes at once, each replaying a bundled trajectory as its policy: failures
   (target: none), rewards, wall-clock and steps per second.

    python bench/bench_browser.py [--rounds 5] [--trajectories 20] [--contexts 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from report import print_table, ratio_line, write_json

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.envs.browser.expert import call
from pivotgym.envs.browser.runtime import LABEL, runtime
from pivotgym.envs.browser.verifier import BrowserVerifier
from pivotgym.verifiers.base import restore

med = statistics.median


def _at_checkout(train: list[Any]) -> tuple[Any, int]:
    """A shop order's trajectory, and its turn that fills the checkout's address."""
    for t in train:
        if t.task["family"] != "shop.buy":
            continue
        for turn in range(t.num_turns):
            action = t.action(turn)["tool_calls"][0]["function"]
            before = t.prefix(turn)[-1]["content"] or ""
            if "URL: http://shop.test/checkout" in before and action["name"] == "fill":
                return t, turn + 1
    raise SystemExit("no shop order in the data fills the checkout's address")


async def fork_vs_floor(rounds: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("browser", split="train")
    trajectory, turn = _at_checkout(train)
    env = pivotgym.make("browser", tasks=[])
    await env.areset(options={"trajectory": trajectory, "turn": turn})
    world = env.world
    image = world.databases["shop.test"].serialize()
    browser = await runtime().acquire()
    forks, bare, loaded = [], [], []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            branches = await world.fork(8)
            forks.append(time.perf_counter() - start)
            for branch in branches:
                await branch.close()

            async def context(load: bool) -> Any:
                db = sqlite3.connect(":memory:")
                db.deserialize(image)
                made = await browser.new_context()
                if load:
                    await made.route("**/*", world._serve)
                    await (await made.new_page()).goto(world.page.url)
                db.close()
                return made

            for floor, load in ((bare, False), (loaded, True)):
                start = time.perf_counter()
                made = await asyncio.gather(*(context(load) for _ in range(8)))
                floor.append(time.perf_counter() - start)
                for c in made:
                    await c.close()
    finally:
        await runtime().release()
        await env.aclose()
    return {
        "fork8_s": forks,
        "bare_floor_s": bare,
        "loaded_floor_s": loaded,
        "ratio": med(forks) / med(bare),
        "ratio_loaded": med(forks) / med(loaded),
        "in_page_actions": len(world.tabs[0].actions) if world.tabs else 0,
    }


async def restores(n: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("browser", split="train")
    longest = max(train, key=lambda t: t.num_turns)
    cold_env = pivotgym.make("browser", tasks=[])
    start = time.perf_counter()
    await cold_env.areset(options={"trajectory": longest, "turn": longest.num_turns - 1})
    cold = time.perf_counter() - start
    start = time.perf_counter()
    await cold_env.areset(options={"trajectory": longest, "turn": longest.num_turns - 1})
    warm = time.perf_counter() - start
    await cold_env.aclose()
    env = pivotgym.make("browser", tasks=[])
    most, restored = 0, 0
    try:
        for trajectory in train[:n]:
            for turn in range(trajectory.num_turns):
                _, info = await env.areset(options={"trajectory": trajectory, "turn": turn})
                most = max(most, info["replayed_steps"])
                restored += 1
    finally:
        await env.aclose()
    return {
        "turns": longest.num_turns - 1,
        "cold_s": cold,
        "warm_s": warm,
        "restored_turns": restored,
        "most_replayed_in_a_turn": most,
    }


async def verifier_cost(rounds: int) -> dict[str, Any]:
    train = pivotgym.load_trajectories("browser", split="train")
    trajectory = next(t for t in train if t.task["family"] == "wiki.two-hop")
    candidate = next(
        c
        for c in candidates([trajectory])
        if c.reference["tool_calls"][0]["function"]["name"] == "click"
    )
    after = trajectory.prefix(candidate.turn + 1)[-1]["content"]
    url = re.search(r"^URL: (\S+)", after, re.M)[1]
    sample = call("goto", 0, {"url": url})
    env = pivotgym.make("browser", tasks=[])
    state = await restore(env, candidate)
    verifier = BrowserVerifier()
    await verifier.verify(state, sample, candidate.reference)  # the expert's turn, once
    timed, steps = [], []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            verdict = await verifier.verify(state, sample, candidate.reference)
            timed.append(time.perf_counter() - start)
            assert verdict.reward == 1.0, verdict
            branch = (await env.afork(1))[0]
            start = time.perf_counter()
            await branch.astep(sample)
            steps.append(time.perf_counter() - start)
            await branch.aclose()
    finally:
        await env.aclose()
    return {"verify_s": timed, "step_s": steps, "ratio": med(timed) / med(steps)}


def _browser_pss_kb() -> int:
    """The PSS of the browser's processes: its cage and every process below it."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    cage = set()
    for pid in parents:
        try:
            if LABEL.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                cage.add(pid)
        except OSError:
            continue
    changed = True
    while changed:
        below = {pid for pid, parent in parents.items() if parent in cage} - cage
        changed = bool(below)
        cage |= below
    total = 0
    for pid in cage:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # gone meanwhile
            continue
        total += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)[1])
    return total


async def memory_per_context(n: int) -> dict[str, Any]:
    """PSS the browser's processes gain per context holding a loaded app page."""
    train = pivotgym.load_trajectories("browser", split="train")
    trajectory, turn = _at_checkout(train)
    env = pivotgym.make("browser", tasks=[])
    await env.areset(options={"trajectory": trajectory, "turn": turn})
    await runtime().acquire()
    try:
        await asyncio.sleep(1)
        alone = _browser_pss_kb()
        branches = await env.world.fork(n)
        await asyncio.sleep(1)
        with_contexts = _browser_pss_kb()
        for branch in branches:
            await branch.close()
    finally:
        await runtime().release()
        await env.aclose()
    return {
        "contexts": n,
        "pss_alone_mb": alone / 1024,
        "pss_with_contexts_mb": with_contexts / 1024,
        "pss_per_context_mb": (with_contexts - alone) / 1024 / n,
    }


async def concurrent(n: int = 32) -> dict[str, Any]:
    train = pivotgym.load_trajectories("browser", split="train")[::47][:n]

    steps = 0

    async def play(trajectory: Any) -> tuple[float, str | None]:
        nonlocal steps
        env = pivotgym.make("browser", tasks=[])
        try:
            await env.areset(options={"trajectory": trajectory, "turn": 0})
            reward, error = 0.0, None
            for turn in range(trajectory.num_turns):
                _, reward, term, trunc, info = await env.astep(trajectory.action(turn))
                steps += 1
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
    return {
        "episodes": len(train),
        "failures": failures,
        "solved": sum(r == 1.0 for r in rewards),
        "wall_s": wall,
        "steps": steps,
        "steps_per_s": steps / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trajectories", type=int, default=20)
    parser.add_argument("--contexts", type=int, default=16)
    args = parser.parse_args()

    async def everything() -> dict[str, Any]:
        return {
            "fork": await fork_vs_floor(args.rounds),
            "restore": await restores(args.trajectories),
            "verifier": await verifier_cost(args.rounds),
            "memory": await memory_per_context(args.contexts),
            "concurrent": await concurrent(),
        }

    report = asyncio.run(everything())
    f, r, v, c = report["fork"], report["restore"], report["verifier"], report["concurrent"]
    m = report["memory"]
    print_table(
        ["measure", "pivotgym", "floor / other", "ratio"],
        [
            [
                "fork(8) vs 8 bare contexts + 8 DB copies (s)",
                med(f["fork8_s"]),
                med(f["bare_floor_s"]),
                f["ratio"],
            ],
            [
                "fork(8) vs 8 contexts loading the page (s)",
                med(f["fork8_s"]),
                med(f["loaded_floor_s"]),
                f["ratio_loaded"],
            ],
            [
                f"reset to turn {r['turns']}: warm vs cold cache (s)",
                r["warm_s"],
                r["cold_s"],
                r["warm_s"] / r["cold_s"],
            ],
            [
                "verifier per sample vs one step (s)",
                med(v["verify_s"]),
                med(v["step_s"]),
                v["ratio"],
            ],
        ],
    )
    print(ratio_line("fork(8) vs bare floor", f["ratio"], 2.0))
    print(
        f"restored {r['restored_turns']} turns; at most {r['most_replayed_in_a_turn']} "
        "step(s) replayed for one turn"
    )
    print(
        f"PSS per context with a loaded page: {m['pss_per_context_mb']:.1f} MB "
        f"({m['contexts']} contexts: {m['pss_alone_mb']:.0f} MB alone, "
        f"{m['pss_with_contexts_mb']:.0f} MB with them; target <= 60 MB)"
    )
    print(
        f"{c['episodes']} concurrent episodes: {len(c['failures'])} failures, "
        f"{c['solved']} solved, {c['wall_s']:.1f} s, {c['steps_per_s']:.1f} steps/s"
    )
    write_json("browser", report)


if __name__ == "__main__":
    main()
