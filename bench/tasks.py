"""A small terminal task written to a temporary folder, for benchmarks that need one."""

from __future__ import annotations

import json
from pathlib import Path

import pivotgym
from pivotgym.harbor.task import HarborTask

COMMAND = "ls -la && wc -l notes/*.txt | tail -n 1 && grep -c line notes/n0.txt"


def small_task(root: Path, n_files: int = 20) -> HarborTask:
    (root / "environment" / "notes").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "instruction.md").write_text("Count the lines of the notes.\n")
    (root / "task.toml").write_text("[pivotgym]\nmax_turns = 100000\n")
    for i in range(n_files):
        lines = "".join(f"line {j} of note {i}\n" for j in range(50))
        (root / "environment" / "notes" / f"n{i}.txt").write_text(lines)
    (root / "tests" / "test.sh").write_text("#!/bin/bash\ntrue\n")
    return pivotgym.load_task(root)


def bash_action(command: str, call_id: str = "c0") -> dict:
    arguments = json.dumps({"command": command})
    call = {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}
