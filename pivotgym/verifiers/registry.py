"""Verifiers by name, and each environment's default verifier.

``get_verifier(name, **options)`` builds a registered verifier: ``exact``, ``tool_call``,
``similarity``, ``judge`` (``engine=`` and ``chat=`` or ``tokenizer=``),
and the combinators ``any_of`` / ``all_of`` (``verifiers=[...]``) and ``weighted``
(``verifiers=[...]``, ``weights=[...]``), whose components are verifiers, names, or
``(name, options)`` pairs. A package adds a name through the ``pivotgym.verifiers``
entry-point group (the terminal's ``execution`` and the tool APIs' ``tool_api`` are
declared so) or :func:`register_verifier`; an import path ``"module:factory"`` names a
factory directly.

An environment's :class:`~pivotgym.core.registry.EnvSpec` names its default verifier
(the terminal's is ``execution``); :func:`default_verifier` builds it, falling back to
``tool_call`` for environments that are not registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from pivotgym.errors import DataError
from pivotgym.verifiers.base import Verifier
from pivotgym.verifiers.combine import AllOf, AnyOf, Weighted
from pivotgym.verifiers.judge import Judge, judge_from
from pivotgym.verifiers.match import Exact, Similarity, ToolCall

FALLBACK = "tool_call"
GROUP = "pivotgym.verifiers"

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
    "judge": _judge,
    "any_of": lambda verifiers: AnyOf(_components(verifiers)),
    "all_of": lambda verifiers: AllOf(_components(verifiers)),
    "weighted": lambda verifiers, weights: Weighted(_components(verifiers), weights),
}


def register_verifier(name: str, factory: Callable[..., Verifier]) -> None:
    """Make ``get_verifier(name, **options)`` call ``factory(**options)``."""
    _factories[name] = factory


def verifier_names() -> list[str]:
    return sorted(set(_factories) | {ep.name for ep in entry_points(group=GROUP)})


def _factory(name: str) -> Callable[..., Verifier]:
    if name in _factories:
        return _factories[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise DataError(f"cannot import verifier {name!r}: {exc}") from None
    else:
        found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
        if not found:
            raise DataError(f"unknown verifier {name!r} (known: {', '.join(verifier_names())})")
        try:
            factory = found[0].load()
        except (ImportError, AttributeError) as exc:
            raise DataError(f"cannot load verifier {name!r} ({found[0].value}): {exc}") from None
    _factories[name] = factory
    return factory


def get_verifier(name: str, **options: Any) -> Verifier:
    """A new verifier of the kind ``name`` (registered, declared by an entry point, or a
    ``"module:factory"`` import path) built with ``options``."""
    factory = _factory(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise DataError(f"bad options for verifier {name!r}: {exc}") from None


def default_verifier_spec(env: str) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of ``env``'s default verifier."""
    from pivotgym.core.registry import registered

    spec = registered().get(env)
    if spec is None:
        return FALLBACK, {}
    return spec.verifier, dict(spec.verifier_options)


def default_verifier(env: str, **overrides: Any) -> Verifier:
    """A new instance of ``env``'s default verifier, ``overrides`` merged into its options."""
    name, options = default_verifier_spec(env)
    return get_verifier(name, **{**options, **overrides})
