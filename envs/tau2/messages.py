"""τ²'s messages and pivotgym's chat messages, each way.

τ² records tool calls as ``{id, name, arguments: <dict>, requestor}`` on assistant (or
user) messages, each followed by a ``tool`` message with the call's ``id``; pivotgym's
chat format is OpenAI's (``tool_calls[].function.arguments`` a JSON string, tool replies
with ``tool_call_id``). Only the agent calls tools in airline and retail; user tool
calls (telecom) are refused by :func:`from_tau2` with the message's place.
"""

from __future__ import annotations

import json
from typing import Any

from pivotgym.errors import DataError


def from_tau2(messages: Any, where: str) -> list[dict[str, Any]]:
    """pivotgym chat messages of a τ² message list (JSON as τ²'s results files hold it)."""
    if not isinstance(messages, list):
        raise DataError("must be a list of τ² messages", field=where)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        at = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise DataError("must be an object", field=at)
        role = m.get("role")
        if role == "tool":
            if not isinstance(m.get("id"), str):
                raise DataError("a tool message needs its call's string 'id'", field=f"{at}.id")
            out.append({"role": "tool", "tool_call_id": m["id"], "content": _text(m, at)})
        elif role in ("assistant", "user"):
            calls = m.get("tool_calls") or []
            if calls and role == "user":
                raise DataError("user tool calls (τ²'s telecom) are not supported", field=at)
            message: dict[str, Any] = {"role": role, "content": m.get("content")}
            if calls:
                message["tool_calls"] = [
                    _call(c, f"{at}.tool_calls[{j}]") for j, c in enumerate(calls)
                ]
            elif not isinstance(m.get("content"), str):
                raise DataError(
                    "a message without tool calls needs string content", field=f"{at}.content"
                )
            out.append(message)
        else:
            raise DataError(
                f"unknown τ² role {role!r} (assistant, user or tool)", field=f"{at}.role"
            )
    return out


def history_messages(task: Any) -> list[dict[str, Any]]:
    """pivotgym chat messages of a task's ``initial_state.message_history`` (``[]`` when
    it has none): the conversation τ² starts that task from."""
    state = task.model.initial_state
    history = state.message_history if state is not None else None
    if not history:
        return []
    dumped = [m.model_dump(mode="json") for m in history]
    return from_tau2(dumped, f"{task.name}: initial_state.message_history")


def _text(m: dict[str, Any], at: str) -> str:
    content = m.get("content")
    if not isinstance(content, str):
        raise DataError("must be a string", field=f"{at}.content")
    return content


def _call(c: Any, at: str) -> dict[str, Any]:
    if (
        not isinstance(c, dict)
        or not isinstance(c.get("name"), str)
        or not isinstance(c.get("id"), str)
    ):
        raise DataError("a tool call needs string 'id' and 'name'", field=at)
    arguments = c.get("arguments")
    if not isinstance(arguments, dict):
        raise DataError("must be an object", field=f"{at}.arguments")
    return {
        "id": c["id"],
        "type": "function",
        "function": {"name": c["name"], "arguments": json.dumps(arguments)},
    }


def to_tau2(
    messages: list[dict[str, Any]], tools: set[str], max_calls: int | None = None
) -> list[Any]:
    """τ² message models of a pivotgym conversation, as τ² would have recorded it: the
    system message left out, and of each turn only the calls that reached τ²'s tools
    (a call the env refused before, with an unknown name, arguments that are no JSON
    object, or past ``max_calls`` in its turn, changed nothing and has no τ² answer).
    Calls and their answers are paired in order and given matching ids, as τ²'s replay
    requires."""
    from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage

    out: list[Any] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        i += 1
        role = m.get("role")
        if role == "user":
            out.append(UserMessage(role="user", content=m.get("content")))
        elif role == "assistant":
            raw = m.get("tool_calls") or []
            answers = []
            while i < len(messages) and messages[i].get("role") == "tool":
                answers.append(messages[i])
                i += 1
            calls, replies = [], []
            for j, (call, answer) in enumerate(zip(raw, answers, strict=False)):
                reached = _reached(call, tools) if max_calls is None or j < max_calls else None
                if reached is None:
                    continue
                name, arguments = reached
                ident = f"call_{len(out)}_{j}"
                calls.append(
                    ToolCall(id=ident, name=name, arguments=arguments, requestor="assistant")
                )
                replies.append(
                    ToolMessage(
                        id=ident, role="tool", content=answer.get("content"), requestor="assistant"
                    )
                )
            if raw and not calls and not m.get("content"):
                continue  # a turn of refused calls only: τ² saw nothing of it
            out.append(
                AssistantMessage(
                    role="assistant", content=m.get("content"), tool_calls=calls or None
                )
            )
            out.extend(replies)
    return out


def _reached(call: Any, tools: set[str]) -> tuple[str, dict[str, Any]] | None:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or name not in tools:
        return None
    raw = function.get("arguments")
    try:
        arguments = json.loads("{}" if raw is None or raw == "" else raw)
    except (ValueError, TypeError, RecursionError):
        return None
    return (name, arguments) if isinstance(arguments, dict) else None
