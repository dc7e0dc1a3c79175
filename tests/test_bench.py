"""The bench's analysis: cost to reach a target, changes vs π0, ratios, plots."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pivotgym.errors import DataError
from pivotgym.runs.bench import (
    QUICK,
    ablation_overrides,
    analyse,
    arms,
    cost_to_reach,
    eval_key,
    markdown,
    plot_curves,
    run_arm,
    write_page,
)
from pivotgym.runs.config import RunConfig, apply_overrides


def result(
    label: str, seed: int, points: list[tuple[int, float, float]], base: float, final: float
):
    curve = [
        {"step": i, "success": s, "ledger": {"model_calls": t, "seconds": {"wall": w}}}
        for i, (t, w, s) in enumerate(points)
    ]
    report = {
        "in_domain_base": base,
        "in_domain_final": final,
        "ood_base": 0.5,
        "ood_final": 0.48,
        "ledger": {"model_calls": points[-1][0], "seconds": {"wall": points[-1][1]}},
    }
    return {
        "arm": {"label": label, "method": label, "seed": seed},
        "report": report,
        "curve": curve,
    }


RESULTS = [
    result("e2e", 0, [(0, 0.0, 0.2), (400, 100.0, 0.3), (800, 200.0, 0.4)], 0.2, 0.4),
    result("e2e", 1, [(0, 0.0, 0.2), (400, 120.0, 0.3), (800, 220.0, 0.4)], 0.2, 0.4),
    result("pivotrl", 0, [(0, 0.0, 0.2), (100, 20.0, 0.45), (200, 40.0, 0.5)], 0.2, 0.5),
    result("pivotrl", 1, [(0, 0.0, 0.2), (100, 30.0, 0.35), (200, 50.0, 0.42)], 0.2, 0.42),
]


def test_cost_to_reach_is_the_first_point_the_gain_above_the_first() -> None:
    assert cost_to_reach(RESULTS[2], 0.2) == (100, 20.0)
    assert cost_to_reach(RESULTS[3], 0.2) == (200, 50.0)
    assert cost_to_reach(RESULTS[3], 0.7) is None
    # Fractions of whole tasks: 0.35 - 0.2 is 0.15 up to float noise, and counts.
    assert cost_to_reach(RESULTS[3], 0.15) == (100, 30.0)


def test_analysis_targets_e2e_mean_gain_and_reports_ratios() -> None:
    summary = analyse(RESULTS, None)
    assert summary["target_gain"] == pytest.approx(0.2)
    p, e = summary["methods"]["pivotrl"], summary["methods"]["e2e"]
    assert p["reached_target"] == "2/2" and e["reached_target"] == "2/2"
    assert p["turns_to_target"] == (150.0, 50.0)
    assert e["turns_to_target"] == (800.0, 0.0)
    assert summary["pivotrl_vs_e2e"]["turn_ratio"] == pytest.approx(800 / 150)
    assert summary["pivotrl_vs_e2e"]["wall_ratio"] == pytest.approx(210 / 35)
    assert p["in_domain_change"][0] == pytest.approx(26.0)
    assert p["ood_change"][0] == pytest.approx(-2.0)


def test_profiling_counts_in_the_cost_and_training_alone_is_reported_beside_it() -> None:
    profiled = [
        RESULTS[0],
        result("pivotrl", 0, [(300, 60.0, 0.2), (400, 80.0, 0.45), (500, 100.0, 0.5)], 0.2, 0.5),
    ]
    assert cost_to_reach(profiled[1], 0.2) == (400, 80.0)
    assert cost_to_reach(profiled[1], 0.2, training_only=True) == (100, 20.0)
    summary = analyse(profiled, None)
    p = summary["methods"]["pivotrl"]
    assert p["turns_to_target"] == (400.0, 0.0) and p["training_turns_to_target"] == (100.0, 0.0)
    ratio = summary["pivotrl_vs_e2e"]
    assert ratio["turn_ratio"] == pytest.approx(2.0) and ratio["wall_ratio"] == pytest.approx(2.5)
    assert ratio["training_turn_ratio"] == pytest.approx(8.0)
    assert ratio["training_wall_ratio"] == pytest.approx(10.0)
    assert "training alone (the paper's count): 8.00x fewer turns, 10.00x" in markdown(summary)


def test_the_target_is_a_gain_over_each_seeds_own_pi0() -> None:
    # π0 differs by seed; E2E RL gains 10 points on both. An accuracy target (the mean
    # final, 0.35) would sit below seed 1's π0 and cost nothing there.
    runs = [
        result("e2e", 0, [(0, 0.0, 0.2), (400, 100.0, 0.25), (800, 200.0, 0.3)], 0.2, 0.3),
        result("e2e", 1, [(0, 0.0, 0.4), (400, 100.0, 0.45), (800, 200.0, 0.5)], 0.4, 0.5),
        result("pivotrl", 0, [(0, 0.0, 0.2), (100, 20.0, 0.3), (200, 40.0, 0.35)], 0.2, 0.35),
        result("pivotrl", 1, [(0, 0.0, 0.4), (100, 20.0, 0.45), (200, 40.0, 0.5)], 0.4, 0.5),
    ]
    summary = analyse(runs, None)
    assert summary["target_gain"] == pytest.approx(0.1)
    assert summary["base_accuracy"] == pytest.approx(0.3)
    p, e = summary["methods"]["pivotrl"], summary["methods"]["e2e"]
    assert e["turns_to_target"] == (800.0, 0.0)
    assert p["turns_to_target"] == (150.0, 50.0)
    assert "each seed's π0 accuracy +10.0 pts" in markdown(summary)
    # A gain given by hand is used as it is.
    assert analyse(runs, 0.05)["methods"]["e2e"]["turns_to_target"] == (400.0, 0.0)
    # One E2E RL never reaches: no ratio, and the report says who did not get there.
    beyond = markdown(analyse(runs, 0.101))
    assert "No cost ratio: E2E RL did not reach the target in any seed." in beyond
    assert "nan" not in beyond


def test_no_cost_comparison_when_e2e_gains_nothing() -> None:
    flat = [
        result("e2e", 0, [(0, 0.0, 0.3), (400, 100.0, 0.2)], 0.3, 0.2),
        result("pivotrl", 0, [(0, 0.0, 0.3), (100, 20.0, 0.3)], 0.3, 0.3),
    ]
    summary = analyse(flat, None)
    assert summary["comparable"] is False and "pivotrl_vs_e2e" not in summary
    assert "No cost comparison" in markdown(summary)


def test_the_page_renders_the_tables_as_html_tables(tmp_path: Path) -> None:
    summary = analyse(RESULTS, None)
    write_page(tmp_path, [], markdown(summary), "pivotgym bench")
    page = (tmp_path / "index.html").read_text()
    assert "<pre" not in page and "|---" not in page and page.count("<table>") == 1
    rows = page.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
    assert rows == len(summary["methods"]) and "<th>method</th>" in page


def test_plots_are_written(tmp_path: Path) -> None:
    names = plot_curves(RESULTS, tmp_path)
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_arms_and_ablations() -> None:
    made = arms(["pivotrl", "e2e"], ["no-filter", "lambda=0.5"], seeds=2)
    assert [a.label for a in made[:4]] == [
        "pivotrl",
        "e2e",
        "pivotrl[no-filter]",
        "pivotrl[lambda=0.5]",
    ]
    assert {a.seed for a in made} == {0, 1} and len(made) == 8
    assert ablation_overrides("k=4") == ["profile.k=4"]
    with pytest.raises(DataError, match="unknown ablation"):
        ablation_overrides("bogus")
    with pytest.raises(DataError, match="unknown method"):
        arms(["ppo"], [], 1)


def test_arms_of_one_seed_share_the_evaluation_of_pi0() -> None:
    def key(seed: int, overrides: list[str]) -> str:
        config = RunConfig(seed=seed)
        apply_overrides(config, overrides, "test")
        return eval_key(config)

    shared = key(0, [])
    for arm in arms(["pivotrl", "e2e", "sft"], ["no-filter", "exact-reward", "k=4"], seeds=1):
        assert key(arm.seed, list(arm.overrides)) == shared, arm.label
    assert key(1, []) != shared
    assert key(0, ["data.eval_tasks=24"]) != shared
    assert key(0, ["eval.temperature=1.0"]) != shared
    assert key(0, ["model=runs/other"]) != shared


def test_a_finished_quick_arm_is_not_taken_for_a_full_one(tmp_path: Path) -> None:
    quick = RunConfig()
    apply_overrides(quick, QUICK, "test")
    arm = arms(["pivotrl"], [], seeds=1)[0]
    folder = tmp_path / "pivotrl-s0"
    folder.mkdir()
    quick.out, quick.train.eval_every = str(folder), 4
    (folder / "config.toml").write_text(quick.dump_toml())
    (folder / "report.json").write_text("{}")
    with pytest.raises(DataError, match="this run was made with") as err:
        asyncio.run(run_arm(RunConfig(), arm, tmp_path))
    assert err.value.file == str(folder / "config.toml")
