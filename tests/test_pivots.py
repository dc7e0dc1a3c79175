"""The pivot filter and the exchange of pivot rows with NeMo-Gym."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.errors import DataError
from pivotgym.pivotrl.pivots import (
    from_nemo_row,
    import_nemo_rows,
    is_pivot,
    select_pivots,
    to_nemo_row,
    write_rows,
)

rewards = st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=8)


def profile(rs: list[float]) -> dict:
    mean = sum(rs) / len(rs)
    return {
        "n_valid": len(rs),
        "mean": mean,
        "variance": sum((r - mean) ** 2 for r in rs) / len(rs),
    }


@given(st.lists(rewards, max_size=30), st.sampled_from([0.25, 0.5, 0.75, 0.95, 1.0]))
def test_filter_keeps_exactly_informative_unmastered_candidates(groups, lam) -> None:
    rows = [profile(rs) for rs in groups]
    kept, report = select_pivots(rows, lam)
    expected = [
        r for r, rs in zip(rows, groups, strict=True) if len(set(rs)) > 1 and r["mean"] < lam
    ]
    assert kept == expected
    assert report.kept == len(expected) and report.candidates == len(rows)
    assert sum(report.mean_histogram) == len(rows)
    assert report.zero_variance == sum(len(set(rs)) == 1 for rs in groups)


def test_rows_without_valid_samples_are_not_pivots() -> None:
    kept, report = select_pivots([{"n_valid": 0, "mean": 0.0, "variance": 0.0}], 0.9)
    assert kept == [] and report.no_valid_samples == 1
    assert not is_pivot(0.5, 0.0, 0.9) and is_pivot(0.5, 0.25, 0.9) and not is_pivot(0.9, 0.1, 0.9)
    with pytest.raises(DataError, match="lambda_diff"):
        select_pivots([], 0.0)


def our_pivots() -> list[dict]:
    trajectories = pivotgym.load_trajectories("terminal", split="train")[:20]
    return [
        {"pivot_id": f"{t.id}:{k}", "trajectory_id": t.id, "turn": k, "env": "terminal",
         "task": t.task, "prefix": t.prefix(k), "reference": t.action(k),
         "tools": TerminalEnv.tools, "profile": {"mean": 0.5, "variance": 0.25, "k": 8}}
        for t in trajectories for k in range(t.num_turns)
    ]  # fmt: skip


def test_nemo_rows_round_trip(tmp_path: Path) -> None:
    pivots = our_pivots()
    rows = [to_nemo_row(p) for p in pivots]
    assert {r["expected_action"]["type"] for r in rows} == {"function_call", "message"}
    first = rows[0]
    assert set(first) >= {"responses_create_params", "expected_action", "pivot_id",
                          "trajectory_id", "decision_index"}  # fmt: skip
    assert first["responses_create_params"]["input"][0]["role"] == "system"
    path = tmp_path / "nemo.jsonl"
    write_rows(rows, path)
    back = import_nemo_rows(path)
    for ours, theirs in zip(pivots, back, strict=True):
        assert theirs["prefix"] == ours["prefix"]
        assert theirs["turn"] == ours["turn"] and theirs["pivot_id"] == ours["pivot_id"]
        assert theirs["tools"] == ours["tools"]
        ref, got = ours["reference"], theirs["reference"]
        assert [c["function"] for c in got.get("tool_calls") or []] == [
            c["function"] for c in ref.get("tool_calls") or []]  # fmt: skip
        if not ref.get("tool_calls"):
            assert got["content"] == ref["content"]


def test_bad_nemo_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = to_nemo_row(our_pivots()[0])
    bad = dict(good, expected_action={"type": "telepathy"})
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected_action.type: unknown"):
        import_nemo_rows(path)
    with pytest.raises(DataError, match="responses_create_params: missing field"):
        from_nemo_row({"expected_action": {}, "trajectory_id": "x"})
