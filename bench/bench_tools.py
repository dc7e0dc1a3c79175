"""The tool-API env's costs, each side by side with its baseline in one run.

1. ``fork``: fork(8) of a clinic world whose database holds about 10 MB of rows, vs a
   deep copy of the database eight times, vs the floor of making eight empty worlds;
   then each fork's first write (which copies the one table it writes).
2. ``restore``: reset to every turn of the bundled trajectories with a shared cache:
   replayed calls vs the mutating calls of the prefixes and vs every call, and the
   most calls replayed by one restore (the promise: at most one a turn).
3. ``step``: one ``env.astep`` of a tool call vs calling the tool through the toolkit
   vs calling the Python function itself, for a key look-up and for a scan of the big
   database (target: the step within 1.2x of the direct call for a tool that does work),
   and what the synchronous facade adds (a hop to the background event loop).
4. ``concurrency``: 1,000 tool-API envs in one process stepping at once (steps/s).

    python bench/bench_tools.py [--scale 60] [--envs 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import time

from report import print_table, ratio_line, write_json

import pivotgym
from pivotgym.core.replay import SnapshotCache
from pivotgym.envs.tools.db import Database, to_json
from pivotgym.envs.tools.domain import get_domain
from pivotgym.envs.tools.env import ToolsEnv
from pivotgym.envs.tools.world import DomainWorld

STEP_TARGET = 1.2


def _median_s(work, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _call(name: str, arguments: dict, i: int = 0) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"c{i}", "type": "function", "function": function}]}  # fmt: skip


def bench_fork(scale: int, rounds: int) -> dict:
    domain = get_domain("clinic")
    started = time.perf_counter()
    db = domain.database(scale=scale)
    generate_s = time.perf_counter() - started
    size_mb = sum(len(json.dumps(to_json(r))) for _, r in db.to_rows()) / 1e6
    world = DomainWorld(domain, db)

    def fork8() -> None:
        asyncio.run(world.fork(8))

    def deepcopy8() -> None:
        for _ in range(8):
            copy.deepcopy(db)

    def empty8() -> None:
        for _ in range(8):
            DomainWorld(domain, Database(db.schema))

    patient = next(iter(db.rows("patients"))).patient_id

    def fork8_and_write() -> None:
        for fork in asyncio.run(world.fork(8)):
            fork.db.update("slots", "S00001", available=False)  # the biggest table
            fork.db.update("patients", patient, phone="0")

    seconds = {
        "fork(8)": _median_s(fork8, rounds),
        "8 empty worlds (floor)": _median_s(empty8, rounds),
        "fork(8) + a write to the two biggest tables each": _median_s(fork8_and_write, rounds),
        "8 deep copies": _median_s(deepcopy8, max(1, rounds // 10)),
    }
    return {"rows": len(db), "size_mb": size_mb, "generate_s": generate_s, "seconds": seconds}


def bench_restore() -> dict:
    trajectories = pivotgym.load_trajectories("tools", split="train")
    env = ToolsEnv(cache=SnapshotCache(max_entries=100_000))
    replayed = calls = writes = restores = 0
    most = 0
    started = time.perf_counter()
    for trajectory in trajectories:
        for turn in range(trajectory.num_turns + 1):
            _, info = env.reset(options={"trajectory": trajectory, "turn": turn})
            replayed += info["replayed_steps"]
            most = max(most, info["replayed_steps"])
            restores += 1
        for i in range(trajectory.num_turns):
            names = [c["function"]["name"] for c in trajectory.action(i).get("tool_calls") or []]
            calls += len(names)
            writes += sum(env.domain.toolkit.writes(n) for n in names) > 0
    seconds = time.perf_counter() - started
    env.close()
    return {"trajectories": len(trajectories), "restores": restores, "replayed_steps": replayed,
            "mutating_turns": writes, "calls": calls, "max_replayed_in_one_restore": most,
            "seconds": seconds, "ms_per_restore": seconds / restores * 1e3}  # fmt: skip


async def _bench_step(scale: int, rounds: int) -> dict:
    domain = get_domain("clinic")
    env = ToolsEnv(domain="clinic", max_turns=10**9)
    task = pivotgym.load_tasks("tools", split="test")[0]
    await env.areset(options={"task": task})
    env.world.db = domain.database(scale=scale)  # the same big database on every side
    db = env.world.db
    first = next(iter(db.rows("patients")))
    last = list(db.rows("patients"))[-1]  # found after scanning every patient
    cases = {
        "get_patient (key look-up)": {"patient_id": first.patient_id},
        "find_patient (scan of 7,200 patients)": {
            "name": last.name, "date_of_birth": last.date_of_birth},
    }  # fmt: skip
    out = {}
    for label, arguments in cases.items():
        name = label.split()[0]
        function = domain.toolkit[name].function
        action = _call(name, arguments)

        async def step(a=action) -> None:
            await env.astep(a)

        async def through_toolkit(n=name, a=arguments) -> None:
            domain.toolkit.call(db, n, dict(a))

        async def direct(f=function, a=arguments) -> None:
            f(db, **a)

        sides = {"env.astep": step, "toolkit.call": through_toolkit, "function": direct}
        for work in sides.values():
            await work()
        # Alternate the sides round by round, so drift hits them alike.
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(rounds):
            for side, work in sides.items():
                started = time.perf_counter()
                await work()
                times[side].append(time.perf_counter() - started)
            del env.messages[2:]  # keep the conversation (and its copy per step) short
        medians = {k: statistics.median(v) for k, v in times.items()}
        out[label] = {"median_s": medians, "ratio": medians["env.astep"] / medians["function"]}
    await env.aclose()
    return out


def bench_step(scale: int, rounds: int) -> dict:
    out = asyncio.run(_bench_step(scale, rounds))
    env = ToolsEnv(domain="clinic", max_turns=10**9)
    env.reset(options={"task": pivotgym.load_tasks("tools", split="test")[0]})
    action = _call("list_doctors", {"specialty": "cardiology"})

    def sync_step() -> None:
        env.step(action)
        del env.messages[2:]

    out["facade"] = {"sync step (list_doctors)": _median_s(sync_step, rounds)}
    env.close()
    return out


async def _concurrency(n: int, steps: int) -> dict:
    tasks = pivotgym.load_tasks("tools", split="test")
    envs = [ToolsEnv(tasks=tasks, max_turns=steps + 1) for _ in range(n)]
    for i, env in enumerate(envs):
        await env.areset(seed=i)

    async def run(env: ToolsEnv) -> None:
        for i in range(steps):
            await env.astep(_call("list_doctors", {}, i))

    started = time.perf_counter()
    await asyncio.gather(*(run(env) for env in envs))
    seconds = time.perf_counter() - started
    for env in envs:
        await env.aclose()
    return {"envs": n, "steps": n * steps, "seconds": seconds, "steps_per_s": n * steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=60, help="clinic database scale (~10 MB)")
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    fork = bench_fork(args.scale, args.rounds)
    floor = fork["seconds"]["8 empty worlds (floor)"]
    print(f"clinic database: {fork['rows']:,} rows, {fork['size_mb']:.1f} MB as JSON")
    rows = [[k, v * 1e3, f"{v / floor:.1f}x"] for k, v in fork["seconds"].items()]
    print_table(["fork side", "median ms", "vs floor"], rows)
    restore = bench_restore()
    print_table(["restore", "value"], [[k, v] for k, v in restore.items()])
    step = bench_step(args.scale, args.rounds)
    facade = step.pop("facade")
    rows = []
    for label, r in step.items():
        for side, s in r["median_s"].items():
            rows.append([f"{label}: {side}", s * 1e6, f"{s / r['median_s']['function']:.2f}x"])
    rows += [[k, v * 1e6, ""] for k, v in facade.items()]
    print_table(["step side", "median µs", "vs function"], rows)
    for label, r in step.items():
        print(ratio_line(f"{label} step/function", r["ratio"], STEP_TARGET))
    step["facade"] = facade
    concurrency = asyncio.run(_concurrency(args.envs, 5))
    print(f"{concurrency['envs']} envs: {concurrency['steps_per_s']:.0f} steps/s "
          f"({concurrency['steps']} steps in {concurrency['seconds']:.1f} s)")  # fmt: skip
    write_json("tools", {"fork": fork, "restore": restore, "step": step,
                         "concurrency": concurrency, "step_target": STEP_TARGET})  # fmt: skip


if __name__ == "__main__":
    main()
