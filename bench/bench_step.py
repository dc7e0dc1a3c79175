"""One TerminalEnv ``bash`` step against the same command run straight in its sandbox.

Both sides run in the same sandbox, alternating: the step pays for the tool-call
plumbing, the shell-state runner (restore cwd and exports, save them after) and the
conversation bookkeeping; the baseline is ``sandbox.exec(["bash", "-c", cmd])``. Each
backend that runs here (bwrap, docker) is measured in the same run.

    python bench/bench_step.py [--steps 40] [--backends bwrap docker]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from report import print_table, ratio_line, write_json
from tasks import COMMAND, bash_action, small_task

from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.sandbox import backend_class

TARGET = 1.2


async def measure(backend: str, task, steps: int) -> dict[str, list[float]]:
    env = TerminalEnv(tasks=[task], sandbox=backend)
    await env.areset(options={"task": task})
    times: dict[str, list[float]] = {"step": [], "exec": []}
    try:
        for i in range(steps + 3):  # the first rounds warm caches, unmeasured
            started = time.perf_counter()
            _, _, terminated, truncated, info = await env.astep(bash_action(COMMAND, f"c{i}"))
            step_s = time.perf_counter() - started
            assert info["calls"][0]["exit_code"] == 0 and not (terminated or truncated)
            started = time.perf_counter()
            result = await env.sandbox.exec(["bash", "-c", COMMAND])
            exec_s = time.perf_counter() - started
            assert result.ok
            if i >= 3:
                times["step"].append(step_s)
                times["exec"].append(exec_s)
    finally:
        await env.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--backends", nargs="+", default=["bwrap", "docker"])
    args = parser.parse_args()

    results: dict[str, dict] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        task = small_task(Path(tmp) / "step-task")
        for backend in args.backends:
            why = backend_class(backend).available()
            if why is not None:
                print(f"skipping {backend}: {why}")
                continue
            times = asyncio.run(measure(backend, task, args.steps))
            step, base = statistics.median(times["step"]), statistics.median(times["exec"])
            results[backend] = {"seconds": times, "median_step_s": step,
                                "median_exec_s": base, "ratio": step / base}  # fmt: skip
            rows.append([f"{backend}: env.step(bash)", step * 1e3, f"{step / base:.2f}x"])
            rows.append([f"{backend}: sandbox.exec(bash -c)", base * 1e3, "1.00x"])
    print_table(["side", "median ms", "vs exec"], rows)
    for backend, r in results.items():
        print(ratio_line(f"{backend} step/exec", r["ratio"], TARGET))
    write_json("step", {"command": COMMAND, "steps": args.steps, "target_ratio": TARGET,
                        "backends": results})  # fmt: skip


if __name__ == "__main__":
    main()
