"""``pivotgym bench``: PivotRL against E2E RL and SFT, from the same π0, on one ledger.

Every method trains from the same base model on the same trajectories and tasks,
evaluates on a fixed schedule (held-out in-domain tasks; the out-of-domain skill at the
end), and charges its costs to its own ledger (profiling is charged to PivotRL). The
report folder holds, plots first:

    index.html               the page: curves, then the tables
    accuracy_vs_turns.png    in-domain success against rollout turns, a line per method
    accuracy_vs_wallclock.png  the same against wall-clock seconds (seeds as bands)
    report.md, report.json   cost to reach the target gain over π0, final changes vs π0
    pi0-eval-KEY.json        π0's evaluation, made once and shared by the arms of a seed

and one run folder per method and seed (see :mod:`pivotgym.runs.run`).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import html
import json
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from pivotgym.errors import DataError
from pivotgym.runs.config import RunConfig, apply_overrides, check_resume
from pivotgym.runs.methods import METHODS as RUNS
from pivotgym.runs.run import resolve

console = Console()
METHODS = tuple(RUNS)

# Sizes for ``--quick``: the whole comparison in minutes on a 2-core machine.
QUICK = [
    "data.max_candidates=48",
    "data.eval_tasks=24",
    "data.ood_questions=40",
    "profile.k=6",
    "train.steps=8",
    "train.pivots_per_step=6",
    "train.group_size=6",
    "train.eval_every=4",
    "e2e.steps=8",
    "e2e.tasks_per_step=2",
    "e2e.group_size=6",
    "sft.steps=8",
]

# Each ablation is PivotRL with a one-line change of settings.
ABLATIONS = {
    "no-filter": ["train.pivot_source=random"],
    "exact-reward": ["profile.verifier=exact"],
}
SWEEPS = {"lambda": "profile.lambda_diff", "k": "profile.k", "group": "train.group_size"}


def ablation_overrides(name: str) -> list[str]:
    """``no-filter``, ``exact-reward``, or a sweep point ``lambda=0.5``, ``k=4``, ``group=4``."""
    if name in ABLATIONS:
        return ABLATIONS[name]
    key, sep, value = name.partition("=")
    if sep and key in SWEEPS:
        return [f"{SWEEPS[key]}={value}"]
    known = ", ".join([*ABLATIONS, *(f"{k}=VALUE" for k in SWEEPS)])
    raise DataError(f"unknown ablation {name!r} (known: {known})", field="--ablations")


@dataclass(frozen=True)
class Arm:
    """One thing to train: a method, possibly with an ablation, under one seed."""

    method: str
    label: str
    overrides: tuple[str, ...]
    seed: int


def arms(methods: Sequence[str], ablations: Sequence[str], seeds: int) -> list[Arm]:
    for method in methods:
        if method not in METHODS:
            raise DataError(
                f"unknown method {method!r} (known: {', '.join(METHODS)})", field="--methods"
            )
    variants = [(m, m, ()) for m in methods]
    variants += [("pivotrl", f"pivotrl[{a}]", tuple(ablation_overrides(a))) for a in ablations]
    return [Arm(m, label, ov, seed) for seed in range(seeds) for m, label, ov in variants]


def eval_key(config: RunConfig) -> str:
    """What π0's evaluation depends on. Arms that agree on it (every arm of one seed, as
    ablations change only profiling and training) share one evaluation of π0: with all
    held-out tasks it is minutes an arm."""
    what = [config.model, asdict(config.env), config.seed, asdict(config.data), asdict(config.eval)]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


async def run_arm(base: RunConfig, arm: Arm, root: Path) -> dict[str, Any]:

    config = copy.deepcopy(base)
    apply_overrides(config, list(arm.overrides), "--ablations")
    config.seed = arm.seed
    config.out = str(root / f"{arm.label}-s{arm.seed}")
    if not config.train.eval_every:  # a point halfway, between π0's and the final one
        config.train.eval_every = max(1, config.train.steps // 2)
    config = resolve(config)
    check_resume(config.out, config)  # a --quick arm is no full arm's result
    report_path = Path(config.out) / "report.json"
    if report_path.exists():  # finished in an earlier invocation
        report = json.loads(report_path.read_text())
    else:
        shared = root / f"pi0-eval-{eval_key(config)}.json"
        own = Path(config.out) / "eval_base.json"
        if shared.exists() and not own.exists():
            own.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared, own)
        report = await RUNS[arm.method](config).execute()
        if not shared.exists():
            shutil.copyfile(own, shared)
    curve_path = Path(config.out) / "curve.jsonl"
    curve = [json.loads(line) for line in curve_path.open()] if curve_path.exists() else []
    return {"arm": arm.__dict__, "report": report, "curve": curve}


# ------------------------------------------------------------------------------ analysis


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _cost_points(result: dict[str, Any]) -> list[tuple[float, float, float]]:
    """``(rollout turns, wall seconds, success)`` along a run's curve; SFT's final point
    costs no rollout turn."""
    points = [
        (p["ledger"]["model_calls"], p["ledger"]["seconds"].get("wall", 0.0), p["success"])
        for p in result["curve"]
    ]
    report = result["report"]
    if not points:
        ledger = report.get("ledger", {})
        points = [
            (0.0, 0.0, report["in_domain_base"]),
            (
                ledger.get("model_calls", 0),
                ledger.get("seconds", {}).get("wall", 0.0),
                report["in_domain_final"],
            ),
        ]
    return points


def cost_to_reach(
    result: dict[str, Any], gain: float, *, training_only: bool = False
) -> tuple[float, float] | None:
    """Rollout turns and wall-clock at the first evaluation ``gain`` or more above the
    run's first (π0 on that run's seed).

    The target is a gain rather than an accuracy because π0's accuracy moves with the
    seed (each seed samples its own evaluation episodes): an accuracy averaged over
    seeds can sit below one seed's π0, which would then reach it at no cost.
    ``training_only`` leaves out what was spent before the first point (PivotRL's
    offline profiling): the paper counts PivotRL's rollout turns that way, steps ×
    prompts × samples."""
    points = _cost_points(result)
    start_turns, start_wall, start = points[0]
    if not training_only:
        start_turns, start_wall = 0.0, 0.0
    for turns, wall, success in points:
        # Accuracies are fractions of whole tasks: compare them without float noise.
        if success - start >= gain - 1e-9:
            return turns - start_turns, wall - start_wall
    return None


def analyse(results: list[dict[str, Any]], gain: float | None) -> dict[str, Any]:
    """Changes against π0, and each method's cost to gain ``gain`` over π0 (by default
    E2E RL's mean final change)."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_label.setdefault(r["arm"]["label"], []).append(r)
    if gain is None:
        e2e = by_label.get("e2e")
        gains = [_cost_points(r)[-1][2] - _cost_points(r)[0][2] for r in e2e or [] if r["curve"]]
        gain = statistics.fmean(gains) if gains else None
    summary: dict[str, Any] = {"target_gain": gain, "methods": {}}
    for label, runs in by_label.items():
        reached = [cost_to_reach(r, gain) for r in runs] if gain is not None else []
        hits = [x for x in reached if x is not None]
        trained = [cost_to_reach(r, gain, training_only=True) for r in runs]
        training_hits = [x for x in trained if x is not None] if gain is not None else []
        summary["methods"][label] = {
            "seeds": len(runs),
            "in_domain_change": _mean_std(
                [
                    100 * (r["report"]["in_domain_final"] - r["report"]["in_domain_base"])
                    for r in runs
                ]
            ),
            "ood_change": _mean_std(
                [100 * (r["report"]["ood_final"] - r["report"]["ood_base"]) for r in runs]
            ),
            "final_in_domain": _mean_std([r["report"]["in_domain_final"] for r in runs]),
            "reached_target": f"{len(hits)}/{len(runs)}",
            "turns_to_target": _mean_std([h[0] for h in hits]),
            "wall_to_target_s": _mean_std([h[1] for h in hits]),
            "training_turns_to_target": _mean_std([h[0] for h in training_hits]),
            "training_wall_to_target_s": _mean_std([h[1] for h in training_hits]),
            "total_turns": _mean_std([r["report"]["ledger"]["model_calls"] for r in runs]),
            "total_wall_s": _mean_std(
                [r["report"]["ledger"]["seconds"].get("wall", 0.0) for r in runs]
            ),
        }
    methods = summary["methods"]
    # π0 on the curves' own tasks (their first point), where the target is measured.
    starts = [_cost_points(r)[0][2] for r in results]
    summary["base_accuracy"] = statistics.fmean(starts) if starts else 0.0
    # A gain π0 already has costs every method nothing: no comparison.
    comparable = gain is not None and gain > 0
    summary["comparable"] = comparable
    if comparable and "pivotrl" in methods and "e2e" in methods:
        p, e = methods["pivotrl"], methods["e2e"]
        summary["pivotrl_vs_e2e"] = {
            name: _ratio(e[key][0], p[key][0])
            for name, key in (
                ("turn_ratio", "turns_to_target"),
                ("wall_ratio", "wall_to_target_s"),
                ("training_turn_ratio", "training_turns_to_target"),
                ("training_wall_ratio", "training_wall_to_target_s"),
            )
        }
    return summary


def _ratio(theirs: float, ours: float) -> float:
    return theirs / ours if ours else float("nan")


# --------------------------------------------------------------------------------- plots


def plot_curves(results: list[dict[str, Any]], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = []
    for axis, xlabel, file in (
        (0, "rollout turns (sampled assistant turns)", "accuracy_vs_turns.png"),
        (1, "wall-clock seconds (evaluation excluded)", "accuracy_vs_wallclock.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        by_label: dict[str, list[list[tuple[float, float, float]]]] = {}
        for r in results:
            by_label.setdefault(r["arm"]["label"], []).append(_cost_points(r))
        for label, runs in sorted(by_label.items()):
            # From the first point on: PivotRL's curve starts after its profiling.
            first = min(run[0][axis] for run in runs)
            top = max(max(p[axis] for p in run) for run in runs) or 1.0
            grid = np.linspace(first, top, 50)
            ys = np.array(
                [np.interp(grid, [p[axis] for p in run], [100 * p[2] for p in run]) for run in runs]
            )
            mean, std = ys.mean(axis=0), ys.std(axis=0)
            (line,) = ax.plot(grid, mean, label=label, linewidth=2)
            if len(runs) > 1:
                ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            for run in runs:
                ax.plot(
                    [p[axis] for p in run],
                    [100 * p[2] for p in run],
                    "o",
                    color=line.get_color(),
                    markersize=3,
                    alpha=0.6,
                )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out in-domain success (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / file)
        plt.close(fig)
        names.append(file)
    return names


def _fmt(pair: Any, unit: str = "", digits: int = 1) -> str:
    mean, std = pair
    if mean != mean:  # nan
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


def markdown(summary: dict[str, Any]) -> str:
    gain = summary["target_gain"]
    lines = [
        f"Target: each seed's π0 accuracy {100 * gain:+.1f} pts (E2E RL's mean final change "
        f"unless given); π0 averages {summary['base_accuracy']:.1%}"
        if gain is not None
        else "Target: none (no E2E run)",
        "",
        "| method | seeds | in-domain change (pts) | OOD change (pts) | reached target "
        "| rollout turns to target | wall-clock to target (s) "
        "| of which training: turns | of which training: wall-clock (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in summary["methods"].items():
        lines.append(
            f"| {label} | {m['seeds']} | {_fmt(m['in_domain_change'])} | {_fmt(m['ood_change'])} | "
            f"{m['reached_target']} | {_fmt(m['turns_to_target'], digits=0)} | "
            f"{_fmt(m['wall_to_target_s'], digits=0)} | "
            f"{_fmt(m['training_turns_to_target'], digits=0)} | "
            f"{_fmt(m['training_wall_to_target_s'], digits=0)} |"
        )
    ratio = summary.get("pivotrl_vs_e2e")
    if gain is not None and not summary.get("comparable", True):
        lines += [
            "",
            f"No cost comparison: the target gain ({100 * gain:+.1f} pts) is not above zero, "
            "so no method had to learn anything to reach it.",
        ]
    elif ratio and any(v != v for v in ratio.values()):  # nan: a side never got there
        missing = [
            name
            for name, label in (("PivotRL", "pivotrl"), ("E2E RL", "e2e"))
            if summary["methods"][label]["reached_target"].startswith("0/")
        ]
        lines += [
            "",
            f"No cost ratio: {' and '.join(missing)} did not reach the target in any seed.",
        ]
    elif ratio:
        lines += [
            "",
            f"PivotRL vs E2E RL at the target: {ratio['turn_ratio']:.2f}x fewer rollout "
            f"turns, {ratio['wall_ratio']:.2f}x less wall-clock, offline profiling charged "
            f"to PivotRL; training alone (the paper's count): "
            f"{ratio['training_turn_ratio']:.2f}x fewer turns, "
            f"{ratio['training_wall_ratio']:.2f}x less wall-clock.",
        ]
    return "\n".join(lines) + "\n"


def md_to_html(md: str) -> str:
    """The Markdown that :func:`markdown` writes (paragraphs and pipe tables) as HTML."""
    blocks = []
    for block in md.strip().split("\n\n"):
        lines = block.splitlines()
        if all(line.startswith("|") for line in lines):
            rows = [
                [html.escape(cell.strip()) for cell in line.strip("|").split("|")]
                for line in lines
                if not set(line) <= set("|-: ")  # the separator row
            ]
            head = "".join(f"<th>{c}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
            blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            blocks.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return "\n".join(blocks)


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto}"
    "table{border-collapse:collapse;font-size:13px;width:100%}"
    "th,td{border:1px solid #ccc;padding:4px 6px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}"
)


def write_page(folder: Path, plots: list[str], md: str, command: str) -> None:
    images = "".join(f'<img src="{p}" style="max-width:48%;margin:1%">' for p in plots)
    folder.joinpath("index.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>pivotgym bench</title><style>{_STYLE}</style>"
        f"<h1>PivotRL vs E2E RL vs SFT</h1><div>{images}</div>"
        f"{md_to_html(md)}<p><code>{html.escape(command)}</code></p>"
    )


async def bench(
    base: RunConfig,
    *,
    methods: Sequence[str],
    seeds: int,
    ablations: Sequence[str],
    root: Path,
    target_gain: float | None,
    command: str,
) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for arm in arms(methods, ablations, seeds):
        console.rule(f"{arm.label}, seed {arm.seed}")
        results.append(await run_arm(base, arm, root))
    summary = analyse(results, target_gain)
    plots = plot_curves(results, root)
    md = markdown(summary)
    (root / "report.md").write_text(md)
    (root / "report.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    write_page(root, plots, md, command)
    console.print(md)
    return summary


def run_bench(base: RunConfig, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(bench(base, **kwargs))
