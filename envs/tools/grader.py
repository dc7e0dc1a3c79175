"""Episode reward of tool-API tasks, on τ²-bench's basis.

- **DB**: the end database equals the task's gold state, the gold actions replayed on
  its initial database (:func:`pivotgym.envs.tools.tasks.gold_state`); rows are compared
  exactly, not by hash.
- **COMMUNICATE**: every string of the task's ``required_info`` appears in some message
  the agent said to the user, compared as τ² does: case-insensitive, commas removed.
- The reward is the product of the components (1 only when both hold).
- Termination: an episode that did not end by the user's stop or a finishing tool (it
  was cut by the turn limit) scores 0, as τ² gives 0 to every other termination reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotgym.envs.tools.tasks import gold_state
from pivotgym.grader import Episode


def _plain(text: str) -> str:
    return text.lower().replace(",", "")


def communicated(required: Sequence[str], messages: Sequence[dict[str, Any]]) -> list[str]:
    """The strings of ``required`` that no assistant message carries."""
    said = [_plain(m.get("content") or "") for m in messages if m.get("role") == "assistant"]
    return [info for info in required if not any(_plain(info) in text for text in said)]


class DatabaseGrader:
    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        task = episode.task
        if not episode.terminated:
            return 0.0, {"termination": "max_turns", "db": None, "communicate": None}
        db = episode.world.db  # type: ignore[attr-defined]
        gold = gold_state(task)
        db_ok = db.same_as(gold)
        missing = communicated(task.required_info, episode.messages)
        info: dict[str, Any] = {
            "termination": "stop",
            "db": float(db_ok),
            "communicate": float(not missing),
            "missing_info": missing,
        }
        if not db_ok:
            info["db_diff"] = gold.diff(db)
        return float(db_ok) * float(not missing), info
