"""Build the bundled terminal data from a seed: tasks, and expert trajectories recorded live.

    python -m pivotgym.envs.terminal.suite.build --seed 0 --out envs/terminal/data

Every expert command is executed in a real sandbox through :class:`TerminalEnv`, so
the recorded tool outputs are what the environment really prints, and every recorded
episode must pass its task's test (a failing demonstration aborts the build). Outputs:

- ``train.jsonl.gz``: trajectories of the training families, tasks inline;
- ``tasks-test.jsonl.gz``: held-out instances of the training families, as inline task
  specs (Harbor folders once loaded; a git repository cannot carry the ``.git``
  folders of the git tasks, so folders are not stored);
- ``tasks-ood.jsonl.gz``: instances of the held-out families (out-of-family evaluation);
- ``test.jsonl.gz``: expert trajectories of the test tasks.

The build is deterministic: the same seed rebuilds the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiometer

from pivotgym.core.trajectory import Trajectory, save_trajectories
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.suite.families import FAMILIES, HELD_OUT_FAMILIES
from pivotgym.envs.terminal.suite.plan import TaskPlan
from pivotgym.errors import PivotgymError
from pivotgym.harbor.task import HarborTask, encode_file, materialize_inline

SPLITS = {"train": 0, "test": 100_000, "ood": 200_000}  # index offsets keep names unique


def instance_rng(seed: int, split: str, family: str, index: int) -> random.Random:
    key = f"{seed}:{split}:{family}:{index}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def plans_for(seed: int, split: str, count: int, families: Sequence[str]) -> list[TaskPlan]:
    """``count`` instances dealt round-robin over ``families``."""
    plans = []
    for i in range(count):
        family = families[i % len(families)]
        index = SPLITS[split] + i // len(families)
        plans.append(FAMILIES[family].generate(instance_rng(seed, split, family, index), index))
    return plans


def task_config(plan: TaskPlan, split: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "metadata": {"family": plan.family, "split": split, "category": "shell"},
        "agent": {"timeout_sec": 600.0},
        "verifier": {"timeout_sec": 60.0},
        "environment": {"memory_mb": 512, "storage_mb": 128, "allow_internet": False},
        "pivotgym": {"family": plan.family, "exec_timeout_sec": plan.timeout_s, "max_turns": 12},
    }


def inline_spec(plan: TaskPlan, split: str) -> dict[str, Any]:
    return {
        "name": plan.name,
        "instruction": plan.instruction,
        "config": task_config(plan, split),
        "environment": {path: encode_file(data) for path, data in sorted(plan.files.items())},
        "tests": {"test.sh": plan.test_sh},
        "solution": {"solve.sh": plan.solution_sh},
    }


def expert_message(turn: int, thought: str, command: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": thought}
    if command is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{turn}",
                "type": "function",
                "function": {"name": "bash", "arguments": _arguments(command)},
            }
        ]
    return message


def _arguments(command: str) -> str:
    return json.dumps({"command": command}, ensure_ascii=False)


async def record(plan: TaskPlan, task: HarborTask, sandbox: str | None) -> list[dict[str, Any]]:
    """Play the expert in a fresh sandbox; return the conversation; require reward 1."""
    env = TerminalEnv(tasks=[task], sandbox=sandbox, max_turns=len(plan.expert) + 1)
    try:
        obs, _ = await env.areset(options={"task": task})
        reward, info = 0.0, {}
        for turn, step in enumerate(plan.expert):
            obs, reward, terminated, truncated, info = await env.astep(
                expert_message(turn, step.thought, step.command)
            )
            if info.get("infra_error"):
                raise PivotgymError(f"{plan.name}: infrastructure error: {info['infra_error']}")
            for call in info.get("calls", []):
                if call.get("exit_code") not in (0, None) or call.get("timed_out"):
                    raise PivotgymError(
                        f"{plan.name}: expert turn {turn} failed:\n{obs[-1]['content']}"
                    )
        if reward != 1.0:
            raise PivotgymError(f"{plan.name}: expert episode scored {reward}: {info.get('test')}")
        return obs
    finally:
        await env.aclose()


async def build(
    seed: int, out: Path, counts: dict[str, int], sandbox: str | None, jobs: int
) -> None:
    train_families = [f for f in sorted(FAMILIES) if f not in HELD_OUT_FAMILIES]
    plans = {
        "train": plans_for(seed, "train", counts["train"], train_families),
        "test": plans_for(seed, "test", counts["test"], train_families),
        "ood": plans_for(seed, "ood", counts["ood"], sorted(HELD_OUT_FAMILIES)),
    }
    jobs_list = [
        (split, plan, materialize_inline(inline_spec(plan, split)))
        for split in ("train", "test", "ood")
        for plan in plans[split]
    ]

    done = 0
    start = time.perf_counter()

    async def run(job: tuple[str, TaskPlan, HarborTask]) -> list[dict[str, Any]]:
        nonlocal done
        result = await record(job[1], job[2], sandbox)
        done += 1
        if done % 100 == 0 or done == len(jobs_list):
            rate = done / (time.perf_counter() - start)
            print(f"  recorded {done}/{len(jobs_list)} ({rate:.1f}/s)", file=sys.stderr)
        return result

    conversations = await aiometer.run_all(
        [functools.partial(run, j) for j in jobs_list], max_at_once=jobs
    )
    by_split: dict[str, list[Trajectory]] = {"train": [], "test": []}
    for (split, plan, _task), messages in zip(jobs_list, conversations, strict=True):
        if split in by_split:
            metadata = {"family": plan.family, "split": split, "seed": seed}
            spec = inline_spec(plan, split)
            trajectory = Trajectory(f"terminal-{plan.name}", "terminal", spec, messages, metadata)
            by_split[split].append(trajectory)
    out.mkdir(parents=True, exist_ok=True)
    for split, trajectories in by_split.items():
        save_trajectories(trajectories, out / f"{split}.jsonl.gz")
    for split in ("test", "ood"):
        lines = "".join(
            json.dumps(inline_spec(p, split), separators=(",", ":")) + "\n" for p in plans[split]
        )
        (out / f"tasks-{split}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), 9, mtime=0))
    print(
        f"built {sum(len(p) for p in plans.values())} instances "
        f"in {time.perf_counter() - start:.0f} s -> {out}",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "data")
    parser.add_argument("--train", type=int, default=2100)
    parser.add_argument("--test", type=int, default=245)
    parser.add_argument("--ood", type=int, default=100)
    parser.add_argument("--sandbox", default=None, help="bwrap or docker (default: bwrap)")
    parser.add_argument("--jobs", type=int, default=8, help="episodes recorded at once")
    args = parser.parse_args(argv)
    counts = {"train": args.train, "test": args.test, "ood": args.ood}
    try:
        asyncio.run(build(args.seed, args.out, counts, args.sandbox, args.jobs))
    except PivotgymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
