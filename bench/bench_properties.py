"""Measure what makes a model usable as π0 for PivotRL on the terminal suite.

    python bench/bench_properties.py --model pivotgym-tiny

Four properties, printed as a table and written to ``bench/results/tiny_properties.json``,
each measured with the same code a run uses:

- **parse rate**: the fraction of assistant turns sampled at temperature 1 (the profiling
  samples below) that parse as a message or a tool call (no ``parse_error``);
- **success rate**: full episodes on the held-out test tasks (split ``test``) with the
  model acting at ``--episode-temperature``, scored by each task's test
  (:func:`pivotgym.runs.evaluation.run_episodes`);
- **mixed-outcome fraction**: offline profiling (:mod:`pivotgym.pivotrl.profiling`) of randomly
  chosen candidate turns of the bundled train trajectories, K samples at temperature 1
  scored by the terminal's execution verifier (a sample passes when its effect equals the
  expert's); the share of candidates whose samples neither all pass nor all fail is the
  share of turns PivotRL can learn from;
- **OOD accuracy**: greedy answers to held-out questions of :mod:`pivotgym.policy.models.ood`
  (:func:`pivotgym.runs.evaluation.ood_accuracy`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.core.replay import SnapshotCache
from pivotgym.pivotrl.profiling import Profiler, ProfileSettings
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.policy.models import load
from pivotgym.runs.evaluation import episode_sampling, ood_accuracy, run_episodes
from pivotgym.verifiers import default_verifier

RESULTS = Path("bench/results/tiny_properties.json")
TARGETS = {
    "parse_rate": (0.90, 1.0),
    "success_rate": (0.10, 0.60),
    "mixed_outcome_fraction": (0.25, 1.0),
    "ood_accuracy": (0.50, 1.0),
}


async def mixed_outcomes(
    engine: TorchEngine, fmt: ChatFormat, n: int, k: int, seed: int
) -> dict[str, Any]:
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    pool = list(candidates(trajectories))
    chosen = random.Random(seed).sample(pool, min(n, len(pool)))
    cache = SnapshotCache()
    env = pivotgym.make("terminal", tasks=[], cache=cache)
    profiler = Profiler(
        engine=engine,
        chat=fmt,
        verifier=default_verifier("terminal"),
        make_env=lambda: pivotgym.make("terminal", tasks=[], cache=cache),
        tools=env.tools,
        settings=ProfileSettings(k=k, temperature=1.0, max_new_tokens=192, seed=seed),
    )
    await env.aclose()
    with tempfile.TemporaryDirectory() as tmp:
        rows = await profiler.run(chosen, Path(tmp) / "profile.jsonl", show_progress=False)
    valid = [r for r in rows if r["n_valid"]]
    parsed = [not fmt.parse(text).get("parse_error") for r in rows for text in r["actions"]]
    return {
        "candidates": len(rows),
        "k": k,
        "mixed_outcome_fraction": sum(r["variance"] > 0 for r in valid) / max(len(valid), 1),
        "mean_pass_rate": sum(r["mean"] for r in valid) / max(len(valid), 1),
        "all_pass_fraction": sum(r["mean"] == 1.0 for r in valid) / max(len(valid), 1),
        "none_pass_fraction": sum(r["mean"] == 0.0 for r in valid) / max(len(valid), 1),
        "parse_rate": sum(parsed) / max(len(parsed), 1),
        "parsed_samples": len(parsed),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    model, tokenizer = load(args.model)
    engine = TorchEngine(model, tokenizer, dtype=torch.float32)
    fmt = ChatFormat(tokenizer)
    report: dict[str, Any] = {"model": str(args.model), "seed": args.seed}
    timings = {}
    try:
        start = time.perf_counter()
        ood = await ood_accuracy(engine, fmt, n=args.ood, seed=args.seed)
        report.update(
            questions=ood["questions"], ood_accuracy=ood["accuracy"], ood_by_kind=ood["by_kind"]
        )
        timings["ood_s"] = time.perf_counter() - start
        print(f"ood: done in {timings['ood_s']:.0f} s", file=sys.stderr)

        start = time.perf_counter()
        report.update(await mixed_outcomes(engine, fmt, args.candidates, args.k, args.seed))
        timings["mixed_s"] = time.perf_counter() - start
        print(f"mixed: done in {timings['mixed_s']:.0f} s", file=sys.stderr)

        start = time.perf_counter()
        every = pivotgym.load_tasks("terminal", split="test")
        chosen = range(len(every))
        if args.episodes:
            chosen = sorted(random.Random(args.seed).sample(chosen, min(args.episodes, len(every))))
        episodes = await run_episodes(
            engine,
            fmt,
            lambda: pivotgym.make("terminal", tasks=[]),
            [every[i] for i in chosen],
            episode_sampling(fmt, args.episode_temperature),
            seed=args.seed,
        )
        summary = episodes.to_json()
        report.update(
            episodes=summary["episodes"],
            temperature=args.episode_temperature,
            success_rate=summary["success_rate"],
            mean_turns=summary["mean_turns"],
            malformed_turns=summary["malformed_turns"],
            success_by_family=summary["by_family"],
        )
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
