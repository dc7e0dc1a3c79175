"""The terminal environment: one ``bash`` tool, terminal-like across turns, and ``submit``.

Each ``bash`` call runs in a fresh non-interactive ``bash`` inside the task's sandbox.
What makes it feel like one terminal session is the state kept in ``/run/pivotgym``:
after every command the working directory (``pwd``) and the exported variables
(``export -p``) are saved, and the next command starts from them. So ``cd src`` in one
turn and ``export N=3`` in another carry over, as they would in a terminal; shell
functions, aliases, unexported variables and background jobs do not (a background job
is stopped when its command returns, like closing a terminal tab). The state lives in
the sandbox, so snapshots, forks and replay carry it along with the files.

An episode ends when an assistant turn makes no tool call, when it calls ``submit``, or
at the turn limit; the task's test then scores it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pivotgym.harbor.env import HarborEnv

STATE_DIR = "/run/pivotgym"
# $1 is the command, $2 the workdir. The EXIT trap saves the shell state even when the
# command calls `exit`; `eval` gives the command the same parsing as a typed line. Only
# builtins run around the command, so a step costs no process beyond the shell itself.
RUNNER = f"""
if [ -f {STATE_DIR}/env ]; then . {STATE_DIR}/env; fi
__pg_cwd=$2
if [ -f {STATE_DIR}/cwd ]; then IFS= read -r __pg_cwd < {STATE_DIR}/cwd; fi
cd -- "$__pg_cwd" 2>/dev/null || cd -- "$2"
unset __pg_cwd
__pg_save() {{
    {{ [ -d {STATE_DIR} ] || mkdir -p {STATE_DIR}; }} &&
        pwd > {STATE_DIR}/cwd && export -p > {STATE_DIR}/env
}} 2>/dev/null
trap __pg_save EXIT
eval "$1"
"""

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": (
            "Run a bash command in the task's sandbox and return its combined stdout and "
            "stderr. The working directory and exported variables persist between calls."
        ),
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command to run."}},
            "required": ["command"],
        },
    },
}
SUBMIT_TOOL = {
    "type": "function",
    "function": {
        "name": "submit",
        "description": "Declare the task finished; the episode ends and the result is checked.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def format_result(output: str, exit_code: int | None, timed_out: bool, timeout_s: float) -> str:
    """The text the agent sees for one command: its output, then a note when it failed."""
    text = output
    if timed_out:
        note = f"[command timed out after {timeout_s:g} s and was killed]"
    elif exit_code not in (0, None):
        note = f"[exit status {exit_code}]"
    else:
        return text
    return text + ("" if not text or text.endswith("\n") else "\n") + note


class TerminalEnv(HarborEnv):
    """Shell tasks in a sandbox (see the module docstring for the shell's semantics)."""

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
        command = arguments.get("command")
        if not isinstance(command, str):
            raise ValueError("bash needs a string argument 'command'")
        extra = set(arguments) - {"command"}
        if extra:
            raise ValueError(f"bash takes only 'command', not {', '.join(sorted(extra))}")
        result = await self.sandbox.exec(
            [
                "bash",
                "--noprofile",
                "--norc",
                "-c",
                RUNNER,
                "bash",
                command,
                self.sandbox.spec.workdir,
            ]
        )
        timeout_s = self.sandbox.spec.limits.timeout_s
        content = format_result(result.output, result.exit_code, result.timed_out, timeout_s)
        return content, {
            "exit_code": result.exit_code,
            "duration_s": result.duration_s,  # moved to env.stats by the step
            "timed_out": result.timed_out,
            "output_truncated": result.truncated,
            "output_bytes": result.output_bytes,
        }
