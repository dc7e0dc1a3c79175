"""The contract between a task family and the recorder that replays its expert.

A family turns a seeded ``random.Random`` into a :class:`TaskPlan`: the files the
sandbox starts from, the user's request, a verifier script, a reference solution
and an expert's turns. The recorder runs each expert command in the sandbox and
stores the tool output, which is why commands must print the same thing on every
run (no mtimes, no dates, no unsorted ``find``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ExpertTurn:
    """One assistant turn of the demonstration.

    ``thought`` is the message content; ``command`` is the argument of the
    ``bash`` tool call, or ``None`` for the final turn, which only reports.
    """

    thought: str
    command: str | None


@dataclass(frozen=True)
class TaskPlan:
    """A task instance and its demonstration.

    ``files`` are relative to the workdir (``/app``); ``test_sh`` runs there
    after the episode, exits 0 iff the end state is correct and writes the
    reward (1 or 0) to ``$LOGS_DIR/verifier/reward.txt`` (``/logs`` by
    default). ``solution_sh`` reaches a passing state from ``files``.
    """

    name: str
    family: str
    instruction: str
    files: dict[str, str | bytes]
    test_sh: str
    solution_sh: str
    expert: tuple[ExpertTurn, ...]
    timeout_s: float = 20.0


@dataclass(frozen=True)
class Family:
    """A named generator: ``generate(rng, index)`` is deterministic in ``rng``'s state."""

    name: str
    description: str
    generate: Callable[[random.Random, int], TaskPlan]


def verifier(*checks: str) -> str:
    """A test script that records reward 1 only if every check (a bash snippet) succeeds."""
    body = "\n".join(checks)
    return (
        "#!/bin/bash\n"
        'out="${LOGS_DIR:-/logs}/verifier"\n'
        'mkdir -p "$out"\n'
        'echo 0 > "$out/reward.txt"\n'
        "set -eo pipefail\n"
        f"{body}\n"
        'echo 1 > "$out/reward.txt"\n'
    )


def py_check(code: str) -> str:
    """A bash snippet running ``code`` with python3; a failed assert fails the check."""
    return f"python3 - <<'PYCHECK'\n{code.strip()}\nPYCHECK"


def text_is(path: str, expected: str) -> str:
    """Check that ``path`` holds ``expected``, ignoring trailing blanks and blank edges."""
    return py_check(
        f"""
import pathlib
norm = lambda s: [line.rstrip() for line in s.strip("\\n").splitlines()]
got = pathlib.Path({path!r}).read_text()
assert norm(got) == norm({expected!r}), got
"""
    )


def script(*commands: str) -> str:
    """A reference solution running ``commands`` in order, stopping at the first failure."""
    return "#!/bin/bash\nset -e\n" + "\n".join(commands) + "\n"


def plan(
    family: str,
    index: int,
    instruction: str,
    files: dict[str, str | bytes],
    test_sh: str,
    solution_sh: str,
    turns: list[tuple[str, str | None]],
) -> TaskPlan:
    """Assemble a plan, naming it ``<family>-<index:05d>``."""
    return TaskPlan(
        name=f"{family}-{index:05d}",
        family=family,
        instruction=instruction,
        files=files,
        test_sh=test_sh,
        solution_sh=solution_sh,
        expert=tuple(ExpertTurn(t, c) for t, c in turns),
    )


_DONE = (
    "Done: {what}.",
    "All set: {what}.",
    "Finished. {What}.",
    "That's it: {what}.",
    "The task is complete: {what}.",
)


def done(rng: random.Random, what: str) -> tuple[str, None]:
    """The final, command-free turn summarising ``what`` was done."""
    template = rng.choice(_DONE)
    return template.format(what=what, What=what[:1].upper() + what[1:]), None
