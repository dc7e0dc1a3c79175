"""Self-check of the suite without a sandbox: every family, a few seeds each.

For each instance: the verifier fails on the initial files, the expert's
commands (one ``bash -c`` each, carrying the working directory and exported
variables over like the sandbox's shell) make it pass, and so does the
reference solution. Generation must be deterministic, and with
``compare_outputs`` the expert is replayed in a second folder to prove its
printed outputs do not depend on where or when it runs.

Run: ``python -m pivotgym.envs.terminal.suite.check [-n N] [family ...]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .families import FAMILIES
from .plan import TaskPlan

# The preamble restores the previous turn's cwd and exports; the trap saves them
# again even when the command calls ``exit``.
_RUNNER = r"""
cd "$(cat "$PIVOTGYM_STATE/pwd")"
[ -f "$PIVOTGYM_STATE/env" ] && . "$PIVOTGYM_STATE/env"
save() {
  pwd > "$PIVOTGYM_STATE/pwd"
  export -p | grep -v -e " PIVOTGYM_" -e " PWD=" -e " OLDPWD" -e " SHLVL=" > "$PIVOTGYM_STATE/env"
}
trap save EXIT
eval "$PIVOTGYM_COMMAND"
"""

COMMAND_TIMEOUT_S = 10.0
_ABSOLUTE_WORKDIR = re.compile(r"(?<![\w.-])/app\b")


class CheckError(AssertionError):
    """An instance broke the contract; the message names it and what went wrong."""


@dataclass
class Replay:
    outputs: list[str]
    seconds: list[float]


def sandbox_env(home: Path, logs: Path) -> dict[str, str]:
    """The environment the sandbox gives commands, with ``/logs`` moved to ``logs``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": str(home),
        "GIT_AUTHOR_NAME": "agent",
        "GIT_AUTHOR_EMAIL": "agent@pivotgym.invalid",
        "GIT_COMMITTER_NAME": "agent",
        "GIT_COMMITTER_EMAIL": "agent@pivotgym.invalid",
        "GIT_AUTHOR_DATE": "2023-11-14T22:13:20Z",
        "GIT_COMMITTER_DATE": "2023-11-14T22:13:20Z",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LOGS_DIR": str(logs),
    }
    return env


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


class Workspace:
    """A temporary ``/app`` stand-in with its own HOME and logs folder."""

    def __init__(self, plan: TaskPlan) -> None:
        self.plan = plan
        self.root = Path(tempfile.mkdtemp(prefix="pivotgym-suite-"))
        self.app = self.root / "app"
        self.state = self.root / "state"
        for sub in (self.app, self.state, self.root / "home", self.root / "logs"):
            sub.mkdir()
        write_files(self.app, plan.files)
        (self.state / "pwd").write_text(str(self.app))
        self.env = sandbox_env(self.root / "home", self.root / "logs")

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def run_script(self, text: str, name: str) -> subprocess.CompletedProcess[str]:
        path = self.root / name
        path.write_text(text)
        return subprocess.run(
            ["bash", str(path)],
            cwd=self.app,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def verify(self) -> bool:
        """Run the test script; check that the exit status and the recorded reward agree."""
        proc = self.run_script(self.plan.test_sh, "test.sh")
        reward = (self.root / "logs" / "verifier" / "reward.txt").read_text().strip()
        passed = proc.returncode == 0
        if reward != ("1" if passed else "0"):
            raise CheckError(f"{self.plan.name}: exit {proc.returncode} but reward {reward!r}")
        return passed

    def replay(self) -> Replay:
        outputs, seconds = [], []
        for i, turn in enumerate(self.plan.expert):
            if turn.command is None:
                continue
            env = dict(self.env, PIVOTGYM_STATE=str(self.state), PIVOTGYM_COMMAND=turn.command)
            start = time.perf_counter()
            proc = subprocess.run(
                ["bash", "-c", _RUNNER],
                cwd=self.app,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
            )
            seconds.append(time.perf_counter() - start)
            out = proc.stdout + proc.stderr
            if proc.returncode != 0:
                raise CheckError(
                    f"{self.plan.name}: turn {i} exited {proc.returncode}\n$ {turn.command}\n{out}"
                )
            outputs.append(out)
        return Replay(outputs, seconds)


def check_shape(plan: TaskPlan) -> None:
    turns = plan.expert
    if not 2 <= len(turns) <= 10:
        raise CheckError(f"{plan.name}: {len(turns)} turns")
    if turns[-1].command is not None or any(t.command is None for t in turns[:-1]):
        raise CheckError(f"{plan.name}: only the last turn may (and must) lack a command")
    for turn in turns:
        if not turn.thought.strip():
            raise CheckError(f"{plan.name}: empty thought")
        if turn.command and _ABSOLUTE_WORKDIR.search(turn.command):
            raise CheckError(f"{plan.name}: absolute workdir path in {turn.command!r}")


def check_plan(plan: TaskPlan, compare_outputs: bool = False) -> Replay:
    """Run every check on one plan; raise :class:`CheckError` on the first failure."""
    check_shape(plan)
    with Workspace(plan) as ws:
        if ws.verify():
            raise CheckError(f"{plan.name}: the test passes on the untouched initial state")
        replay = ws.replay()
        if not ws.verify():
            raise CheckError(f"{plan.name}: the test fails after the expert's commands")
    with Workspace(plan) as ws:
        proc = ws.run_script(plan.solution_sh, "solve.sh")
        if proc.returncode != 0:
            raise CheckError(f"{plan.name}: solve.sh exited {proc.returncode}\n{proc.stderr}")
        if not ws.verify():
            raise CheckError(f"{plan.name}: the test fails after solve.sh")
    if compare_outputs:
        with Workspace(plan) as ws:
            again = ws.replay()
        for i, (a, b) in enumerate(zip(replay.outputs, again.outputs, strict=True)):
            if a != b:
                raise CheckError(f"{plan.name}: output of command {i} differs between runs")
    return replay


def generate(family: str, index: int, seed: int = 0) -> TaskPlan:
    """The ``index``-th instance of ``family`` under ``seed``."""
    rng = random.Random(f"{seed}:{family}:{index}")
    return FAMILIES[family].generate(rng, index)


def check_determinism(family: str, index: int) -> None:
    if generate(family, index) != generate(family, index):
        raise CheckError(f"{family}-{index:05d}: two generations from one seed differ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help="families to check (default: all)")
    parser.add_argument("-n", type=int, default=5, help="instances per family")
    args = parser.parse_args(argv)
    names = args.families or sorted(FAMILIES)
    failures = 0
    total = 0
    for name in names:
        start = time.perf_counter()
        slowest = 0.0
        largest = 0
        for index in range(args.n):
            total += 1
            try:
                check_determinism(name, index)
                replay = check_plan(generate(name, index), compare_outputs=True)
            except (CheckError, subprocess.TimeoutExpired) as err:
                failures += 1
                print(f"FAIL {err}", file=sys.stderr)
                continue
            slowest = max([slowest, *replay.seconds])
            largest = max([largest, *(len(o) for o in replay.outputs)])
        took = time.perf_counter() - start
        print(
            f"{name:28s} {args.n:3d} instances {took:6.2f}s  slowest command {slowest:5.2f}s"
            f"  largest output {largest:5d}B"
        )
    print(f"{total - failures}/{total} instances passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
