"""The τ² env's one-turn functional verifier (its default: ``tau2``).

At a candidate state the expert either called tools or spoke to the user; the sampled
turn must do the same kind of thing.

- **Tool calls** are accepted when they equal the expert's after canonicalisation
  against τ²'s schemas (:mod:`pivotgym.verifiers.schema`; the order of calls within a
  turn does not matter), **or** when, executed by τ²'s own tools in two forks of the
  restored world, they leave τ²'s databases exactly as the expert's calls leave them
  (:meth:`~pivotgym.envs.tau2.world.Tau2World.same_state`, τ²'s hash's view) and return
  the same results (as JSON, errors included). So a look-up of the same user by
  another route that returns the same record passes, as does a write whose arguments
  differ where τ²'s tool ignores the difference; a call with another effect or another
  answer does not.
- **A message to the user** is judged by the shared rule of
  :mod:`pivotgym.verifiers.dialogue` with the τ² user's vocabulary: a question for facts
  (:data:`~pivotgym.envs.tau2.user.FACTS`: a user id, a name and zip code, an email)
  must ask for the same ones; a request to confirm (which names ids, not asks for them)
  or any other message must be the same act carrying the same facts, τ²'s identifiers
  among them (user, order, item and payment ids, reservation codes, flight numbers).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pivotgym.envs.tau2.user import asked_facts
from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, infra, passed
from pivotgym.verifiers.dialogue import FACT, asks_to_confirm, same_message
from pivotgym.verifiers.schema import canonical_json

# τ²'s identifiers, then the shared facts (numbers, dates, times, amounts).
TAU2_FACT = re.compile(
    r"\b[a-z]+(?:_[a-z]+)*_\d+\b|#?\bW\d{7}\b|\b(?=[A-Z0-9]{6}\b)[A-Z]*\d[A-Z0-9]*\b|"
    + FACT.pattern
)


def _asked(text: str) -> list[str]:
    return [] if asks_to_confirm(text) else asked_facts(text)


def _result(content: str) -> str:
    try:
        return canonical_json(json.loads(content))
    except ValueError:
        return content


class Tau2Verifier(Verifier):
    """See the module docstring. ``threshold``: the similarity a message needs."""

    name = "tau2"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        self.threshold = threshold

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
                                asked=_asked, threshold=self.threshold,
                                pattern=TAU2_FACT)  # fmt: skip
        mine = sorted(canonical_json([c.name, c.canonical]) for c in calls)
        theirs = sorted(canonical_json([c.name, c.canonical]) for c in reference_calls)
        if mine == theirs:
            return passed("same calls")
        env = state.env
        world = getattr(env, "world", None)
        if world is None or not hasattr(world, "same_state"):
            return infra("tau2 needs a τ² environment restored at s_t")
        sample, expert = await world.fork(2)
        try:
            got = [self._run(env, sample, c) for c in calls]
            want = [self._run(env, expert, c) for c in reference_calls]
            if not sample.same_state(expert):
                return failed("changes τ²'s database otherwise than the expert's calls")
        finally:
            await sample.close()
            await expert.close()
        if sorted(map(_result, got)) != sorted(map(_result, want)):
            return failed("returns other results than the expert's calls")
        return passed("same effect and results as the expert's calls")

    @staticmethod
    def _run(env: Any, world: Any, call: Call) -> str:
        from tau2.data_model.message import ToolCall

        request = ToolCall(id="verify", name=call.name, arguments=call.arguments)
        writes = env.mutates(call.name, None)
        return world.run(lambda: world.environment.get_response(request), writes=writes).content
