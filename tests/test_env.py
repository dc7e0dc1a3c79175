"""The environment API: reset to any turn, fork, step, episode ends, Gymnasium facade."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from taskdirs import make_task

import pivotgym
from pivotgym.core.env import ToolCall, run_sync
from pivotgym.core.replay import CacheEntry, SnapshotCache
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.errors import DataError, DivergenceError


def bash(command: str, call_id: str = "c", content: str | None = None) -> dict:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"command": command})},
            }
        ],
    }


FINAL = {"role": "assistant", "content": "Done."}
COMMANDS = [
    "mkdir -p out && cd out",
    "export N=$(wc -l < ../data.txt); echo $N",
    "echo $N > ../count.txt; pwd",
    "cat ../count.txt",
]


@pytest.fixture
def task(tmp_path: Path) -> pivotgym.Task:
    return pivotgym.load_task(make_task(tmp_path))


def record(env, task, commands=COMMANDS) -> Trajectory:
    """Play ``commands`` live and return the episode as a trajectory (task by path)."""
    obs, _ = env.reset(options={"task": task})
    for i, command in enumerate(commands):
        obs, *_ = env.step(bash(command, f"c{i}"))
    obs, reward, terminated, _, _ = env.step(FINAL)
    assert terminated and reward == 1.0
    return Trajectory("rec", "terminal", str(task.root), obs)


def listing(env) -> str:
    result = pivotgym.run_sync(
        env.sandbox.exec(
            ["bash", "-c", "find . -type f | sort | xargs -r sha256sum; cat /run/pivotgym/cwd"]
        )
    )
    return result.output


def test_check_env_passes_on_the_facade(task) -> None:
    env = pivotgym.make("terminal", tasks=[task])
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_action_space_rejects_malformed_call_shapes_without_raising() -> None:
    space = ToolCall(TerminalEnv.tools)
    assert space.contains(bash("ls"))
    for calls in (
        [{"id": "a", "function": "bash"}],
        [{"id": "a", "function": {"name": ["bash"]}}],
        ["bash"],
        "ls",
        {"function": {"name": "bash"}},
    ):
        assert space.contains({"role": "assistant", "content": None, "tool_calls": calls}) is False


def test_gymnasium_make_builds_the_terminal_env(task) -> None:
    env = gymnasium.make("pivotgym/Terminal-v0", tasks=[task])
    try:
        obs, info = env.reset(seed=1)
        assert obs[-1] == {"role": "user", "content": task.instruction}
        assert info["task"] == task.name
        obs, reward, terminated, truncated, info = env.step(bash("echo hi"))
        assert (
            obs[-1]["content"] == "hi\n" and not terminated and info["calls"][0]["exit_code"] == 0
        )
    finally:
        env.close()


def test_shell_state_persists_and_episode_scores_the_test(task) -> None:
    env = pivotgym.make("terminal", tasks=[task])
    try:
        trajectory = record(env, task)
        outputs = [m["content"] for m in trajectory.messages if m["role"] == "tool"]
        assert outputs == ["", "3\n", "/app/out\n", "3\n"]
    finally:
        env.close()


def test_reset_to_every_turn_matches_the_live_state(task) -> None:
    env = pivotgym.make("terminal", tasks=[task])
    try:
        obs, _ = env.reset(options={"task": task})
        live = [listing(env)]
        for i, command in enumerate(COMMANDS):
            obs, *_ = env.step(bash(command, f"c{i}"))
            live.append(listing(env))
        env.step(FINAL)
        trajectory = Trajectory("rec", "terminal", str(task.root), env.messages)
        replayed = 0
        for turn in range(trajectory.num_turns):
            obs, info = env.reset(options={"trajectory": trajectory, "turn": turn})
            assert obs == trajectory.prefix(turn)
            assert listing(env) == live[turn]
            assert info["divergences"] == []
            replayed += info["replayed_steps"]
        assert replayed == trajectory.num_turns - 1
        # Out of order and repeated restores replay nothing more.
        for turn in (3, 0, 2, 4):
            _, info = env.reset(options={"trajectory": trajectory, "turn": turn})
            assert info["replayed_steps"] == 0 and listing(env) == live[turn]
    finally:
        env.close()


def test_replay_divergence_policies(task) -> None:
    env = pivotgym.make("terminal", tasks=[task], cache=SnapshotCache())
    try:
        trajectory = record(env, task)
        tampered = Trajectory(
            "bad", "terminal", trajectory.task, json.loads(json.dumps(trajectory.messages))
        )
        tampered.messages[5]["content"] = "4\n"  # the recorded `echo $N` said 3
        with pytest.raises(DivergenceError, match="turn 1"):
            env.reset(options={"trajectory": tampered, "turn": 3})
        _, info = env.reset(options={"trajectory": tampered, "turn": 3, "divergence": "lenient"})
        assert [d["turn"] for d in info["divergences"]] == [1]
        assert info["divergences"][0]["recorded"] == "4\n"
        _, info = env.reset(options={"trajectory": tampered, "turn": 3, "divergence": "off"})
        assert info["divergences"] == [] or info["replayed_steps"] == 0
    finally:
        env.close()


def test_normalizer_ignores_timestamps_and_task_patterns(tmp_path: Path) -> None:
    task = pivotgym.load_task(
        make_task(tmp_path, toml='[pivotgym]\nnormalize = ["token-[a-z]+"]\n')
    )
    env = pivotgym.make("terminal", tasks=[task])
    try:
        env.reset(options={"task": task})
        messages = list(env.messages)
        messages += [
            bash("echo 2023-11-14T22:13:20Z token-abc", "c0"),
            {"role": "tool", "tool_call_id": "c0", "content": "2031-01-01T00:00:00Z token-xyz\n"},
            FINAL,
        ]
        trajectory = Trajectory("norm", "terminal", str(task.root), messages)
        _, info = env.reset(options={"trajectory": trajectory, "turn": 1})
        assert info["divergences"] == []
    finally:
        env.close()


def test_fork_branches_are_independent(task) -> None:
    env = pivotgym.make("terminal", tasks=[task])
    try:
        trajectory = record(env, task)
        env.reset(options={"trajectory": trajectory, "turn": 2})
        branches = env.fork(4)
        results = [
            b.step(bash(f"echo {i} > mine.txt; export B={i}; cat mine.txt"))
            for i, b in enumerate(branches)
        ]
        assert [r[0][-1]["content"] for r in results] == ["0\n", "1\n", "2\n", "3\n"]
        assert [b.step(bash("echo $B; pwd"))[0][-1]["content"] for b in branches] == [
            f"{i}\n/app/out\n" for i in range(4)
        ]
        _, _, _, _, info = env.step(bash("ls mine.txt"))
        assert info["calls"][0]["exit_code"] == 2
        assert len(env.messages) == len(trajectory.prefix(2)) + 2
        for b in branches:
            b.close()
    finally:
        env.close()


def test_async_api_forks_and_steps_concurrently(task) -> None:
    async def main() -> list[str]:
        env = pivotgym.make("terminal", tasks=[task])
        try:
            await env.areset(options={"task": task})
            branches = await env.afork(3)
            steps = await asyncio.gather(
                *(
                    b.astep(bash(f"echo {i} | tee f; cat data.txt | wc -l"))
                    for i, b in enumerate(branches)
                )
            )
            for b in branches:
                await b.aclose()
            return [s[0][-1]["content"] for s in steps]
        finally:
            await env.aclose()

    assert asyncio.run(main()) == ["0\n3\n", "1\n3\n", "2\n3\n"]


def test_episode_ends_on_submit_no_call_or_turn_limit(task) -> None:
    env = pivotgym.make("terminal", tasks=[task], max_turns=2)
    try:
        env.reset()
        submit = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "s", "type": "function", "function": {"name": "submit", "arguments": "{}"}}
            ],
        }
        _, reward, terminated, truncated, info = env.step(submit)
        assert (terminated, truncated, reward) == (True, False, 0.0)
        assert info["test"]["exit_code"] == 0
        env.reset()
        env.step(bash("wc -l < data.txt > count.txt"))
        _, reward, terminated, truncated, _ = env.step(bash("true"))
        assert (terminated, truncated, reward) == (False, True, 1.0)
        with pytest.raises(RuntimeError, match="episode is over"):
            env.step(bash("true"))
    finally:
        env.close()


def test_bad_reset_options_are_data_errors(task) -> None:
    env = pivotgym.make("terminal", tasks=[task])
    try:
        with pytest.raises(DataError, match="unknown reset option"):
            env.reset(options={"turm": 1})
        with pytest.raises(DataError, match="no task named"):
            env.reset(options={"task": "nope"})
        trajectory = record(env, task)
        with pytest.raises(DataError, match="out of range"):
            env.reset(options={"trajectory": trajectory, "turn": 99})
    finally:
        env.close()


def test_bundled_trajectory_restores_and_finishes_with_reward() -> None:
    trajectory = next(
        t for t in pivotgym.load_trajectories("terminal", split="train") if t.num_turns >= 4
    )
    env = pivotgym.make("terminal", tasks=[])
    try:
        obs, info = env.reset(options={"trajectory": trajectory, "turn": 2})
        assert obs == trajectory.prefix(2) and info["divergences"] == []
        reward = 0.0
        for turn in range(2, trajectory.num_turns):
            obs, reward, terminated, truncated, _ = env.step(trajectory.action(turn))
        assert terminated and reward == 1.0
    finally:
        env.close()


def test_a_snapshot_a_restore_builds_on_outlives_its_entry_being_replaced(task) -> None:
    class Recorded:
        released = False

        async def release(self) -> None:
            self.released = True

    async def scenario() -> tuple[bool, bool]:
        cache = SnapshotCache()
        first, second = Recorded(), Recorded()
        await cache.put("task", "prefix", CacheEntry(first))
        cache.hold(first)  # a restore building on it
        await cache.put("task", "prefix", CacheEntry(second))  # another restore's
        kept = not first.released
        await cache.drop(first)
        return kept, first.released

    assert asyncio.run(scenario()) == (True, True)
    # Many restores of one prefix at once, sharing one cold cache: none loses its base.
    cache = SnapshotCache()
    env = TerminalEnv(tasks=[task], cache=cache)
    trajectory = record(env, task)

    async def restore_many() -> list[Any]:
        envs = [TerminalEnv(tasks=[task], cache=cache) for _ in range(12)]
        try:
            return await asyncio.gather(*(e.areset(options={"trajectory": trajectory,
                                                            "turn": 3}) for e in envs),
                                        return_exceptions=True)  # fmt: skip
        finally:
            for e in envs:
                await e.aclose()

    results = run_sync(restore_many())
    assert not [r for r in results if isinstance(r, BaseException)], results
    env.close()
