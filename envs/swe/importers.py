"""Trajectories recorded by other SWE agents, as pivotgym trajectories of the SWE env.

- :func:`from_swe_agent`: a SWE-agent ``.traj`` file (1.0's function-calling
  ``history``): its system, user, assistant and tool messages in order, each assistant
  message's tool calls in OpenAI's format, each tool message paired with its call by id.
  Observations lose SWE-agent's ``OBSERVATION:`` prefix and the pty's ``\\r\\n``; a
  content given as a list of text parts is joined. Demonstrations shown in the prompt
  (``is_demo``) are left out.
- :func:`from_openhands`: an OpenHands-style list of chat messages, whose tool names
  (``execute_bash``, ``finish``) are pivotgym's aliases and whose extra arguments
  (``safety_risk``, ``is_input``) are dropped.

Both map onto the env's tools: ``bash``, ``str_replace_editor`` and ``submit``. A call of
another tool (SWE-agent's older ``find_file``, ``open``, ``edit``, ...), a text action
(SWE-agent 0.x), a tool message without its call, or a trajectory of no known task is a
one-line error naming the file and the entry.
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
DROPPED_ARGUMENTS = frozenset({"safety_risk", "is_input", "thought"})
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
    kept = {k: v for k, v in parsed.items() if k not in DROPPED_ARGUMENTS}
    if not isinstance(raw.get("id"), str):
        raise DataError("a tool call needs its string id", field=f"{where}.id")
    return {"id": raw["id"], "type": "function",
            "function": {"name": ALIASES[name], "arguments": json.dumps(kept)}}  # fmt: skip


def _messages(entries: Any, where: str, *, observation_prefix: str = "") -> list[dict[str, Any]]:
    if not isinstance(entries, list):
        raise DataError("must be a list of messages", field=where)
    out: list[dict[str, Any]] = []
    pending: list[str] = []
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
            calls = _list(entry.get("tool_calls")) or []
            if not calls and entry.get("action"):
                raise DataError("a text action (SWE-agent 0.x) has no tool call to map",
                                field=f"{at}.action")  # fmt: skip
            mapped = [_call(c, f"{at}.tool_calls[{j}]") for j, c in enumerate(calls)]
            content = _text(entry.get("content"), at) or None
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if mapped:
                message["tool_calls"] = mapped
            pending = [c["id"] for c in mapped]
            out.append(message)
        elif role == "tool":
            ids = _list(entry.get("tool_call_ids")) or [entry.get("tool_call_id")]
            call_id = ids[0] if ids else None
            if call_id not in pending:
                raise DataError("a tool message whose call is not the last assistant turn's",
                                field=at)  # fmt: skip
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
