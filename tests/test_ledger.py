"""The cost ledger counts exactly what it says."""

from __future__ import annotations

import asyncio
import json

import pytest
from tiny_models import tiny_checkpoint

import pivotgym
from pivotgym.core.ledger import Ledger, load_ledger
from pivotgym.policy.engines.base import SamplingParams
from pivotgym.policy.engines.counting import CountingEngine
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.policy.engines.weights import IN_PROCESS


def bash(command: str, call_id: str) -> dict:
    function = {"name": "bash", "arguments": json.dumps({"command": command})}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": function}]}  # fmt: skip


def test_engine_samples_and_tokens_are_counted_exactly() -> None:
    from pivotgym.policy import models

    model, tokenizer = models.load(tiny_checkpoint())
    ledger = Ledger()
    engine = CountingEngine(TorchEngine(model, tokenizer), ledger)
    # No stop ids: every sample runs to exactly max_new_tokens.
    sampling = SamplingParams(1.0, 1.0, -1, 5, (), 0)
    prompts = [[5, 6, 7], [8, 9]]
    groups = asyncio.run(engine.generate_batch(prompts, 3, sampling))
    assert [len(s.token_ids) for g in groups for s in g] == [5] * 6
    asyncio.run(engine.generate([1, 2, 3, 4], 2, sampling))
    assert ledger.counts["model_calls"] == 6 + 2
    assert ledger.counts["generated_tokens"] == 30 + 10
    assert ledger.counts["prompt_tokens"] == (3 + 2) * 3 + 4 * 2
    assert ledger.seconds["sampling"] > 0
    state = {k: v.clone() for k, v in model.state_dict().items()}
    asyncio.run(engine.load_state_dict(state, "1"))
    assert ledger.seconds["weight_sync"] > 0 and engine.weight_version == "1"
    assert engine.weight_sync is IN_PROCESS  # the wrapper keeps the inner engine's strategy


def test_environment_steps_and_replays_are_counted(tmp_path) -> None:
    from taskdirs import make_task

    task = pivotgym.load_task(make_task(tmp_path))
    ledger = Ledger()
    env = pivotgym.make("terminal", tasks=[task], ledger=ledger)
    try:
        env.reset(options={"task": task})
        for i in range(3):
            env.step(bash(f"echo {i}", f"c{i}"))
        assert ledger.counts["env_steps"] == 3
        trajectory = pivotgym.Trajectory("t", "terminal", str(task.root), list(env.messages))
        env.reset(options={"trajectory": trajectory, "turn": 2})  # replays 2 recorded steps
        assert ledger.counts["env_steps"] == 5
        branches = env.fork(2)
        for branch in branches:
            branch.step(bash("true", "x"))
            branch.close()
        assert ledger.counts["env_steps"] == 7  # forks charge the same ledger
        assert ledger.seconds["environment"] > 0
    finally:
        env.close()


def test_ledger_saves_and_loads(tmp_path) -> None:
    ledger = Ledger()
    ledger.count(model_calls=4, learner_tokens=100)
    with ledger.stage("learning"):
        pass
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(ledger.to_json()))
    again = load_ledger(path)
    assert again.to_json() == ledger.to_json()
    with pytest.raises(KeyError, match="unknown ledger count"):
        ledger.count(turns=1)
