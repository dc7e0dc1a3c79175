"""Offline profiling: resumable, deterministic, append-only."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from pathlib import Path

import pytest
from tiny_models import tiny_checkpoint

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.core.replay import SnapshotCache
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.pivotrl.pivots import select_pivots
from pivotgym.pivotrl.profiling import Profiler, ProfileSettings, read_done, summarize
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.verifiers import get_verifier


@pytest.fixture(scope="module")
def profiler() -> Profiler:
    from pivotgym.policy import models

    model, tokenizer = models.load(tiny_checkpoint())
    cache = SnapshotCache()
    return Profiler(
        engine=TorchEngine(model, tokenizer),
        chat=ChatFormat(tokenizer),
        verifier=get_verifier("similarity", threshold=0.0),
        make_env=lambda: pivotgym.make("terminal", tasks=[], cache=cache),
        tools=TerminalEnv.tools,
        settings=ProfileSettings(k=3, max_new_tokens=24, engine_batch=2, sandbox_slots=2, seed=7),
    )


def pool() -> list:
    trajectories = pivotgym.load_trajectories("terminal", split="train")[:3]
    return list(candidates(trajectories))[:5]


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_interrupted_run_resumes_to_the_same_rows(profiler: Profiler, tmp_path: Path) -> None:
    cands = pool()
    whole = asyncio.run(profiler.run(cands, tmp_path / "whole.jsonl", show_progress=False))
    assert [r["candidate_id"] for r in whole] == [c.id for c in cands]
    assert all(len(r["rewards"]) == 3 and r["n_valid"] == 3 for r in whole)

    part = tmp_path / "part.jsonl"
    asyncio.run(profiler.run(cands[:2], part, show_progress=False))
    with part.open("a") as fh:  # a crash tore the next row in half
        fh.write('{"candidate_id": "torn')
    resumed = asyncio.run(profiler.run(cands, part, show_progress=False))
    assert stable(resumed) == stable(whole)
    lines = part.read_text().splitlines()
    assert len(lines) == len(cands) and all(json.loads(line) for line in lines)
    # A finished file is not profiled again, and a smaller pool gets its own rows only.
    again = asyncio.run(profiler.run(cands, part, show_progress=False))
    assert part.read_text().count("\n") == len(cands) and stable(again) == stable(whole)
    fewer = asyncio.run(profiler.run(cands[3:1:-1], part, show_progress=False))
    assert stable(fewer) == stable(whole[3:1:-1])


def test_a_state_the_machine_does_not_reproduce_is_no_pivot_and_the_rest_go_on(
    profiler: Profiler, tmp_path: Path
) -> None:
    good = pool()[:2]
    trajectory = good[0].trajectory
    messages = [dict(m) for m in trajectory.messages]
    tool = next(i for i, m in enumerate(messages) if m["role"] == "tool")
    messages[tool]["content"] = "an output this command never printed"
    tampered = dataclasses.replace(trajectory, id=trajectory.id + "-tampered", messages=messages)
    bad = next(c for c in candidates([tampered]) if c.turn > 0)
    order = [good[0], bad, good[1]]
    rows = asyncio.run(profiler.run(order, tmp_path / "p.jsonl", show_progress=False))
    by_id = {r["candidate_id"]: r for r in rows}
    assert by_id[bad.id]["n_valid"] == 0 and all(by_id[bad.id]["infra"])
    assert "state not reproduced" in by_id[bad.id]["reasons"][0]
    assert all(by_id[c.id]["n_valid"] == 3 for c in good)
    kept, report = select_pivots(rows, 1.0)
    assert bad.id not in {r["candidate_id"] for r in kept} and report.no_valid_samples == 1


def test_read_done_cuts_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"candidate_id": "a:0"}\n{"candidate_id": "b')
    assert list(read_done(path)) == ["a:0"]
    assert path.read_text() == '{"candidate_id": "a:0"}\n'


def test_summary_excludes_infrastructure_failures() -> None:
    assert summarize([1.0, 0.0, 0.0], [False, False, True]) == (2, 0.5, 0.25)
    assert summarize([0.0], [True]) == (0, 0.0, 0.0)


def test_a_state_beyond_the_models_context_is_not_sampled_and_never_a_pivot(
    profiler: Profiler, tmp_path: Path
) -> None:
    cands = pool()[:3]
    lengths = [len(profiler.chat.prompt_ids(c.prefix, TerminalEnv.tools)) for c in cands]
    short = copy.copy(profiler.chat)  # a model that reads only the shortest of them
    short.context_length = min(lengths) + profiler.settings.max_new_tokens
    narrow = Profiler(
        engine=profiler.engine, chat=short, verifier=profiler.verifier,
        make_env=profiler.make_env, tools=TerminalEnv.tools, settings=profiler.settings,
    )  # fmt: skip
    rows = asyncio.run(narrow.run(cands, tmp_path / "p.jsonl", show_progress=False))
    beyond = [r["beyond_context"] for r in rows]
    assert beyond == [n > min(lengths) for n in lengths] and any(beyond)
    assert all(r["k"] == 0 and r["rewards"] == [] for r in rows if r["beyond_context"])
    assert all(r["k"] == 3 for r in rows if not r["beyond_context"])
    _, report = select_pivots(rows, 0.75)
    assert report.beyond_context == sum(beyond) and report.no_valid_samples == 0
