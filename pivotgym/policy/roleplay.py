"""A language model playing the other side of a tool-API conversation: its user.

The model is told who it is and what it wants (a system prompt), and sees the
conversation with the roles swapped: the agent's messages to the user as the user's,
the user's own as the assistant's; tool calls and their results, which a user never
sees, are left out. It answers greedily, so the same conversation gets the same reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotgym.policy.engines.base import Engine, SamplingParams


def swapped(system: str, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's view of ``messages``, after ``system`` (module docstring)."""
    turns = [{"role": "system", "content": system}]
    for m in messages:
        if m.get("role") == "user":
            turns.append({"role": "assistant", "content": m.get("content") or ""})
        elif m.get("role") == "assistant" and m.get("content") and not m.get("tool_calls"):
            turns.append({"role": "user", "content": m["content"]})
    return turns


async def user_reply(
    engine: Engine,
    chat: Any,
    system: str,
    messages: Sequence[dict[str, Any]],
    max_new_tokens: int,
) -> str:
    """The user's next message, sampled greedily from ``engine`` through ``chat``."""
    ids = chat.prompt_ids(swapped(system, messages))
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=-1,
                              max_new_tokens=max_new_tokens,
                              stop_token_ids=tuple(chat.stop_ids), seed=0)  # fmt: skip
    (sample,) = await engine.generate(ids, 1, sampling)
    return sample.text.strip()
