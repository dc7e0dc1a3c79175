"""Pivots: the candidate turns worth training on, and their exchange with NeMo-Gym.

Profiling gives each candidate ``(s_t, a*_t)`` the rewards of K actions sampled from
the frozen policy π0. A candidate is a **pivot** when those rewards vary (σ² > 0: the
turn is informative for GRPO) and the policy is not already good at it (μ < λ_diff).

Our pivot rows (JSONL) carry everything a learner needs without the source file::

    {"pivot_id", "trajectory_id", "turn", "env", "task", "prefix", "reference",
     "tools", "profile": {"mean", "variance", "k", "rewards"}}

NeMo-Gym rows (the Responses-API shape NVIDIA's stack trains from) carry
``responses_create_params`` (``input`` items and ``tools``), ``expected_action``
(``function_call``, ``function_call_batch`` or ``message``), ``pivot_id``,
``trajectory_id`` and ``decision_index``; :func:`to_nemo_row` and
:func:`from_nemo_row` convert between the two without loss of what both can hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivotgym.errors import DataError


@dataclass(frozen=True)
class FilterReport:
    """What the filter saw: counts, the kept fraction and the histogram of μ."""

    candidates: int
    kept: int
    zero_variance: int
    too_easy: int
    no_valid_samples: int
    lambda_diff: float
    mean_histogram: tuple[int, ...]  # 10 bins over [0, 1]
    beyond_context: int = 0  # states the model could not read: not sampled

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.candidates if self.candidates else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "mean_histogram": list(self.mean_histogram),
            "kept_fraction": self.kept_fraction,
        }


def is_pivot(mean: float, variance: float, lambda_diff: float) -> bool:
    """The PivotRL rule: informative (σ² > 0) and not yet mastered (μ < λ_diff)."""
    return variance > 0.0 and mean < lambda_diff


def select_pivots(
    profiles: Iterable[Mapping[str, Any]], lambda_diff: float
) -> tuple[list[Mapping[str, Any]], FilterReport]:
    """Keep the profiled candidates that are pivots; report what was dropped and why.

    A profile row has ``mean``, ``variance`` and ``n_valid`` (samples that were not
    infrastructure failures); a row with no valid sample is neither kept nor counted as
    easy or hard, nor is a row of a state beyond the model's context (``beyond_context``,
    not sampled), which is counted apart.
    """
    if not 0.0 < lambda_diff <= 1.0:
        raise DataError(f"must be in (0, 1], got {lambda_diff}", field="lambda_diff")
    kept: list[Mapping[str, Any]] = []
    histogram = [0] * 10
    total = zero_var = easy = invalid = beyond = 0
    for row in profiles:
        total += 1
        if row.get("beyond_context"):
            beyond += 1
            continue
        if not row.get("n_valid"):
            invalid += 1
            continue
        mean, variance = float(row["mean"]), float(row["variance"])
        histogram[min(int(mean * 10), 9)] += 1
        if variance <= 0.0:
            zero_var += 1
        elif mean >= lambda_diff:
            easy += 1
        if is_pivot(mean, variance, lambda_diff):
            kept.append(row)
    report = FilterReport(
        total, len(kept), zero_var, easy, invalid, lambda_diff, tuple(histogram), beyond
    )
    return kept, report


# ------------------------------------------------------------------------ NeMo-Gym rows


def _output_text(text: str) -> list[dict[str, Any]]:
    return [{"type": "output_text", "text": text, "annotations": []}]


def to_responses_input(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as Responses-API input items."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "user"):
            items.append({"role": role, "content": message.get("content") or ""})
        elif role == "assistant":
            if message.get("content") or not message.get("tool_calls"):
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": _output_text(message.get("content") or ""),
                    }
                )
            for call in message.get("tool_calls") or []:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "status": "completed",
                        "arguments": call["function"]["arguments"],
                    }
                )
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message["tool_call_id"],
                    "output": message.get("content") or "",
                }
            )
    return items


def from_responses_input(
    items: Sequence[Mapping[str, Any]], where: str = ""
) -> list[dict[str, Any]]:
    """Responses-API input items back to chat messages (consecutive calls form one turn)."""
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in ("system", "user", "developer"):
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "message" and role == "assistant":
            text = "".join(part.get("text", "") for part in item.get("content") or [])
            messages.append({"role": "assistant", "content": text})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant":  # calls of the same model turn
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": item.get("output") or "",
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise DataError(
                f"unsupported input item type {kind!r}",
                file=where or None,
                field=f"responses_create_params.input[{i}]",
            )
    return messages


def to_expected_action(action: Mapping[str, Any]) -> dict[str, Any]:
    calls = action.get("tool_calls") or []
    if not calls:
        return {"type": "message", "content": action.get("content") or ""}
    as_calls = [
        {
            "type": "function_call",
            "name": c["function"]["name"],
            "arguments": c["function"]["arguments"],
        }
        for c in calls
    ]
    if len(as_calls) == 1:
        return as_calls[0]
    return {"type": "function_call_batch", "calls": as_calls}


def from_expected_action(expected: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    kind = expected.get("type")
    if kind == "message":
        return {"role": "assistant", "content": expected.get("content") or ""}
    if kind == "function_call":
        calls = [expected]
    elif kind == "function_call_batch":
        calls = list(expected.get("calls") or [])
    else:
        raise DataError(
            f"unknown expected_action type {kind!r}",
            file=where or None,
            field="expected_action.type",
        )
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in enumerate(calls)
        ],
    }


def to_nemo_row(pivot: Mapping[str, Any]) -> dict[str, Any]:
    """One of our pivot rows as a NeMo-Gym pivot row."""
    tools = [
        {
            "type": "function",
            "strict": False,
            **{k: v for k, v in tool["function"].items() if k != "type"},
        }
        for tool in pivot.get("tools") or []
    ]
    return {
        "pivot_id": pivot["pivot_id"],
        "trajectory_id": pivot["trajectory_id"],
        "decision_index": pivot["turn"],
        "responses_create_params": {
            "input": to_responses_input(pivot["prefix"]),
            "tools": tools,
            "parallel_tool_calls": True,
        },
        "expected_action": to_expected_action(pivot["reference"]),
        "metadata": {"env": pivot.get("env"), "profile": pivot.get("profile")},
    }


def from_nemo_row(row: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A NeMo-Gym pivot row as one of ours (no task: such pivots cannot be executed)."""
    for key in ("responses_create_params", "expected_action", "trajectory_id"):
        if key not in row:
            raise DataError("missing field", file=where or None, field=key)
    params = row["responses_create_params"]
    tools = [
        {
            "type": "function",
            "function": {k: v for k, v in t.items() if k not in ("type", "strict")},
        }
        for t in params.get("tools") or []
    ]
    prefix = from_responses_input(params.get("input") or [], where)
    turn = row.get("decision_index", sum(m["role"] == "assistant" for m in prefix))
    metadata = row.get("metadata") or {}
    return {
        "pivot_id": row.get("pivot_id") or f"{row['trajectory_id']}:{turn}",
        "trajectory_id": str(row["trajectory_id"]),
        "turn": turn,
        "env": metadata.get("env"),
        "task": None,
        "prefix": prefix,
        "reference": from_expected_action(row["expected_action"], where),
        "tools": tools,
        "profile": metadata.get("profile"),
    }


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=path)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"not valid JSON ({exc.msg})", file=path, line=lineno) from None
    return rows


def import_nemo_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read a NeMo-Gym pivot JSONL file as pivotgym pivot rows; errors name file and line."""
    out = []
    for lineno, row in enumerate(read_rows(path), start=1):
        out.append(from_nemo_row(row, where=f"{path}:{lineno}"))
    return out
