"""Verifiers by name, and each environment's default verifier.

``get_verifier(name, **options)`` builds a registered verifier: ``exact``, ``tool_call``,
``similarity``, ``execution``, ``judge`` (``engine=`` and ``chat=`` or ``tokenizer=``),
and the combinators ``any_of`` / ``all_of`` (``verifiers=[...]``) and ``weighted``
(``verifiers=[...]``, ``weights=[...]``), whose components are verifiers, names, or
``(name, options)`` pairs. :func:`register_verifier` adds a name.

An environment's :class:`~pivotgym.registry.EnvSpec` names its default verifier (the
terminal's is ``execution``); :func:`default_verifier` builds it, falling back to
``tool_call`` for environments that are not registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pivotgym.errors import DataError
from pivotgym.verifiers.base import Verifier
from pivotgym.verifiers.combine import AllOf, AnyOf, Weighted
from pivotgym.verifiers.execution import Execution
from pivotgym.verifiers.judge import Judge, judge_from
from pivotgym.verifiers.match import Exact, Similarity, ToolCall

FALLBACK = "tool_call"

Spec = Verifier | str | tuple[str, Mapping[str, Any]]


def _components(verifiers: Sequence[Spec]) -> list[Verifier]:
    out = []
    for spec in verifiers:
        if isinstance(spec, Verifier):
            out.append(spec)
        elif isinstance(spec, str):
            out.append(get_verifier(spec))
        else:
            name, options = spec
            out.append(get_verifier(name, **options))
    return out


def _judge(**options: Any) -> Judge:
    if "tokenizer" in options:
        return judge_from(options.pop("engine"), options.pop("tokenizer"), **options)
    return Judge(options.pop("engine"), options.pop("chat"), **options)


_factories: dict[str, Callable[..., Verifier]] = {
    "exact": Exact,
    "tool_call": ToolCall,
    "similarity": Similarity,
    "execution": Execution,
    "judge": _judge,
    "any_of": lambda verifiers: AnyOf(_components(verifiers)),
    "all_of": lambda verifiers: AllOf(_components(verifiers)),
    "weighted": lambda verifiers, weights: Weighted(_components(verifiers), weights),
}


def register_verifier(name: str, factory: Callable[..., Verifier]) -> None:
    """Make ``get_verifier(name, **options)`` call ``factory(**options)``."""
    _factories[name] = factory


def verifier_names() -> list[str]:
    return sorted(_factories)


def get_verifier(name: str, **options: Any) -> Verifier:
    """A new verifier of the registered kind ``name`` built with ``options``; a name
    ``"module:attr"`` is a factory's import path (an env's own verifier)."""
    if ":" in name and name not in _factories:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise DataError(f"cannot import verifier {name!r}: {exc}") from None
        _factories[name] = factory
    if name not in _factories:
        raise DataError(f"unknown verifier {name!r} (known: {', '.join(verifier_names())})")
    try:
        return _factories[name](**options)
    except TypeError as exc:
        raise DataError(f"bad options for verifier {name!r}: {exc}") from None


def default_verifier_spec(env: str) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of ``env``'s default verifier."""
    from pivotgym.registry import registered

    spec = registered().get(env)
    if spec is None:
        return FALLBACK, {}
    return spec.verifier, dict(spec.verifier_options)


def default_verifier(env: str, **overrides: Any) -> Verifier:
    """A new instance of ``env``'s default verifier, ``overrides`` merged into its options."""
    name, options = default_verifier_spec(env)
    return get_verifier(name, **{**options, **overrides})
