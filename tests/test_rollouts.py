"""E2E rollouts: token-in/token-out episodes whose ids line up with the rendered conversation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from taskdirs import make_task
from tiny_models import tiny_tokenizer

import pivotgym
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, Sample, SamplingParams
from pivotgym.rl.rollouts import collect


def bash_call(command: str) -> dict:
    function = {"name": "bash", "arguments": json.dumps({"command": command})}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_0", "type": "function", "function": function}],
    }


class ScriptedEngine(Engine):
    """Always answers with the same assistant turn (a stand-in for a policy in this test)."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = tuple(ids)
        self.prompts: list[list[int]] = []

    @property
    def weight_version(self) -> str:
        return "7"

    async def generate(self, prompt_ids, n, sampling):
        self.prompts.append(list(prompt_ids))
        return [Sample(self.ids, (-0.5,) * len(self.ids), "", "stop", "7") for _ in range(n)]

    async def update_weights(self, path, version):
        raise NotImplementedError


def play(engine: Engine, fmt: ChatFormat, task, group: int, *, max_turns=None, max_tokens=None):
    """``group`` episodes of ``task`` in the terminal environment, sampled at temperature 1."""
    sampling = SamplingParams(1.0, 1.0, -1, 64, tuple(fmt.stop_ids), 0)
    return asyncio.run(
        collect(
            engine,
            fmt,
            lambda: pivotgym.make("terminal", tasks=[task]),
            [task],
            group,
            sampling,
            max_turns=max_turns,
            max_tokens=max_tokens,
            seed=1,
        )
    )


def test_episode_ids_are_the_rendered_conversation_with_actions_trained(tmp_path: Path) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    fmt = ChatFormat(tiny_tokenizer())
    action = bash_call("wc -l < data.txt > count.txt")
    engine = ScriptedEngine(fmt.action_ids(action))
    rollouts = play(engine, fmt, task, 2, max_turns=3, max_tokens=100_000)
    assert len(rollouts) == 2
    for rollout in rollouts:
        assert rollout.turns == 3 and rollout.reward == 1.0  # the test passes on the end state
        kinds = [lps is not None for _, lps in rollout.segments]
        assert kinds == [False, True, False, True, False, True]
        assert all(ids == list(engine.ids) for ids, lps in rollout.segments if lps is not None)
        sample = rollout.train_sample()
        assert sample.num_trained == 3 * len(engine.ids)
        assert sample.old_logprobs == (-0.5,) * sample.num_trained
        assert sample.group == task.name and sample.weight_version == "7"
    # Every prompt the policy saw is the rendering of the conversation so far: the ids the
    # environment added line up with the sampled ids, token for token.
    env = pivotgym.make("terminal", tasks=[task])
    try:
        obs, _ = env.reset(options={"task": task})
        for turn in range(3):
            assert engine.prompts[2 * turn] == fmt.prompt_ids(obs, env.tools)
            obs, *_ = env.step(
                dict(action, tool_calls=[dict(action["tool_calls"][0], id=f"call_{turn}")])
            )
    finally:
        env.close()


def test_token_budget_ends_an_episode_and_still_scores_it(tmp_path: Path) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    fmt = ChatFormat(tiny_tokenizer())
    action = bash_call("echo hi")
    engine = ScriptedEngine(fmt.action_ids(action))
    first = len(fmt.prompt_ids([{"role": "user", "content": task.instruction}]))
    (rollout,) = play(engine, fmt, task, 1, max_turns=50, max_tokens=first + 400)
    assert rollout.turns < 50 and rollout.reward == 0.0
    # Every prompt left room for a whole reply (64 new tokens) within the budget.
    assert max(len(p) for p in engine.prompts) + 64 <= first + 400 < len(engine.prompts[-1]) + 200


def test_no_episode_runs_past_the_model_context(tmp_path: Path) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 700
    fmt = ChatFormat(tokenizer)
    assert fmt.context_length == 700
    action = bash_call("cat data.txt data.txt")
    engine = ScriptedEngine(fmt.action_ids(action))
    (rollout,) = play(engine, fmt, task, 1)
    assert rollout.done and rollout.turns < task.config.max_turns
    assert max(len(p) for p in engine.prompts) + 64 <= 700
    # The episode's own record: its final conversation and what the policy generated.
    assert rollout.generated_tokens == rollout.turns * len(engine.ids)
    assert rollout.malformed_turns == 0
    assert [m["role"] for m in rollout.messages].count("assistant") == rollout.turns


def test_a_task_the_model_cannot_read_ends_before_its_first_turn(tmp_path: Path) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    fmt = ChatFormat(tiny_tokenizer())
    engine = ScriptedEngine(fmt.action_ids(bash_call("echo hi")))
    first = len(fmt.prompt_ids([{"role": "user", "content": task.instruction}]))
    (rollout,) = play(engine, fmt, task, 1, max_tokens=first + 10)  # no room for a reply
    assert engine.prompts == [] and rollout.done and rollout.turns == 0
    assert rollout.reward == 0.0 and rollout.infra_error is None  # scored, as a cut episode
    assert rollout.train_sample().num_trained == 0


def test_at_most_max_live_episodes_hold_an_environment_and_all_are_played(
    tmp_path: Path,
) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    fmt = ChatFormat(tiny_tokenizer())
    engine = ScriptedEngine(fmt.action_ids(bash_call("wc -l < data.txt > count.txt")))
    live: set[int] = set()
    most = 0

    def make_env():
        env = pivotgym.make("terminal", tasks=[task])
        reset, close = env.areset, env.aclose

        async def areset(**kwargs):
            nonlocal most
            live.add(id(env))
            most = max(most, len(live))
            return await reset(**kwargs)

        async def aclose():
            live.discard(id(env))
            await close()

        env.areset, env.aclose = areset, aclose
        return env

    sampling = SamplingParams(1.0, 1.0, -1, 64, tuple(fmt.stop_ids), 0)
    rollouts = asyncio.run(
        collect(engine, fmt, make_env, [task], 5, sampling, seed=1, max_turns=2, max_live=2)
    )
    assert most == 2 and not live
    assert [r.index for r in rollouts] == [0, 1, 2, 3, 4]
    assert all(r.done and r.turns == 2 and r.reward == 1.0 for r in rollouts)
    # Five episodes of two turns, at most two at a time: the engine saw every turn.
    assert len(engine.prompts) == 10
