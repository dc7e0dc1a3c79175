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

import re
from collections.abc import Callable
from typing import Any

from pivotgym.envs.tau2.user import asked_facts
from pivotgym.envs.tau2.world import Tau2World
from pivotgym.verifiers.base import Call, State, Verdict, failed, infra, passed
from pivotgym.verifiers.conversation import ToolTurn, same_results
from pivotgym.verifiers.dialogue import FACT, asks_to_confirm

# τ²'s identifiers, then the shared facts (numbers, dates, times, amounts).
TAU2_FACT = re.compile(
    r"\b[a-z]+(?:_[a-z]+)*_\d+\b|#?\bW\d{7}\b|\b(?=[A-Z0-9]{6}\b)[A-Z]*\d[A-Z0-9]*\b|"
    + FACT.pattern
)


def _asked(text: str) -> list[str]:
    return [] if asks_to_confirm(text) else asked_facts(text)


class Tau2Verifier(ToolTurn):
    """See the module docstring. ``threshold``: the similarity a message needs."""

    name = "tau2"
    pattern = TAU2_FACT

    def asked(self, state: State) -> Callable[[str], list[str]]:
        return _asked

    async def effect(self, state: State, calls: list[Call], reference: list[Call]) -> Verdict:
        env = state.env
        world = getattr(env, "world", None)
        if not isinstance(world, Tau2World):
            return infra("tau2 needs a τ² environment restored at s_t")
        sample, expert = await world.fork(2)
        try:
            got = [self._run(env, sample, c) for c in calls]
            want = [self._run(env, expert, c) for c in reference]
            if not sample.same_state(expert):
                return failed("changes τ²'s database otherwise than the expert's calls")
        finally:
            await sample.close()
            await expert.close()
        if not same_results(got, want):
            return failed("returns other results than the expert's calls")
        return passed("same effect and results as the expert's calls")

    @staticmethod
    def _run(env: Any, world: Any, call: Call) -> str:
        from tau2.data_model.message import ToolCall

        request = ToolCall(id="verify", name=call.name, arguments=call.arguments)
        writes = env.mutates(call.name, None)
        return world.run(lambda: world.environment.get_response(request), writes=writes).content
