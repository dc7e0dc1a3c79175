"""Tool-call arguments checked and put in canonical form against the tool's JSON schema.

Two calls mean the same when their canonical arguments are equal. Canonical form:

- keys in sorted order, JSON whitespace gone (the arguments are compared parsed);
- scalars coerced where the schema's type allows a lossless reading: ``"3"`` or ``3.0``
  for an ``integer`` field is ``3``; ``"2.5"`` for a ``number`` is ``2.5``; ``"true"`` /
  ``"false"`` (any case) for a ``boolean``; a number for a ``string`` field is its
  decimal text; ``"null"`` for a ``null``;
- absent properties that the schema gives a ``default`` are filled in;
- properties not declared are an error when ``additionalProperties`` is ``false``, are
  checked against it when it is a schema, and are kept as they are otherwise.

A value the schema rejects (a missing required property, a type that cannot be coerced,
a value outside ``enum``) raises :class:`SchemaError`, whose message names the field. The
keywords understood are those tool schemas use: ``type`` (one or a list), ``properties``,
``required``, ``additionalProperties``, ``default``, ``enum``, ``const``, ``items``,
``anyOf``/``oneOf``; other keywords are ignored.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


class SchemaError(ValueError):
    """Arguments that do not match the tool's schema; the message names the field."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'arguments'}: {problem}")


def canonical_arguments(arguments: dict[str, Any], schema: dict[str, Any] | None) -> Any:
    """``arguments`` in canonical form under ``schema`` (a tool's ``parameters``)."""
    return _canonical(arguments, schema or {"type": "object"}, "")


def canonical_json(value: Any) -> str:
    """A canonical text of a JSON value: sorted keys, no whitespace, exact unicode."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any, schema: Any, path: str) -> Any:
    if not isinstance(schema, dict):  # `true` or a malformed schema: anything goes
        return _plain(value)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _first_match(value, schema[key], path)
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types is None:
        types = [t for t in TYPES if t != "null"] + ["null"]
    value = _coerce(value, types, path)
    if "const" in schema and value != schema["const"]:
        raise SchemaError(path, f"must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"{value!r} is not one of {schema['enum']!r}")
    if isinstance(value, dict):
        return _canonical_object(value, schema, path)
    if isinstance(value, list):
        items = schema.get("items", True)
        return [_canonical(v, items, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _first_match(value: Any, options: list[Any], path: str) -> Any:
    problems = []
    for option in options:
        try:
            return _canonical(value, option, path)
        except SchemaError as exc:
            problems.append(exc.problem)
    raise SchemaError(path, "matches no allowed form (" + "; ".join(problems) + ")")


def _canonical_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    extra_schema = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key in sorted(value):
        where = f"{path}.{key}" if path else key
        if key in properties:
            out[key] = _canonical(value[key], properties[key], where)
        elif extra_schema is False:
            raise SchemaError(where, "unknown argument (the tool takes no such field)")
        else:
            out[key] = _canonical(value[key], extra_schema, where)
    for key, sub in properties.items():
        if key not in out and isinstance(sub, dict) and "default" in sub:
            out[key] = _plain(sub["default"])
    for key in schema.get("required") or []:
        if key not in out:
            raise SchemaError(f"{path}.{key}" if path else key, "required argument missing")
    return dict(sorted(out.items()))


def _coerce(value: Any, types: list[str], path: str) -> Any:
    # Exact type first, so that "3" stays a string when both string and integer are allowed.
    for kind in types:
        if _is(value, kind):
            return _exact(value, kind)
    for kind in types:
        coerced = _read_as(value, kind)
        if coerced is not _NO:
            return coerced
    got = type(value).__name__ if value is not None else "null"
    raise SchemaError(path, f"expected {' or '.join(types)}, got {got} {_short(value)}")


_NO = object()


def _is(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        # A number a float can hold: math.isfinite would overflow on 10**400, and so
        # would every tool that computes with it.
        if isinstance(value, int):
            return abs(value) <= sys.float_info.max
        return isinstance(value, float) and math.isfinite(value)
    return False


def _exact(value: Any, kind: str) -> Any:
    if kind == "integer":
        return int(value)
    if kind == "number" and isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 and 3 are the same number
    return value


def _read_as(value: Any, kind: str) -> Any:
    """``value`` read losslessly as ``kind``, or ``_NO``."""
    if isinstance(value, str):
        text = value.strip()
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "null" and text.lower() == "null":
            return None
        if kind in ("integer", "number"):
            try:
                number = json.loads(text)
            except ValueError:
                return _NO
            if _is(number, kind):
                return _exact(number, kind)
        return _NO
    if kind == "string" and _is(value, "number"):
        return json.dumps(value)
    return _NO


def _plain(value: Any) -> Any:
    """A JSON value with sorted keys and integral floats as ints, without a schema."""
    if isinstance(value, dict):
        return {k: _plain(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
