"""Small terminal tasks written on the fly, and assistant messages that act on them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pivotgym.sandbox.bwrap import BwrapBackend
from pivotgym.sandbox.docker import DockerBackend

DEFAULT_TEST = 'test "$(cat /app/answer 2>/dev/null)" = 42\n'


def make_task(
    root: Path,
    *,
    name: str = "task",
    test_sh: str = DEFAULT_TEST,
    toml: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """A task folder in Harbor's layout under ``root``; returns its path."""
    task = root / name
    (task / "environment").mkdir(parents=True)
    (task / "tests").mkdir()
    (task / "instruction.md").write_text("Write 42 to /app/answer.\n")
    (task / "task.toml").write_text(textwrap.dedent(toml))
    for rel, text in (files or {"README": "hello\n"}).items():
        path = task / "environment" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (task / "tests" / "test.sh").write_text("#!/bin/bash\n" + test_sh)
    (task / "tests" / "test.sh").chmod(0o755)
    return task


def call(name: str, arguments: str | dict, call_id: str = "c0") -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def act(*calls: dict, content: str | None = None) -> dict:
    """One assistant message making ``calls``."""
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def bash(command: str, call_id: str = "c0") -> dict:
    return act(call("bash", {"command": command}, call_id))


SUBMIT = act(call("submit", {}, "submit"))

_BWRAP = BwrapBackend.available()
_DOCKER = DockerBackend.available()
BACKENDS = [
    pytest.param("bwrap", marks=pytest.mark.skipif(_BWRAP is not None, reason=f"bwrap: {_BWRAP}")),
    pytest.param(
        "docker",
        marks=[
            pytest.mark.docker,
            pytest.mark.skipif(_DOCKER is not None, reason=f"docker: {_DOCKER}"),
        ],
    ),
]
