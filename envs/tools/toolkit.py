"""Tools declared once: a typed Python function becomes a JSON schema, a dispatcher and a flag.

::

    tools = Toolkit()

    @tools.read
    def find_patient(db: Database, name: str, date_of_birth: str) -> Patient:
        \"\"\"Find a patient by full name and date of birth.

        name: the full name as registered
        date_of_birth: YYYY-MM-DD
        \"\"\"

    @tools.write
    def cancel_appointment(db: Database, appointment_id: str) -> Appointment: ...

The function's first parameter is the database; the others are the tool's arguments.
Their annotations (``str``, ``int``, ``float``, ``bool``, ``Literal[...]``, ``list[...]``,
``X | None``) and defaults give the schema, the docstring's first paragraph its
description and its ``name: text`` lines the arguments' descriptions. ``read`` and
``write`` say whether the tool changes the database: replay re-executes only writes,
and a read that writes anyway is caught (:meth:`Toolkit.call` checks).

A call's arguments are put in canonical form against the schema first
(:func:`pivotgym.verifiers.schema.canonical_arguments`: ``"3"`` for an integer is 3), so
a call with wrong types answers with a message naming the argument and never reaches
the function. A function rejects a request by raising :class:`ToolError` (or
``KeyError`` / ``ValueError``); the agent sees ``Error: <message>``, as in τ²-bench,
and the database is left as it was before the call (a failed call writes nothing).
Results are JSON (rows as objects, in field order); a string result is sent as is.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pivotgym.envs.tools.db import Database, to_json
from pivotgym.verifiers.schema import SchemaError, canonical_arguments

MAX_RESULT_CHARS = 16_384  # what one tool message shows the agent


class ToolError(Exception):
    """A request the tool refuses; the message is what the agent reads after ``Error:``."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    writes: bool
    function: Callable[..., Any]

    @property
    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool schema the agent sees."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class Outcome:
    """One executed call: the text the agent sees, and whether the tool refused."""

    content: str
    error: str | None = None  # "invalid_arguments" or "tool_error"


class Toolkit:
    """A domain's tools, in declaration order."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}

    def read(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Declare a tool that only reads the database."""
        self._add(function, writes=False)
        return function

    def write(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Declare a tool that may change the database."""
        self._add(function, writes=True)
        return function

    def _add(self, function: Callable[..., Any], writes: bool) -> None:
        name = function.__name__
        if name in self.tools:
            raise TypeError(f"tool {name!r} declared twice")
        description, parameters = describe(function)
        self.tools[name] = Tool(name, description, parameters, writes, function)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def writes(self, name: str) -> bool:
        """Whether tool ``name`` may change the database (unknown tools count as writes)."""
        tool = self.tools.get(name)
        return tool is None or tool.writes

    def call(self, db: Database, name: str, arguments: dict[str, Any]) -> Outcome:
        """Run one call on ``db``: validated, refused as ``Error: ...``, atomic."""
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(self.tools)
            return Outcome(f"Error: unknown tool {name!r}. Available tools: {known}.",
                           "invalid_arguments")  # fmt: skip
        try:
            canonical = canonical_arguments(arguments, tool.parameters)
            json.dumps(canonical, ensure_ascii=False).encode("utf-8")
        except SchemaError as exc:
            where = f"argument '{exc.path}'" if exc.path else "arguments"
            return Outcome(f"Error: {where}: {exc.problem}", "invalid_arguments")
        except UnicodeEncodeError:  # a lone surrogate: no tool message could carry it
            return Outcome("Error: arguments hold text that is not valid Unicode",
                           "invalid_arguments")  # fmt: skip
        writes = db.writes
        try:
            with db.transaction():  # a failed call leaves ``db`` as it was
                result = tool.function(db, **canonical)
        except (ToolError, KeyError, ValueError) as exc:
            message = str(exc.args[0]) if exc.args else type(exc).__name__
            return Outcome(f"Error: {message}", "tool_error")
        if db.writes != writes and not tool.writes:
            raise TypeError(f"tool {name!r} is declared read-only but wrote the database")
        content = result if isinstance(result, str) else json.dumps(to_json(result))
        if len(content) > MAX_RESULT_CHARS:  # a listing of a big table, or echoed input
            cut = len(content) - MAX_RESULT_CHARS
            content = content[:MAX_RESULT_CHARS] + f"\n[{cut} more characters not shown]"
        return Outcome(content)


_ARG_LINE = re.compile(r"^\s*(\w+):\s*(.+)$")


def describe(function: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The description and parameters schema of a tool function (module docstring)."""
    doc = inspect.getdoc(function) or ""
    paragraphs = doc.split("\n\n")
    description = " ".join(paragraphs[0].split())
    notes: dict[str, str] = {}
    for paragraph in paragraphs[1:]:
        for line in paragraph.splitlines():
            match = _ARG_LINE.match(line)
            if match:
                notes[match.group(1)] = match.group(2).strip()
    if not description:
        raise TypeError(f"tool {function.__name__!r} needs a docstring")
    hints = typing.get_type_hints(function)
    params = list(inspect.signature(function).parameters.values())
    properties: dict[str, Any] = {}
    required = []
    for param in params[1:]:
        schema = json_schema(hints[param.name], f"{function.__name__}.{param.name}")
        if param.name in notes:
            schema["description"] = notes[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif param.default is not None:
            schema["default"] = param.default
        properties[param.name] = schema
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return description, parameters


def json_schema(hint: Any, where: str) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: only `X | None` unions are supported")
        inner = json_schema(options[0], where)
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        kind = {str: "string", int: "integer", bool: "boolean"}[type(values[0])]
        return {"type": kind, "enum": values}
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return {"type": "array", "items": json_schema(item, where)}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"{where}: unsupported argument type {hint!r}")
