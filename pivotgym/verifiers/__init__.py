"""Functional verifiers: is a sampled turn locally acceptable at a candidate state?

``await verifier.verify(state, action, reference)`` returns a :class:`Verdict` (reward in
[0, 1], reason, infrastructure-failure flag). The library: :class:`Exact`,
:class:`ToolCall`, :class:`Similarity` (no environment needed), :class:`Judge` (an LLM
through any engine), and the combinators :func:`any_of`, :func:`all_of`,
:func:`weighted`. Verifiers that execute actions in forks of the restored state belong
to their environment and register by entry point (the terminal's ``execution``, the
tool APIs' ``tool_api``, τ²'s ``tau2``); the tool-API ones share the frame of
:mod:`pivotgym.verifiers.conversation` and the message rule of
:mod:`pivotgym.verifiers.dialogue`. Build one by name with :func:`get_verifier`, or an environment's
default with :func:`default_verifier`::

    state = await restore(env, candidate)
    verdicts = await default_verifier("terminal").verify_many(state, samples, candidate.reference)
"""

from pivotgym.verifiers.base import Call, MalformedAction, State, Verdict, Verifier, restore
from pivotgym.verifiers.combine import all_of, any_of, weighted
from pivotgym.verifiers.judge import Judge
from pivotgym.verifiers.match import Exact, Similarity, ToolCall
from pivotgym.verifiers.registry import (
    default_verifier,
    get_verifier,
    register_verifier,
    verifier_names,
)
from pivotgym.verifiers.schema import SchemaError, canonical_arguments

__all__ = [
    "Call",
    "Exact",
    "Judge",
    "MalformedAction",
    "SchemaError",
    "Similarity",
    "State",
    "ToolCall",
    "Verdict",
    "Verifier",
    "all_of",
    "any_of",
    "canonical_arguments",
    "default_verifier",
    "get_verifier",
    "register_verifier",
    "restore",
    "verifier_names",
    "weighted",
]
