"""One turn of a tool-API conversation against the expert's: the frame that the tool-API
environments' verifiers share.

At a candidate state the expert either called tools or spoke to the user; the sampled
turn must do the same kind of thing. Calls equal to the expert's after canonicalisation
against the tools' schemas (:mod:`pivotgym.verifiers.schema`; the order of calls within
a turn aside) pass; other calls are judged by their effect (:meth:`ToolTurn.effect`, the
env's own: executed in forks of the restored world beside the expert's). A message is
judged by :func:`~pivotgym.verifiers.dialogue.same_message` over the env's vocabulary
(:meth:`ToolTurn.asked`, :attr:`ToolTurn.pattern`).
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, passed
from pivotgym.verifiers.dialogue import FACT, same_message
from pivotgym.verifiers.schema import canonical_json


def same_results(got: Sequence[str], want: Sequence[str]) -> bool:
    """Whether two turns' tool results are the same, each compared as JSON where it is
    JSON, in any order."""

    def canonical(content: str) -> str:
        try:
            return canonical_json(json.loads(content))
        except ValueError:
            return content

    return sorted(map(canonical, got)) == sorted(map(canonical, want))


class ToolTurn(Verifier):
    """See the module docstring. ``threshold``: the similarity a message needs."""

    pattern: re.Pattern[str] = FACT
    """What counts as a fact in a message (:func:`~pivotgym.verifiers.dialogue.facts`)."""

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        self.threshold = threshold

    def asked(self, state: State) -> Callable[[str], list[str]] | None:
        """The facts a question asks for, in the env's vocabulary (default: none known)."""
        return None

    @abc.abstractmethod
    async def effect(self, state: State, calls: list[Call], reference: list[Call]) -> Verdict:
        """Calls that differ from the expert's in form: do they do what the expert's do?"""

    async def check(
        self,
        state: State,
        action: dict[str, Any],
        calls: list[Call],
        reference: dict[str, Any],
        reference_calls: list[Call],
    ) -> Verdict:
        if bool(calls) != bool(reference_calls):
            want = "tool calls" if reference_calls else "a message to the user"
            return failed(f"the expert made {want}")
        if not calls:
            return same_message(action.get("content") or "", reference.get("content") or "",
                                asked=self.asked(state), threshold=self.threshold,
                                pattern=self.pattern)  # fmt: skip
        mine = sorted(canonical_json([c.name, c.canonical]) for c in calls)
        theirs = sorted(canonical_json([c.name, c.canonical]) for c in reference_calls)
        if mine == theirs:
            return passed("same calls")
        return await self.effect(state, calls, reference_calls)
