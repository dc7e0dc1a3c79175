"""Combinators: one verdict from several verifiers.

- :func:`any_of`: the best reward; components run in order and stop at the first full
  pass, so put cheap verifiers first (``any_of(tool_call, execution)`` executes only the
  actions that do not match the demonstration outright).
- :func:`all_of`: the worst reward; stops at the first 0.
- :func:`weighted`: the weighted mean (weights normalised to sum 1); every component runs.

An infrastructure failure of a component makes the combined verdict one too only when
the result depends on it: ``any_of`` with another component passing, or ``all_of`` with
another failing, is decided anyway. ``weighted`` always depends on every component with
a positive weight.

Each combinator scores groups with its components' ``verify_many``, so an execution
component still forks once for the whole group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pivotgym.verifiers.base import Message, State, Verdict, Verifier, infra


class _Combinator(Verifier):
    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        if not verifiers:
            raise ValueError(f"{self.name} needs at least one verifier")
        self.verifiers = list(verifiers)

    async def verify(self, state: State, action: Message, reference: Message) -> Verdict:
        return (await self.verify_many(state, [action], reference))[0]

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        raise NotImplementedError  # combinators decide in verify_many


class _Extremum(_Combinator):
    """Shared by any_of (stop at 1, keep the max) and all_of (stop at 0, keep the min)."""

    decisive: float
    better: staticmethod

    async def verify_many(
        self, state: State, actions: Sequence[Message], reference: Message
    ) -> list[Verdict]:
        n = len(actions)
        best: list[Verdict | None] = [None] * n
        errors: list[list[Verdict]] = [[] for _ in range(n)]
        open_ = list(range(n))
        for verifier in self.verifiers:
            if not open_:
                break
            verdicts = await verifier.verify_many(state, [actions[i] for i in open_], reference)
            still = []
            for i, verdict in zip(open_, verdicts, strict=True):
                if verdict.infra_error:
                    errors[i].append(verdict)
                    still.append(i)
                    continue
                labelled = Verdict(
                    verdict.reward, f"{verifier.name}: {verdict.reason}", details=verdict.details
                )
                current = best[i]
                if current is None or self.better(verdict.reward, current.reward):
                    best[i] = labelled
                if verdict.reward == self.decisive:
                    best[i] = labelled
                    errors[i] = []
                else:
                    still.append(i)
            open_ = still
        out = []
        for i in range(n):
            verdict = best[i]
            if errors[i]:
                reasons = "; ".join(e.reason for e in errors[i])
                out.append(infra(f"{self.name}: undecided, a component failed ({reasons})"))
            else:
                assert verdict is not None
                out.append(verdict)
        return out


class AnyOf(_Extremum):
    name = "any_of"
    decisive = 1.0
    better = staticmethod(lambda a, b: a > b)


class AllOf(_Extremum):
    name = "all_of"
    decisive = 0.0
    better = staticmethod(lambda a, b: a < b)


class Weighted(_Combinator):
    name = "weighted"

    def __init__(self, verifiers: Sequence[Verifier], weights: Sequence[float]) -> None:
        super().__init__(verifiers)
        if len(weights) != len(self.verifiers):
            raise ValueError("weighted needs one weight per verifier")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        total = float(sum(weights))
        self.weights = [w / total for w in weights]

    async def verify_many(
        self, state: State, actions: Sequence[Message], reference: Message
    ) -> list[Verdict]:
        columns = await asyncio.gather(
            *(v.verify_many(state, actions, reference) for v in self.verifiers)
        )
        out = []
        for row in zip(*columns, strict=True):
            failed = [
                f"{v.name}: {d.reason}"
                for v, d, w in zip(self.verifiers, row, self.weights, strict=True)
                if d.infra_error and w > 0
            ]
            if failed:
                out.append(infra(f"weighted: a component failed ({'; '.join(failed)})"))
                continue
            reward = sum(w * d.reward for d, w in zip(row, self.weights, strict=True))
            parts = [f"{v.name} {d.reward:.2f}" for v, d in zip(self.verifiers, row, strict=True)]
            out.append(Verdict(min(1.0, reward), "weighted: " + ", ".join(parts)))
        return out


def any_of(*verifiers: Verifier) -> Verifier:
    """1 when any verifier passes (the best reward otherwise)."""
    return AnyOf(verifiers)


def all_of(*verifiers: Verifier) -> Verifier:
    """1 when every verifier passes (the worst reward otherwise)."""
    return AllOf(verifiers)


def weighted(pairs: Sequence[tuple[Verifier, float]]) -> Verifier:
    """The weighted mean of the verifiers' rewards; ``pairs`` are ``(verifier, weight)``."""
    return Weighted([v for v, _ in pairs], [w for _, w in pairs])
