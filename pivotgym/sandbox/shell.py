"""A shell session in a sandbox: ``bash`` commands that feel like one terminal.

Each command runs in a fresh non-interactive ``bash`` inside the sandbox. What makes it
feel like one terminal session is the state kept in :data:`STATE_DIR`: after every
command the working directory (``pwd``) and the exported variables (``export -p``) are
saved, and the next command starts from them. So ``cd src`` in one turn and ``export
N=3`` in another carry over, as they would in a terminal; shell functions, aliases,
unexported variables and background jobs do not (a background job is stopped when its
command returns, like closing a terminal tab). The state lives in the sandbox, so
snapshots, forks and replay carry it along with the files.

:data:`BASH_TOOL` is the tool's schema; :func:`run_bash` runs one command and returns
the text the agent sees (:func:`format_result`) with the exec's facts.
"""

from __future__ import annotations

from typing import Any

from pivotgym.sandbox.base import Sandbox

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


async def run_bash(sandbox: Sandbox, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run the ``bash`` tool's call in ``sandbox``: the agent's text and the exec's info
    (``duration_s`` among it, which a tool env moves to its stats). Arguments other
    than a string ``command`` are a ``ValueError`` the agent is shown."""
    command = arguments.get("command")
    if not isinstance(command, str):
        raise ValueError("bash needs a string argument 'command'")
    extra = set(arguments) - {"command"}
    if extra:
        raise ValueError(f"bash takes only 'command', not {', '.join(sorted(extra))}")
    argv = ["bash", "--noprofile", "--norc", "-c", RUNNER, "bash", command, sandbox.spec.workdir]
    result = await sandbox.exec(argv)
    timeout_s = sandbox.spec.limits.timeout_s
    content = format_result(result.output, result.exit_code, result.timed_out, timeout_s)
    return content, {
        "exit_code": result.exit_code,
        "duration_s": result.duration_s,
        "timed_out": result.timed_out,
        "output_truncated": result.truncated,
        "output_bytes": result.output_bytes,
    }
