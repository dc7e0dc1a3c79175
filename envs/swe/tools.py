"""The SWE env's tools, in SWE-agent's (and OpenHands') interface: ``bash``,
``str_replace_editor`` and ``submit``.

- ``bash`` is the terminal env's shell session (:mod:`pivotgym.sandbox.shell`).
- ``str_replace_editor`` runs :mod:`pivotgym.envs.swe.editor_program` inside the
  sandbox, with SWE-agent's commands, argument names, rules and messages (``old_str``
  must occur exactly once, ``insert`` puts ``new_str`` after ``insert_line``, an edit
  history for ``undo_edit``). Arguments of the wrong type are refused before anything
  runs, naming the argument.
- ``submit`` stages every change and answers with the diff against the task's commit
  (what SWE-agent records as the submission); the episode ends and the grader runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pivotgym.envs.swe.editor_program import COMMANDS
from pivotgym.sandbox.base import Sandbox

EDITOR_PROGRAM = (Path(__file__).parent / "editor_program.py").read_text()

EDITOR_TOOL = {
    "type": "function",
    "function": {
        "name": "str_replace_editor",
        "description": (
            "Custom editing tool for viewing, creating and editing files.\n"
            "* State is persistent across command calls and discussions with the user.\n"
            "* If `path` is a file, `view` displays the result of applying `cat -n`. If "
            "`path` is a directory, `view` lists non-hidden files and directories up to 2 "
            "levels deep.\n"
            "* The `create` command cannot be used if the specified `path` already exists "
            "as a file.\n"
            "* If a `command` generates a long output, it will be truncated and marked with "
            "`<response clipped>`.\n"
            "* The `undo_edit` command will revert the last edit made to the file at `path`.\n"
            "Notes for using the `str_replace` command:\n"
            "* The `old_str` parameter should match EXACTLY one or more consecutive lines "
            "from the original file. Be mindful of whitespaces!\n"
            "* If the `old_str` parameter is not unique in the file, the replacement will not "
            "be performed. Make sure to include enough context in `old_str` to make it "
            "unique.\n"
            "* The `new_str` parameter should contain the edited lines that should replace "
            "the `old_str`."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {
                    "type": "string",
                    "enum": list(COMMANDS),
                    "description": "The commands to run.",
                },
                "path": {
                    "type": "string",
                    "description": "Absolute path to file or directory, e.g. `/testbed/file.py`.",
                },
                "file_text": {
                    "type": "string",
                    "description": "Required for `create`: the content of the file.",
                },
                "old_str": {
                    "type": "string",
                    "description": "Required for `str_replace`: the string to replace.",
                },
                "new_str": {
                    "type": "string",
                    "description": "For `str_replace`, the new string; for `insert`, the "
                    "string to insert.",
                },
                "insert_line": {
                    "type": "integer",
                    "description": "Required for `insert`: `new_str` goes after this line.",
                },
                "view_range": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "For `view` of a file: the lines to show, e.g. [11, 12] "
                    "shows lines 11 and 12; [start, -1] shows from start to the end.",
                },
            },
            "required": ["command", "path"],
        },
    },
}
SUBMIT_TOOL = {
    "type": "function",
    "function": {
        "name": "submit",
        "description": "Submit the current state of the repository as the fix; the episode ends.",
        "parameters": {"type": "object", "properties": {}},
    },
}

_TYPES: dict[str, tuple[type, ...]] = {
    "command": (str,),
    "path": (str,),
    "file_text": (str,),
    "old_str": (str,),
    "new_str": (str,),
    "insert_line": (int,),
    "view_range": (list,),
}
# The git of a sandbox runs no program of the repository's (hooks, monitors, pagers).
SAFE_GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
            "-c", "core.pager=cat", "-c", "diff.external="]  # fmt: skip


def check_editor_arguments(arguments: dict[str, Any]) -> None:
    """Refuse (``ValueError``) arguments SWE-agent's parser would not take."""
    unknown = sorted(set(arguments) - set(_TYPES))
    if unknown:
        raise ValueError(f"str_replace_editor has no argument {unknown[0]!r}")
    for key in ("command", "path"):
        if arguments.get(key) is None:
            raise ValueError(f"str_replace_editor needs the argument {key!r}")
    for key, value in arguments.items():
        ok = value is None or (isinstance(value, _TYPES[key]) and not isinstance(value, bool))
        if not ok:
            raise ValueError(f"argument {key!r} must be {_TYPES[key][0].__name__}")
    view_range = arguments.get("view_range")
    if view_range is not None and not all(
        isinstance(i, int) and not isinstance(i, bool) for i in view_range
    ):
        raise ValueError("argument 'view_range' must be a list of integers")


async def run_editor(sandbox: Sandbox, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    check_editor_arguments(arguments)
    given = {k: v for k, v in arguments.items() if v is not None}
    result = await sandbox.exec(["python3", "-c", EDITOR_PROGRAM, json.dumps(given)])
    text = result.output
    if result.timed_out:
        text += f"\n[the editor timed out after {sandbox.spec.limits.timeout_s:g} s]"
    return text, {"exit_code": result.exit_code, "duration_s": result.duration_s,
                  "timed_out": result.timed_out}  # fmt: skip


async def run_submit(sandbox: Sandbox) -> tuple[str, dict[str, Any]]:
    """Stage every change and show the diff against the task's commit."""
    git = " ".join(SAFE_GIT)
    script = f"{git} add -A >/dev/null 2>&1; {git} diff --cached --no-color --no-ext-diff HEAD"
    result = await sandbox.exec(["bash", "--noprofile", "--norc", "-c", script])
    return result.output, {"exit_code": result.exit_code, "duration_s": result.duration_s}
