"""Error types shared across pivotgym.

Two families matter to callers: ``DataError`` is the user's input being wrong (the CLI
exits 2 and names the file, line and field); ``InfraError`` is the harness itself failing
(a sandbox died, a daemon is unreachable), which is never scored as a zero reward.
"""

from __future__ import annotations

from pathlib import Path


class PivotgymError(Exception):
    """Base class of every error pivotgym raises on purpose."""


class DataError(PivotgymError, ValueError):
    """Bad input: a trajectory file, a task directory, a config or an argument.

    The message reads ``file:line: field: problem`` with whichever parts are known, so a
    user can jump straight to the offending place.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        where = ""
        if self.file is not None:
            where = self.file + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + (f"{field}: " if field else "") + problem)


class InfraError(PivotgymError, RuntimeError):
    """The harness failed (sandbox died, backend unreachable, image missing).

    Rollouts that hit one are recorded as infrastructure failures and masked out of
    reward statistics, never counted as a zero.
    """


class DivergenceError(PivotgymError):
    """Replaying a recorded trajectory produced a tool output that differs from the record."""

    def __init__(self, trajectory_id: str, turn: int, expected: str, actual: str) -> None:
        self.trajectory_id = trajectory_id
        self.turn = turn
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"trajectory {trajectory_id!r}: replayed output of assistant turn {turn} differs "
            f"from the record\n--- recorded\n{expected[:400]}\n--- replayed\n{actual[:400]}"
        )
