"""Episode reward of tool-API tasks, on τ²-bench's basis.

- **DB**: the end database equals the task's gold state, the gold actions replayed on
  its initial database (:func:`pivotgym.envs.tools.tasks.gold_state`); rows are compared
  exactly, not by hash.
- **COMMUNICATE**: every string of the task's ``required_info`` appears in some message
  the agent said to the user (one without tool calls), compared as τ² does
  (case-insensitive, commas removed) but as a whole token: ``0.00`` is not found in
  ``10.00``, nor a card's four digits in a long run of digits.
- **ACTION**, for tasks that change nothing (a refusal, a question): every gold look-up
  was made, with the same canonical arguments (τ²'s action check). Without it, a refusal
  said blindly would score on the database alone, which such a task leaves as it was.
- The reward is the product of the components (1 only when all hold).
- Termination: an episode that did not end by the user's stop or a finishing tool (it
  was cut by the turn limit) scores 0, as τ² gives 0 to every other termination reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pivotgym.core.grader import Episode
from pivotgym.envs.tools.domain import ToolTask, get_domain
from pivotgym.envs.tools.tasks import gold_state
from pivotgym.verifiers.schema import canonical_arguments, canonical_json


def _plain(text: str) -> str:
    return text.lower().replace(",", "")


def _found(info: str, text: str) -> bool:
    pattern = r"(?<![\w.])" + re.escape(_plain(info)) + r"(?![\w]|\.\d)"
    return re.search(pattern, text) is not None


def communicated(required: Sequence[str], messages: Sequence[dict[str, Any]]) -> list[str]:
    """The strings of ``required`` that no message to the user carries (module docstring)."""
    said = [
        _plain(m.get("content") or "")
        for m in messages
        if m.get("role") == "assistant" and not m.get("tool_calls")
    ]
    return [info for info in required if not any(_found(info, text) for text in said)]


def missing_lookups(task: ToolTask, messages: Sequence[dict[str, Any]]) -> list[str]:
    """The gold look-ups of ``task`` that no call of the episode made."""
    schemas = {t["function"]["name"]: t["function"]["parameters"]
               for t in get_domain(task.domain).tools}  # fmt: skip
    made = set()
    for m in messages:
        for call in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or function.get("name") not in schemas:
                continue
            try:
                arguments = json.loads(function.get("arguments") or "{}")
                canonical = canonical_arguments(arguments, schemas[function["name"]])
            except (ValueError, TypeError, RecursionError):
                continue
            made.add(canonical_json([function["name"], canonical]))
    missing = []
    for call in (c for group in task.lookups for c in group):
        canonical = canonical_arguments(dict(call.arguments), schemas[call.name])
        if canonical_json([call.name, canonical]) not in made:
            missing.append(call.name)
    return missing


class DatabaseGrader:
    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        task = episode.task
        if not episode.terminated:
            return 0.0, {"termination": "max_turns", "db": None, "communicate": None}
        db = episode.world.db  # type: ignore[attr-defined]
        gold = gold_state(task)
        db_ok = db.same_as(gold)
        missing = communicated(task.required_info, episode.messages)
        skipped = [] if task.writes else missing_lookups(task, episode.messages)
        info: dict[str, Any] = {
            "termination": "stop",
            "db": float(db_ok),
            "communicate": float(not missing),
            "missing_info": missing,
        }
        if not task.writes:
            info["action"] = float(not skipped)
            info["missing_lookups"] = skipped
        if not db_ok:
            info["db_diff"] = gold.diff(db)
        return float(db_ok) * float(not missing) * float(not skipped), info
