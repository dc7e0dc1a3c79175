"""Measure what makes a model usable as π0 for PivotRL on the terminal suite.

    python -m pivotgym.models.properties --model pivotgym-tiny

Four properties, printed as a table and written to ``bench/results/tiny_properties.json``:

- **parse rate**: the fraction of assistant turns sampled at temperature 1 (the profiling
  samples below) that parse as a message or a tool call (no ``parse_error``);
- **success rate**: full episodes on the held-out test tasks (split ``test``) with the
  model acting at ``--episode-temperature``, scored by each task's test;
- **mixed-outcome fraction**: at randomly chosen tool-calling turns of the bundled train
  trajectories, K samples at temperature 1 are each executed in a fork of the restored
  state beside the expert's action; a sample matches when its effect does (exit status,
  whitespace-normalised output, and a content hash of the workdir). The fraction of
  candidates whose K samples neither all match nor all miss is the share of turns that
  PivotRL can learn from;
- **OOD accuracy**: greedy answers to held-out questions of :mod:`pivotgym.models.ood`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiometer
import torch

import pivotgym
from pivotgym.chat import ChatFormat
from pivotgym.engines.base import SamplingParams
from pivotgym.engines.torch import TorchEngine
from pivotgym.models import load, ood

RESULTS = Path("bench/results/tiny_properties.json")
TARGETS = {
    "parse_rate": (0.90, 1.0),
    "success_rate": (0.10, 0.60),
    "mixed_outcome_fraction": (0.25, 1.0),
    "ood_accuracy": (0.50, 1.0),
}
# Content hash of the workdir: file paths and bytes, plus a git repository's tree and
# staged state by content (commit ids carry timestamps, so two equal commits differ).
WORKDIR_HASH = (
    "{ find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum; "
    "find . -path ./.git -prune -o -print | sort; "
    "git rev-parse HEAD^{tree} 2>/dev/null; git log --format=%s 2>/dev/null; "
    "git status --porcelain 2>/dev/null; } | sha256sum"
)


def sampling(temperature: float, fmt: ChatFormat, seed: int, max_new: int) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=max_new,
        stop_token_ids=fmt.stop_ids,
        seed=seed,
    )


# ------------------------------------------------------------------ mixed outcomes


async def effect(env: Any, action: dict[str, Any]) -> tuple[Any, ...] | None:
    """What ``action`` does in ``env``: exit status, output and workdir; None if no call."""
    if action.get("parse_error") or not action.get("tool_calls"):
        return None
    obs, _, _, _, info = await env.astep(action)
    calls = info.get("calls") or [{}]
    output = "\n".join(" ".join(line.split()) for line in obs[-1]["content"].splitlines())
    sandbox = env.sandbox
    digest = await sandbox.exec(["bash", "-c", WORKDIR_HASH], cwd=sandbox.spec.workdir)
    names = tuple(c["function"]["name"] for c in action["tool_calls"])
    return names, calls[-1].get("exit_code"), calls[-1].get("error"), output, digest.output


async def profile_candidate(engine, fmt, env_factory, traj, turn, k, seed) -> dict[str, Any]:
    env = env_factory()
    try:
        obs, _ = await env.areset(options={"trajectory": traj, "turn": turn})
        prompt = fmt.prompt_ids(obs, env.tools)
        samples = await engine.generate(prompt, k, sampling(1.0, fmt, seed, 192))
        actions = [fmt.parse(s, first_call=turn) for s in samples]
        forks = await env.afork(k + 1)
        try:
            expert = await effect(forks[0], traj.action(turn))
            effects = await asyncio.gather(
                *(effect(f, a) for f, a in zip(forks[1:], actions, strict=True))
            )
        finally:
            await asyncio.gather(*(f.aclose() for f in forks))
        matches = [e is not None and e == expert for e in effects]
        return {
            "id": traj.id,
            "turn": turn,
            "family": traj.metadata.get("family"),
            "parsed": [not a.get("parse_error") for a in actions],
            "matches": matches,
        }
    finally:
        await env.aclose()


async def mixed_outcomes(engine, fmt, candidates: int, k: int, seed: int) -> dict[str, Any]:
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    pool = [
        (t, turn)
        for t in trajectories
        for turn in range(t.num_turns)
        if t.action(turn).get("tool_calls")
    ]
    chosen = random.Random(seed).sample(pool, min(candidates, len(pool)))
    env_factory = functools.partial(pivotgym.make, "terminal")
    jobs = [
        functools.partial(profile_candidate, engine, fmt, env_factory, t, turn, k, seed + i)
        for i, (t, turn) in enumerate(chosen)
    ]
    rows = await aiometer.run_all(jobs, max_at_once=4)
    mixed = [0 < sum(r["matches"]) < k for r in rows]
    parsed = [p for r in rows for p in r["parsed"]]
    return {
        "candidates": len(rows),
        "k": k,
        "mixed_outcome_fraction": sum(mixed) / len(rows),
        "mean_match_rate": sum(sum(r["matches"]) for r in rows) / (k * len(rows)),
        "all_match_fraction": sum(all(r["matches"]) for r in rows) / len(rows),
        "none_match_fraction": sum(not any(r["matches"]) for r in rows) / len(rows),
        "parse_rate": sum(parsed) / len(parsed),
        "parsed_samples": len(parsed),
    }


# ------------------------------------------------------------------------ episodes


async def episodes(engine, fmt, tasks: Sequence[Any], temperature: float, seed: int):
    """Run every task to its end in lockstep, one batched sampling call per turn."""
    envs = [pivotgym.make("terminal", tasks=[t]) for t in tasks]
    obs = list(
        await asyncio.gather(
            *(e.areset(options={"task": t}) for e, t in zip(envs, tasks, strict=True))
        )
    )
    convs = [o[0] for o in obs]
    active = list(range(len(envs)))
    rewards = [0.0] * len(envs)
    turns = [0] * len(envs)
    malformed = 0
    step = 0
    try:
        while active:
            prompts = [fmt.prompt_ids(convs[i], envs[i].tools) for i in active]
            params = sampling(temperature, fmt, seed + 1000 * step, 256)
            samples = await engine.generate_batch(prompts, 1, params)
            actions = [
                fmt.parse(s[0], first_call=turns[i]) for s, i in zip(samples, active, strict=True)
            ]
            malformed += sum(bool(a.get("parse_error")) for a in actions)
            results = await asyncio.gather(
                *(envs[i].astep(a) for i, a in zip(active, actions, strict=True))
            )
            still = []
            for i, (o, reward, terminated, truncated, _info) in zip(active, results, strict=True):
                convs[i] = o
                turns[i] += 1
                if terminated or truncated:
                    rewards[i] = reward
                else:
                    still.append(i)
            active = still
            step += 1
    finally:
        await asyncio.gather(*(e.aclose() for e in envs))
    by_family: dict[str, list[float]] = {}
    for task, reward in zip(tasks, rewards, strict=True):
        family = (task.config.metadata or {}).get("family", "?") if hasattr(task, "config") else "?"
        by_family.setdefault(family, []).append(reward)
    return {
        "episodes": len(tasks),
        "temperature": temperature,
        "success_rate": sum(r == 1.0 for r in rewards) / len(rewards),
        "mean_turns": sum(turns) / len(turns),
        "malformed_turns": malformed,
        "success_by_family": {f: sum(v) / len(v) for f, v in sorted(by_family.items())},
    }


# ---------------------------------------------------------------------------- OOD


async def ood_accuracy(engine, fmt, n: int, seed: int) -> dict[str, Any]:
    questions = ood.eval_questions(n, seed)
    prompts = [fmt.prompt_ids(q.messages()) for q in questions]
    samples = await engine.generate_batch(prompts, 1, sampling(0.0, fmt, seed, 160))
    right = [
        ood.score(q, fmt.decode(s[0].token_ids)) for q, s in zip(questions, samples, strict=True)
    ]
    by_kind: dict[str, list[bool]] = {}
    for q, r in zip(questions, right, strict=True):
        by_kind.setdefault(q.kind, []).append(r)
    return {
        "questions": n,
        "ood_accuracy": sum(right) / n,
        "ood_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }


# ------------------------------------------------------------------------- report


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    model, tokenizer = load(args.model)
    engine = TorchEngine(model, tokenizer, dtype=torch.float32)
    fmt = ChatFormat(tokenizer)
    report: dict[str, Any] = {"model": str(args.model), "seed": args.seed}
    timings = {}
    try:
        start = time.perf_counter()
        report.update(await ood_accuracy(engine, fmt, args.ood, args.seed))
        timings["ood_s"] = time.perf_counter() - start
        print(f"ood: done in {timings['ood_s']:.0f} s", file=sys.stderr)

        start = time.perf_counter()
        report.update(await mixed_outcomes(engine, fmt, args.candidates, args.k, args.seed))
        timings["mixed_s"] = time.perf_counter() - start
        print(f"mixed: done in {timings['mixed_s']:.0f} s", file=sys.stderr)

        start = time.perf_counter()
        tasks = pivotgym.load_tasks("terminal", split="test")
        if args.episodes:
            tasks = random.Random(args.seed).sample(list(tasks), min(args.episodes, len(tasks)))
        report.update(await episodes(engine, fmt, tasks, args.episode_temperature, args.seed))
        timings["episodes_s"] = time.perf_counter() - start
        print(f"episodes: done in {timings['episodes_s']:.0f} s", file=sys.stderr)
    finally:
        await engine.aclose()
    report["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    report["targets"] = {
        name: {"range": list(span), "met": span[0] <= report[name] <= span[1]}
        for name, span in TARGETS.items()
    }
    return report


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"π0 properties of {report['model']}")
    for column in ("property", "value", "target", "met", "how"):
        table.add_column(column)
    how = {
        "parse_rate": f"{report['parsed_samples']} samples at T=1",
        "success_rate": f"{report['episodes']} test episodes at T={report['temperature']}",
        "mixed_outcome_fraction": f"{report['candidates']} candidates x K={report['k']} at T=1",
        "ood_accuracy": f"{report['questions']} held-out questions, greedy",
    }
    for name, target in report["targets"].items():
        lo, hi = target["range"]
        table.add_row(
            name,
            f"{report[name]:.3f}",
            f"[{lo}, {hi}]",
            "yes" if target["met"] else "NO",
            how[name],
        )
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pivotgym-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=0, help="test tasks to run (0: all)")
    parser.add_argument("--episode-temperature", type=float, default=0.7)
    parser.add_argument("--ood", type=int, default=300, help="held-out OOD questions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = asyncio.run(measure(args))
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
