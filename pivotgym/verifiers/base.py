"""The verifier protocol: ``await verifier.verify(state, action, reference) -> Verdict``.

A verifier scores one sampled assistant turn ``action`` at a candidate state ``s_t``
against the expert's turn ``reference`` (the functional reward of PivotRL). Its
:class:`Verdict` is either a reward in [0, 1] with a short reason, or an infrastructure
failure (``infra_error=True``): the harness could not judge (a sandbox died, a judge
model answered nonsense twice, the verifier ran out of time). Callers record those as
such and leave them out of group statistics; they are never a 0.

Malformed actions are the policy's fault, so they score 0 and never raise: a message
the chat parser flagged (``parse_error``), a tool call that is not an object, arguments
that are not a JSON object, an unknown tool, arguments the tool's schema rejects. The
base class checks all of that once, before the verifier's own rule runs.

A :class:`State` carries what a verifier may need: the candidate (prefix, turn,
trajectory), the tool schemas, and for environments that can fork an environment
restored at ``s_t``. That environment is read-only to verifiers: they fork it and act
in the branches, never step it.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotgym.core.candidates import Candidate
from pivotgym.errors import DivergenceError, InfraError
from pivotgym.verifiers.schema import SchemaError, canonical_arguments

log = logging.getLogger(__name__)

Message = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """A verifier's answer.

    ``reward`` is in [0, 1]; ``reason`` says in a few words why. ``infra_error`` marks a
    failure of the harness, not of the action: the reward is then meaningless (0.0) and
    the verdict must be excluded from statistics. ``details`` holds structured extras
    (which components differed, similarity scores) for logs.
    """

    reward: float
    reason: str
    infra_error: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {self.reward}")

    @property
    def passed(self) -> bool:
        return not self.infra_error and self.reward >= 1.0


def passed(reason: str = "matches", **details: Any) -> Verdict:
    return Verdict(1.0, reason, details=details)


def failed(reason: str, **details: Any) -> Verdict:
    return Verdict(0.0, reason, details=details)


def infra(reason: str, **details: Any) -> Verdict:
    return Verdict(0.0, reason, infra_error=True, details=details)


@dataclass
class State:
    """What a verifier sees of the candidate state ``s_t``.

    ``env`` is an environment restored at ``s_t`` (``None`` where none is needed or
    none can fork); verifiers must not step it. ``task`` is the environment's task
    object when known (its normalisation patterns serve output comparisons).
    """

    candidate: Candidate
    tools: list[dict[str, Any]]
    env: Any = None
    task: Any = None

    @property
    def prefix(self) -> list[Message]:
        return self.candidate.prefix

    @property
    def turn(self) -> int:
        return self.candidate.turn

    @property
    def key(self) -> str:
        """The stable id of the state: the candidate id."""
        return self.candidate.id

    @property
    def instruction(self) -> str:
        """The task as the user stated it: the first user message of the prefix."""
        return next((m["content"] or "" for m in self.prefix if m["role"] == "user"), "")

    def tool(self, name: str) -> dict[str, Any] | None:
        for tool in self.tools:
            function = tool.get("function", tool)
            if function.get("name") == name:
                return function
        return None


async def restore(env: Any, candidate: Candidate) -> State:
    """Reset ``env`` to the candidate's state and return the :class:`State` over it."""
    await env.areset(options={"trajectory": candidate.trajectory, "turn": candidate.turn})
    return State(candidate, list(env.tools), env=env, task=getattr(env, "task", None))


@dataclass(frozen=True)
class Call:
    """A tool call that passed the checks: its name, parsed and canonical arguments."""

    name: str
    arguments: dict[str, Any]
    canonical: Any
    raw: str


def parse_calls(action: Any, tools: Sequence[dict[str, Any]] | None) -> list[Call]:
    """The action's tool calls, checked; :class:`MalformedAction` names what is wrong.

    Whatever the action's shape (a call that is not an object, a name that is not a
    string, arguments nested too deeply to parse), nothing else is raised.

    With ``tools`` ``None`` the names and schemas are not checked (a state without
    tool schemas).
    """
    if not isinstance(action, dict) or action.get("role") != "assistant":
        raise MalformedAction("not an assistant message")
    if action.get("parse_error"):
        raise MalformedAction(f"unparsable output: {action['parse_error']}")
    content = action.get("content")
    if content is not None and not isinstance(content, str):
        raise MalformedAction("content is not a string")
    raw_calls = action.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise MalformedAction("tool_calls is not a list")
    schemas = None
    if tools is not None:
        schemas = {t.get("function", t).get("name"): t.get("function", t) for t in tools}
    calls = []
    for i, call in enumerate(raw_calls):
        where = f"call {i}"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MalformedAction(f"{where}: not a function call with a name")
        name = function["name"]
        raw = function.get("arguments")
        if raw is None or raw == "":
            raw = "{}"
        too_deep = f"{where} ({name}): arguments nested too deeply"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise MalformedAction(f"{where} ({name}): bad JSON arguments ({exc})") from None
        except RecursionError:  # json.loads gives up at about 1,000 levels
            raise MalformedAction(too_deep) from None
        if not isinstance(arguments, dict):
            raise MalformedAction(f"{where} ({name}): arguments are not a JSON object")
        schema: Any = None
        if schemas is not None:
            if name not in schemas:
                known = ", ".join(sorted(n for n in schemas if n))
                raise MalformedAction(f"{where}: unknown tool {name!r} (tools: {known})")
            schema = schemas[name].get("parameters")
        try:
            canonical = canonical_arguments(arguments, schema)
        except SchemaError as exc:
            raise MalformedAction(f"{where} ({name}): {exc}") from None
        except RecursionError:  # the canonical form recurses once a level or more
            raise MalformedAction(too_deep) from None
        calls.append(Call(name, arguments, canonical, raw if isinstance(raw, str) else ""))
    return calls


class MalformedAction(ValueError):
    """An action the policy got wrong in form; it scores 0 with this message as reason."""


class Verifier(abc.ABC):
    """Base class of verifiers.

    Subclasses implement :meth:`check`, called only with a well-formed action whose
    calls are parsed; :meth:`verify` adds the malformed-action checks, the time limit
    (``timeout_s``, an infrastructure failure when exceeded) and the rule that an
    :class:`~pivotgym.errors.InfraError` (or any unexpected exception, logged) is an
    infrastructure verdict. :meth:`verify_many` scores several actions of one state;
    verifiers that can share work across them (one fork for all) override it.
    """

    name: str = "verifier"
    timeout_s: float | None = None

    async def verify(self, state: State, action: Message, reference: Message) -> Verdict:
        """Score ``action`` at ``state`` against the expert's ``reference``."""
        try:
            calls = parse_calls(action, state.tools or None)
        except MalformedAction as exc:
            return failed(f"malformed action: {exc}")
        try:
            reference_calls = parse_calls(reference, state.tools or None)
        except MalformedAction as exc:
            return infra(f"reference action is invalid: {exc}")
        return await self._guarded(self.check(state, action, calls, reference, reference_calls))

    async def verify_many(
        self, state: State, actions: Sequence[Message], reference: Message
    ) -> list[Verdict]:
        """:meth:`verify` of each action, in order."""
        return list(await asyncio.gather(*(self.verify(state, a, reference) for a in actions)))

    async def _guarded(self, work: Any) -> Verdict:
        try:
            if self.timeout_s is None:
                return await work
            return await asyncio.wait_for(work, self.timeout_s)
        except TimeoutError:
            return infra(f"{self.name}: verifier timed out after {self.timeout_s:g} s")
        except (InfraError, DivergenceError) as exc:
            return infra(f"{self.name}: {type(exc).__name__}: {str(exc)[:300]}")
        except Exception as exc:  # a verifier bug must not kill a training step
            log.exception("%s failed", self.name)
            return infra(f"{self.name} failed: {type(exc).__name__}: {str(exc)[:300]}")

    @abc.abstractmethod
    async def check(
        self,
        state: State,
        action: Message,
        calls: list[Call],
        reference: Message,
        reference_calls: list[Call],
    ) -> Verdict:
        """Score a well-formed ``action`` (its ``calls`` parsed) against ``reference``."""
