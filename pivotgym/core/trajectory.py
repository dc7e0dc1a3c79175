"""SFT agent trajectories: the JSONL format, its validation, loading and saving.

One trajectory a line::

    {"id": "...", "env": "terminal", "task": "tasks/x" | {inline task spec},
     "messages": [OpenAI chat messages with tool_calls], "tools": [schemas], "metadata": {...}}

``tools`` (optional, as in OpenAI's fine-tuning rows) are the function schemas the agent
had; a trajectory without them had its environment's. Environments whose tools vary by
task (a tool-API domain each) record them, so that prompts show each its own.

Assistant turns are counted from 0 in the order they appear; turn ``t`` is the
``t``-th message with role ``assistant``. The state "just before turn t" is the
conversation prefix up to (not including) that message.

Validation errors name the file, the line and the field (``messages[3].tool_calls[0]
.function.arguments``), and are raised as :class:`~pivotgym.errors.DataError`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.errors import DataError

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Trajectory:
    """One recorded episode. ``task`` is a task directory path (relative paths resolve
    against ``base_dir``, the folder of the JSONL file) or an inline task spec."""

    id: str
    env: str
    task: str | dict[str, Any]
    messages: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    base_dir: Path | None = field(default=None, compare=False, repr=False)
    tools: list[dict[str, Any]] | None = None

    @property
    def assistant_indices(self) -> list[int]:
        """Message index of each assistant turn, in turn order."""
        return [i for i, m in enumerate(self.messages) if m["role"] == "assistant"]

    @property
    def num_turns(self) -> int:
        return len(self.assistant_indices)

    def prefix(self, turn: int) -> list[dict[str, Any]]:
        """The conversation just before assistant turn ``turn`` (``turn == num_turns``: all)."""
        indices = self.assistant_indices
        if not 0 <= turn <= len(indices):
            raise DataError(
                f"turn {turn} out of range: trajectory has {len(indices)} assistant turns",
                field="turn",
            )
        return self.messages[: indices[turn]] if turn < len(indices) else list(self.messages)

    def action(self, turn: int) -> dict[str, Any]:
        """The recorded assistant message of turn ``turn``."""
        return self.messages[self.assistant_indices[turn]]

    def tool_results(self, turn: int) -> list[dict[str, Any]]:
        """The tool messages that answered turn ``turn``'s calls, in order."""
        start = self.assistant_indices[turn] + 1
        out = []
        for message in self.messages[start:]:
            if message["role"] != "tool":
                break
            out.append(message)
        return out

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "env": self.env,
            "task": self.task,
            "messages": self.messages,
        }
        if self.tools is not None:
            row["tools"] = self.tools
        if self.metadata:
            row["metadata"] = self.metadata
        return row


def validate_messages(messages: Any, where: dict[str, Any]) -> None:
    """Check a message list against the chat format; raise a located ``DataError``."""
    if not isinstance(messages, list):
        raise DataError("must be a list of messages", field="messages", **where)
    open_calls: set[str] = set()
    assistant_turns = 0
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            raise DataError("must be an object", field=at, **where)
        role = message.get("role")
        if role not in ROLES:
            raise DataError(
                f"unknown role {role!r} (expected one of {', '.join(ROLES)})",
                field=f"{at}.role",
                **where,
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise DataError("must be a string or null", field=f"{at}.content", **where)
        if role == "assistant":
            assistant_turns += 1
            open_calls = set()
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise DataError("must be a list", field=f"{at}.tool_calls", **where)
            for j, call in enumerate(calls):
                open_calls.add(_validate_call(call, f"{at}.tool_calls[{j}]", where))
            if content is None and not calls:
                raise DataError(
                    "assistant message has neither content nor tool_calls", field=at, **where
                )
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                raise DataError(
                    f"tool_call_id {call_id!r} matches no call of the preceding assistant turn",
                    field=f"{at}.tool_call_id",
                    **where,
                )
            open_calls.discard(call_id)
        elif content is None:
            raise DataError("must be a string", field=f"{at}.content", **where)
    if assistant_turns == 0:
        raise DataError("empty trajectory: no assistant turn", field="messages", **where)


def _validate_call(call: Any, at: str, where: dict[str, Any]) -> str:
    if not isinstance(call, dict):
        raise DataError("must be an object", field=at, **where)
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise DataError("must be a non-empty string", field=f"{at}.id", **where)
    if call.get("type", "function") != "function":
        raise DataError(f"unsupported type {call.get('type')!r}", field=f"{at}.type", **where)
    function = call.get("function")
    if not isinstance(function, dict):
        raise DataError("must be an object", field=f"{at}.function", **where)
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise DataError("must be a non-empty string", field=f"{at}.function.name", **where)
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise DataError("must be a JSON object string", field=f"{at}.function.arguments", **where)
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg})", field=f"{at}.function.arguments", **where
        ) from None
    except RecursionError:  # json.loads gives up at about 1,000 levels
        raise DataError(
            "JSON nested too deeply", field=f"{at}.function.arguments", **where
        ) from None
    if not isinstance(parsed, dict):
        raise DataError("must encode a JSON object", field=f"{at}.function.arguments", **where)
    return call_id


def parse_trajectory(row: Any, *, file: Path | None = None, line: int | None = None) -> Trajectory:
    where: dict[str, Any] = {"file": file, "line": line}
    if not isinstance(row, dict):
        raise DataError("a trajectory must be a JSON object", **where)
    for key, kind in (("id", str), ("env", str)):
        if not isinstance(row.get(key), kind) or not row[key]:
            raise DataError("required, a non-empty string", field=key, **where)
    task = row.get("task")
    if not isinstance(task, str | dict) or not task:
        raise DataError(
            "required: a task directory path or an inline task spec", field="task", **where
        )
    unknown = set(row) - {"id", "env", "task", "messages", "tools", "metadata"}
    if unknown:
        raise DataError(f"unknown field(s) {', '.join(sorted(unknown))}", **where)
    validate_messages(row.get("messages"), where)
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        raise DataError("must be an object", field="metadata", **where)
    tools = row.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise DataError("must be a list of tool schemas", field="tools", **where)
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise DataError('a tool is {"type": "function", "function": {"name", ...}}',
                                field=f"tools[{i}]", **where)  # fmt: skip
    return Trajectory(
        id=row["id"],
        env=row["env"],
        task=task,
        messages=row["messages"],
        metadata=metadata,
        base_dir=file.parent if file is not None else None,
        tools=tools,
    )


def iter_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Yield trajectories from a JSONL file (``.jsonl`` or ``.jsonl.gz``), validating each.

    A bad line raises :class:`~pivotgym.errors.DataError` once the lines before it have
    been yielded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such trajectory file", file=path)
    seen: dict[str, int] = {}
    for lineno, row in jsonl.rows(path):
        trajectory = parse_trajectory(row, file=path, line=lineno)
        if trajectory.id in seen:
            raise DataError(
                f"duplicate id {trajectory.id!r} (first on line {seen[trajectory.id]})",
                file=path,
                line=lineno,
                field="id",
            )
        seen[trajectory.id] = lineno
        yield trajectory


def dumps(trajectory: Trajectory) -> str:
    """The canonical one-line JSON form that :func:`save_trajectories` writes."""
    return json.dumps(trajectory.to_json(), ensure_ascii=False, separators=(",", ":"))


def save_trajectories(trajectories: Iterable[Trajectory], path: str | Path) -> int:
    """Write trajectories as canonical JSONL; loading the file gives them back equal.

    Returns the number written. A ``.gz`` suffix writes a reproducible gzip (no mtime).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [dumps(t) + "\n" for t in trajectories]
    data = "".join(lines).encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    return len(lines)
