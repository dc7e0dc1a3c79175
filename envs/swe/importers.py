"""Trajectories recorded by other SWE agents, as pivotgym trajectories of the SWE env.

- :func:`from_swe_agent`: a SWE-agent ``.traj`` file (1.0's function-calling
  ``history``): its system, user, assistant and tool messages in order, each assistant
  message's tool calls in OpenAI's format, each tool message paired with its call by id.
  Observations lose SWE-agent's ``OBSERVATION:`` prefix and the pty's ``\\r\\n``; a
  content given as a list of text parts is joined. Demonstrations shown in the prompt
  (``is_demo``) are left out.
- :func:`from_openhands`: an OpenHands-style list of chat messages, whose tool names
  (``execute_bash``, ``finish``) are pivotgym's aliases. Arguments pivotgym's tools do
  not take are dropped (each call's ``security_risk``, bash's ``timeout`` and a false
  ``is_input``), but for ``finish``'s ``message``, which becomes the assistant's text;
  input to a running command (``is_input`` true) does not map.

Both map onto the env's tools: ``bash``, ``str_replace_editor`` and ``submit``. A call of
another tool (SWE-agent's older ``find_file``, ``open``, ``edit``, ...), a text action
(SWE-agent 0.x), a tool message without its call, or a trajectory of no known task is a
one-line error naming the file and the entry, as is a tool call no tool message answers
before the next turn.
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.swe.tasks import SWETask
from pivotgym.envs.swe.tools import EDITOR_TOOL, SUBMIT_TOOL
from pivotgym.errors import DataError
from pivotgym.sandbox.shell import BASH_TOOL

ALIASES = {"bash": "bash", "execute_bash": "bash", "str_replace_editor": "str_replace_editor",
           "submit": "submit", "finish": "submit"}  # fmt: skip
# Arguments of the other agents' tools that pivotgym's do not take, by pivotgym's tool:
# OpenHands' risk rating of each call and bash's own timeout (a sandbox has its limits).
DROPPED_ARGUMENTS = {
    "bash": frozenset({"security_risk", "timeout"}),
    "str_replace_editor": frozenset({"security_risk"}),
    "submit": frozenset({"security_risk", "task_completed", "outputs"}),
}
TOOLS = [BASH_TOOL, EDITOR_TOOL, SUBMIT_TOOL]


def _text(content: Any, where: str) -> str:
    if isinstance(content, str) and content.startswith("[{") and "'type'" in content:
        with contextlib.suppress(ValueError, SyntaxError):  # SWE-agent writes some as a repr
            content = ast.literal_eval(content)
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise DataError("a content part must be {'type': 'text', 'text': ...}",
                                field=f"{where}.content[{i}]")  # fmt: skip
            parts.append(part.get("text", ""))
        content = "".join(parts)
    if content is None:
        return ""
    if not isinstance(content, str):
        raise DataError("must be a string or a list of text parts", field=f"{where}.content")
    return content.replace("\r\n", "\n")


def _list(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _call(raw: Any, where: str) -> dict[str, Any]:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise DataError("a tool call needs a function with a name", field=where)
    name = function["name"]
    if name not in ALIASES:
        raise DataError(
            f"unknown action {name!r}: pivotgym's SWE env has bash, str_replace_editor and "
            "submit", field=f"{where}.function.name",
        )  # fmt: skip
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        raise DataError("arguments are not JSON", field=f"{where}.function.arguments") from None
    if not isinstance(parsed, dict):
        raise DataError("arguments must be an object", field=f"{where}.function.arguments")
    tool = ALIASES[name]
    if tool == "bash" and parsed.get("is_input") not in (None, False, "false"):
        raise DataError("input to a running command (is_input) has no bash call to map to",
                        field=f"{where}.function.arguments.is_input")  # fmt: skip
    kept = {k: v for k, v in parsed.items()
            if k not in DROPPED_ARGUMENTS[tool] and k != "is_input"}  # fmt: skip
    if not isinstance(raw.get("id"), str):
        raise DataError("a tool call needs its string id", field=f"{where}.id")
    return {"id": raw["id"], "type": "function",
            "function": {"name": tool, "arguments": json.dumps(kept)}}  # fmt: skip


def _finish_message(call: dict[str, Any]) -> str | None:
    """The words an OpenHands ``finish`` call carries (``message``), which pivotgym's
    ``submit`` does not take: they become the assistant message's text."""
    arguments = json.loads(call["function"]["arguments"])
    if call["function"]["name"] != "submit" or "message" not in arguments:
        return None
    message = arguments.pop("message")
    call["function"]["arguments"] = json.dumps(arguments)
    return message if isinstance(message, str) else json.dumps(message)


def _messages(entries: Any, where: str, *, observation_prefix: str = "") -> list[dict[str, Any]]:
    if not isinstance(entries, list):
        raise DataError("must be a list of messages", field=where)
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # the last assistant turn's calls no tool message has answered
    calls_at = 0
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise DataError("must be an object", field=at)
        if entry.get("is_demo"):
            continue
        role = entry.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": _text(entry.get("content"), at)})
        elif role == "assistant":
            if pending:
                raise DataError(f"tool call {pending[0]!r} has no tool message",
                                field=f"{where}[{calls_at}]")  # fmt: skip
            calls = _list(entry.get("tool_calls")) or []
            if not isinstance(calls, list):
                raise DataError("must be a list of tool calls", field=f"{at}.tool_calls")
            if not calls and entry.get("action"):
                raise DataError("a text action (SWE-agent 0.x) has no tool call to map",
                                field=f"{at}.action")  # fmt: skip
            mapped = [_call(c, f"{at}.tool_calls[{j}]") for j, c in enumerate(calls)]
            said = [m for c in mapped if (m := _finish_message(c))]
            content = "\n\n".join([_text(entry.get("content"), at), *said]).strip() or None
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if mapped:
                message["tool_calls"] = mapped
            pending, calls_at = [c["id"] for c in mapped], i
            out.append(message)
        elif role == "tool":
            ids = _list(entry.get("tool_call_ids")) or [entry.get("tool_call_id")]
            call_id = ids if isinstance(ids, str) else ids[0] if isinstance(ids, list) else None
            if call_id not in pending:
                raise DataError("a tool message whose call is not the last assistant turn's",
                                field=at)  # fmt: skip
            pending.remove(call_id)
            text = _text(entry.get("content"), at)
            text = text.removeprefix(observation_prefix) if observation_prefix else text
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
        else:
            raise DataError(f"unknown role {role!r}", field=f"{at}.role")
    return out


def _task_of(name: str, tasks: Mapping[str, SWETask], where: str) -> SWETask:
    if name not in tasks:
        raise DataError(f"no instance {name!r} among the tasks given", field=where)
    return tasks[name]


def from_swe_agent(path: str | Path, tasks: Mapping[str, SWETask]) -> Trajectory:
    """A SWE-agent ``.traj`` file as a trajectory of the instance it ran on (``tasks`` by
    instance id; the file's ``environment``, else its name, says which)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read a SWE-agent trajectory: {exc}", file=path) from None
    try:
        if not isinstance(data, dict) or "history" not in data:
            raise DataError("not a SWE-agent trajectory (no 'history')")
        name = data.get("environment") if data.get("environment") not in (None, "main") else None
        task = _task_of(name or path.name.removesuffix(".traj"), tasks, "environment")
        messages = _messages(data["history"], "history", observation_prefix="OBSERVATION:\n")
    except DataError as exc:
        raise DataError(exc.problem, file=path, field=exc.field) from None
    info = data.get("info") or {}
    return Trajectory(
        id=f"swe-agent/{task.instance_id}/{path.stem}",
        env="swe",
        task=task.to_json(),
        messages=messages,
        tools=TOOLS,
        metadata={"source": path.name, "exit_status": info.get("exit_status")},
    )


def from_openhands(
    messages: Any, task: SWETask, *, source: str = "openhands", trajectory_id: str | None = None
) -> Trajectory:
    """An OpenHands-style chat transcript (OpenAI messages) of ``task`` as a trajectory."""
    try:
        mapped = _messages(messages, "messages")
    except DataError as exc:
        raise DataError(exc.problem, file=source, field=exc.field) from None
    return Trajectory(
        id=trajectory_id or f"openhands/{task.instance_id}",
        env="swe",
        task=task.to_json(),
        messages=mapped,
        tools=TOOLS,
        metadata={"source": source},
    )
