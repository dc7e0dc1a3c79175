"""Candidates: every assistant turn, stable ids, per-environment rules from the env's spec."""

from __future__ import annotations

import pivotgym
from pivotgym.core import registry
from pivotgym.core.candidates import (
    Candidate,
    all_turns,
    calls_a_tool,
    candidate_rule,
    candidates,
)
from pivotgym.core.registry import EnvSpec, register
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.terminal.env import TerminalEnv


def _trajectory(env: str, tid: str = "t1") -> Trajectory:
    call = {"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    return Trajectory(
        tid,
        env,
        {"name": "x"},
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "thinking", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c0", "content": "ok"},
            {"role": "assistant", "content": "done"},
        ],
    )


def test_every_turn_is_a_candidate_by_default() -> None:
    trajectory = _trajectory("no-such-env-anywhere")
    found = candidates([trajectory])
    assert [c.id for c in found] == ["t1:0", "t1:1"]
    first, second = found
    assert first.prefix == trajectory.messages[:1] and first.reference == trajectory.messages[1]
    assert second.prefix == trajectory.messages[:3] and second.reference["content"] == "done"
    assert first.trajectory is trajectory and first.turn == 0 and first.env == trajectory.env
    assert candidate_rule("no-such-env-anywhere") is all_turns


def test_terminal_keeps_the_turns_that_call_a_tool_on_the_bundled_data() -> None:
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    assert candidate_rule("terminal") is calls_a_tool  # declared by the terminal's spec
    found = candidates(trajectories)
    tool_turns = sum(
        1 for t in trajectories for i in range(t.num_turns) if t.action(i).get("tool_calls")
    )
    assert len(found) == tool_turns < sum(t.num_turns for t in trajectories)
    assert all(c.reference.get("tool_calls") for c in found)
    ids = [c.id for c in found]
    assert len(set(ids)) == len(ids)
    assert ids == [c.id for c in candidates(trajectories)]  # stable
    c = found[5]
    assert c.id == f"{c.trajectory.id}:{c.turn}"
    assert c == Candidate.of(c.trajectory, c.turn)


def test_explicit_rule_overrides_and_the_spec_declares_a_rule(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_specs", dict(registry.registered()))  # undone after
    trajectory = _trajectory("custom-env-for-candidates")
    assert len(candidates([trajectory], rule=calls_a_tool)) == 1
    register(EnvSpec("custom-env-for-candidates", entry_point=TerminalEnv,
                     candidate_rule=lambda t, turn: turn == 1))  # fmt: skip
    assert [c.id for c in candidates([trajectory])] == ["t1:1"]
    assert [c.id for c in candidates([trajectory], rule=all_turns)] == ["t1:0", "t1:1"]
