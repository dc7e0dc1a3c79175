"""Many bubblewrap TerminalEnvs at once on the async API.

``--envs`` environments (64 by default) each reset to a bundled test task and step
``--steps`` bash commands, all under one ``asyncio.gather``; beside it, the same work per
env done by a few envs one after another gives the sequential rate. A failure is any
exception, infrastructure error, time out, or a command whose output is wrong; there
must be none.

    python bench/bench_concurrency.py [--envs 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from report import print_table, write_json
from tasks import bash_action

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.sandbox.bwrap import BwrapBackend

COMMANDS = [
    "ls | wc -l",
    "export K=$((${K:-0}+1)); echo $K",
    "cd /tmp && pwd",
    "cd - >/dev/null; pwd",
]


def expected(i: int) -> str | None:
    """The output command ``i`` of the cycle must give (None: anything)."""
    command = COMMANDS[i % len(COMMANDS)]
    if command.startswith("export"):
        return f"{i // len(COMMANDS) + 1}\n"
    if command.startswith("cd /tmp"):
        return "/tmp\n"
    return None


async def episode(task, steps: int) -> tuple[int, list[str]]:
    env = TerminalEnv(tasks=[task], sandbox="bwrap", max_turns=steps + 1)
    failures: list[str] = []
    done = 0
    try:
        await env.areset(options={"task": task})
        for i in range(steps):
            obs, _, _, _, info = await env.astep(bash_action(COMMANDS[i % len(COMMANDS)], f"c{i}"))
            call = info["calls"][0] if info["calls"] else {}
            want = expected(i)
            if info["infra_error"] or call.get("timed_out") or call.get("exit_code") != 0:
                failures.append(f"{task.name} step {i}: {info['infra_error'] or call}")
            elif want is not None and obs[-1]["content"] != want:
                failures.append(f"{task.name} step {i}: {obs[-1]['content']!r} != {want!r}")
            done += 1
    except Exception as exc:  # counted, not raised: the benchmark reports failures
        failures.append(f"{task.name}: {type(exc).__name__}: {exc}")
    finally:
        await env.aclose()
    return done, failures


async def concurrent(tasks, steps: int) -> tuple[float, int, list[str]]:
    started = time.perf_counter()
    results = await asyncio.gather(*(episode(t, steps) for t in tasks))
    elapsed = time.perf_counter() - started
    return elapsed, sum(r[0] for r in results), [f for r in results for f in r[1]]


async def sequential(tasks, steps: int) -> tuple[float, int, list[str]]:
    started = time.perf_counter()
    done, failures = 0, []
    for task in tasks:
        n, f = await episode(task, steps)
        done, failures = done + n, failures + f
    return time.perf_counter() - started, done, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sequential-envs", type=int, default=4)
    args = parser.parse_args()
    why = BwrapBackend.available()
    if why is not None:
        raise SystemExit(f"bwrap backend unavailable: {why}")

    pool = pivotgym.load_tasks("terminal", split="test")
    tasks = [pool[i % len(pool)] for i in range(args.envs)]
    sides = {
        f"{args.sequential_envs} envs, one after another": asyncio.run(
            sequential(tasks[: args.sequential_envs], args.steps)
        ),
        f"{args.envs} envs, asyncio.gather": asyncio.run(concurrent(tasks, args.steps)),
    }
    base_rate = None
    rows, report = [], {}
    for name, (elapsed, steps, failures) in sides.items():
        rate = steps / elapsed
        base_rate = base_rate or rate
        rows.append(
            [name, steps, elapsed, f"{rate:.1f}", f"{rate / base_rate:.2f}x", len(failures)]
        )
        report[name] = {"seconds": elapsed, "steps": steps, "steps_per_s": rate,
                        "failures": failures}  # fmt: skip
    print_table(["side", "steps", "wall s", "steps/s", "vs seq", "failures"], rows)
    for failures in (f for _, _, f in sides.values()):
        for line in failures[:5]:
            print("failure:", line)
    write_json("concurrency", {"envs": args.envs, "steps_per_env": args.steps, "sides": report})


if __name__ == "__main__":
    main()
