"""A whole run at tiny sizes: its cost curve starts on π0's evaluation and ends on the
trained policy's, and its ledger counts every sampled turn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pivotgym.config import load_config
from pivotgym.pipeline import Run


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
    report = asyncio.run(Run(config).e2e())
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
