"""Candidate states: the assistant turns of SFT trajectories that PivotRL may train on.

Every assistant turn ``t`` of every trajectory is a candidate ``(s_t, a*_t)``: the
conversation just before the turn and the expert's action. Its id
``"{trajectory_id}:{turn}"`` is stable across runs, so profiling results, pivot sets and
cached verifier effects key on it.

An environment may narrow the set with a rule, ``rule(trajectory, turn) -> bool``, that
its :class:`~pivotgym.core.registry.EnvSpec` carries (the terminal environment keeps only
turns that call a tool, :func:`calls_a_tool`). An environment without one, or not
registered at all, makes every turn a candidate. Rules are looked up by
``trajectory.env``; :func:`candidates` accepts an explicit ``rule`` that overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pivotgym.core.trajectory import Trajectory

Rule = Callable[[Trajectory, int], bool]


@dataclass(frozen=True)
class Candidate:
    """One assistant turn of a trajectory, as a state and the expert's action there.

    ``prefix`` is the conversation before the turn (the prompt a policy samples from);
    ``reference`` is the recorded assistant message ``a*_t``.
    """

    trajectory: Trajectory
    turn: int
    id: str
    prefix: list[dict[str, Any]]
    reference: dict[str, Any]

    @classmethod
    def of(cls, trajectory: Trajectory, turn: int) -> Candidate:
        return cls(
            trajectory=trajectory,
            turn=turn,
            id=candidate_id(trajectory.id, turn),
            prefix=trajectory.prefix(turn),
            reference=trajectory.action(turn),
        )

    @property
    def env(self) -> str:
        return self.trajectory.env

    def tools_or(self, default: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools the trajectory records, else ``default`` (its environment's)."""
        return list(self.trajectory.tools if self.trajectory.tools is not None else default)


def candidate_id(trajectory_id: str, turn: int) -> str:
    return f"{trajectory_id}:{turn}"


def all_turns(trajectory: Trajectory, turn: int) -> bool:
    """The default rule: every assistant turn is a candidate."""
    return True


def calls_a_tool(trajectory: Trajectory, turn: int) -> bool:
    """Turns whose expert action calls at least one tool (final answers are left out)."""
    return bool(trajectory.action(turn).get("tool_calls"))


def candidate_rule(env: str) -> Rule:
    """The rule of environment ``env``'s spec, or :func:`all_turns`."""
    from pivotgym.core.registry import registered

    spec = registered().get(env)
    return spec.candidates() if spec is not None else all_turns


def iter_candidates(
    trajectories: Iterable[Trajectory], rule: Rule | None = None
) -> Iterator[Candidate]:
    """Yield the candidates of ``trajectories`` in trajectory then turn order."""
    rules: dict[str, Rule] = {}
    for trajectory in trajectories:
        keep = rule
        if keep is None:
            keep = rules.get(trajectory.env)
            if keep is None:
                keep = rules[trajectory.env] = candidate_rule(trajectory.env)
        for turn in range(trajectory.num_turns):
            if keep(trajectory, turn):
                yield Candidate.of(trajectory, turn)


def candidates(trajectories: Iterable[Trajectory], rule: Rule | None = None) -> list[Candidate]:
    """Every candidate of ``trajectories``: all turns that the env's rule (or ``rule``) keeps."""
    return list(iter_candidates(trajectories, rule))
