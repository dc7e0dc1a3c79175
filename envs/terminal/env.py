"""The terminal environment: one ``bash`` tool, terminal-like across turns
(:mod:`pivotgym.sandbox.shell`), and ``submit``.

An episode ends when an assistant turn makes no tool call, when it calls ``submit``, or
at the turn limit; the task's test then scores it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pivotgym.harbor.env import HarborEnv
from pivotgym.sandbox.shell import BASH_TOOL, run_bash

SUBMIT_TOOL = {
    "type": "function",
    "function": {
        "name": "submit",
        "description": "Declare the task finished; the episode ends and the result is checked.",
        "parameters": {"type": "object", "properties": {}},
    },
}


class TerminalEnv(HarborEnv):
    """Shell tasks in a sandbox (the shell: :mod:`pivotgym.sandbox.shell`)."""

    name = "terminal"
    system_prompt = (
        "You are an expert Linux user working in a terminal. Use the bash tool to inspect "
        "and change files in the working directory. Work step by step: look, act, check. "
        "When the task is done, reply with a short summary and no tool call."
    )
    tools: ClassVar[list[dict[str, Any]]] = [BASH_TOOL, SUBMIT_TOOL]
    finishing_tools = frozenset({"submit"})

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        if name == "submit":
            return "Submitted.", {}
        return await run_bash(self.sandbox, arguments)
