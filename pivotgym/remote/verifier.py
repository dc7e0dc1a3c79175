"""Verification where the world is: a verifier of an env server, run on its session.

The env-specific verifiers execute actions in forks of the world (a sandbox, a browser
context, a database), which lives on the server. :class:`ServedVerifier` names one of
the server's verifiers (a registered name and its options) and sends it the state's
candidate and the actions; the server restores the candidate on the session where the
client's reset left it (no replay) and answers the verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotgym.core.env import Message
from pivotgym.errors import DataError, InfraError
from pivotgym.remote.env import RemoteEnv
from pivotgym.verifiers.base import Call, State, Verdict, Verifier, infra


class ServedVerifier(Verifier):
    """The server's verifier ``name`` (with ``options``), on a :class:`RemoteEnv` state."""

    def __init__(self, name: str, **options: Any) -> None:
        self.name = f"served:{name}"
        self.verifier = name
        self.options = options

    async def verify_many(
        self, state: State, actions: Sequence[Message], reference: Message
    ) -> list[Verdict]:
        env = state.env
        if not isinstance(env, RemoteEnv):
            raise DataError(f"{self.name} judges states of a served env, not {type(env).__name__}")
        try:
            rows = await env.averify(self.verifier, self.options, state.candidate.trajectory,
                                     state.turn, actions, reference)  # fmt: skip
        except InfraError as exc:
            return [infra(f"{self.name}: {str(exc)[:300]}") for _ in actions]
        return [Verdict(float(r["reward"]), str(r["reason"]), bool(r["infra_error"]),
                        r.get("details") or {}) for r in rows]  # fmt: skip

    async def check(
        self,
        state: State,
        action: Message,
        calls: list[Call],
        reference: Message,
        reference_calls: list[Call],
    ) -> Verdict:
        return (await self.verify_many(state, [action], reference))[0]
