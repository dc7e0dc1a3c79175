"""A whole run at tiny sizes: its cost curve starts on π0's evaluation and ends on the
trained policy's, and its ledger counts every sampled turn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pivotgym.rl.rollouts import Rollout
from pivotgym.runs.config import load_config
from pivotgym.runs.e2e import E2E
from pivotgym.runs.evaluation import EpisodeReport
from pivotgym.runs.pivotrl import PivotRL
from pivotgym.runs.report import report_markdown


def test_an_e2e_run_curves_from_pi0_to_its_final_evaluation_and_counts_every_turn(
    tmp_path: Path,
) -> None:
    config = load_config(
        overrides=[
            f"out='{tmp_path / 'run'}'",
            "data.eval_tasks=3",
            "data.ood_questions=3",
            "train.eval_every=1",
            "e2e.steps=2",
            "e2e.tasks_per_step=1",
            "e2e.group_size=2",
            "e2e.max_turns=3",
        ]
    )
    report = asyncio.run(E2E(config).execute())
    out = Path(config.out)
    curve = [json.loads(line) for line in (out / "curve.jsonl").open()]
    assert [p["step"] for p in curve] == [0, 1, 2]
    assert curve[0]["success"] == report["in_domain_base"]
    assert curve[-1]["success"] == report["in_domain_final"]
    assert curve[-1]["ood"] == report["ood_final"]
    assert (out / "eval_step1.json").exists()
    # The ledger at each point holds exactly the turns sampled so far (evaluation is not
    # charged): 2 episodes a step, each a model call a turn.
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    turns = [round(2 * m["episode_turns"]) for m in metrics]
    assert [p["ledger"]["model_calls"] for p in curve] == [0, turns[0], turns[0] + turns[1]]
    assert report["ledger"]["model_calls"] == sum(turns)
    assert 2 <= sum(turns) <= 2 * 2 * 3
    assert report["infra_errors_base"] == report["infra_errors_final"] == 0
    assert "infrastructure failures" in (out / "report.md").read_text()


def test_episodes_the_harness_could_not_score_are_counted_beside_the_success_rate() -> None:
    episodes = [
        Rollout("a", 0, reward=1.0),
        Rollout("a", 1, infra_error="sandbox died during exec"),
        Rollout("b", 0, reward=0.0),
    ]
    summary = EpisodeReport(episodes).to_json()
    assert summary["episodes"] == 3 and summary["infra_errors"] == 1
    assert summary["success_rate"] == 0.5  # over the episodes that were scored
    report = {
        "method": "pivotrl", "env": "terminal", "in_domain_base": 0.5, "in_domain_final": 0.6,
        "ood_base": 0.5, "ood_final": 0.5, "infra_errors_base": 1, "infra_errors_final": 3,
        "timings": {"total_s": 1.0}, "ledger": {"model_calls": 0},
    }  # fmt: skip
    assert "| infrastructure failures (episodes not scored) | 1 | 3 | |" in report_markdown(report)


def test_a_pivotrl_run_without_pivots_reports_pi0_unchanged(tmp_path: Path) -> None:
    # A tool-API prompt is longer than pivotgym-tiny's context: no candidate is sampled.
    config = load_config(
        overrides=[
            "env='tools'",
            f"out='{tmp_path / 'run'}'",
            "data.max_candidates=4",
            "profile.k=2",
            "data.eval_tasks=2",
            "data.ood_questions=2",
        ]
    )
    report = asyncio.run(PivotRL(config).execute())
    out = Path(config.out)
    assert (report["pivots"], report["train_steps"]) == (0, 0)
    assert json.loads((out / "filter.json").read_text())["beyond_context"] == 4
    assert report["in_domain_final"] == report["in_domain_base"]
    assert report["ood_final"] == report["ood_base"]
    assert (out / "policy" / "model.safetensors").exists()
    assert report["ledger"]["model_calls"] == 0  # nothing sampled past the context
    assert "| training steps | 0 |" in (out / "report.md").read_text()
