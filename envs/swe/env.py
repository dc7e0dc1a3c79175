"""The SWE environment: a Python repository with a bug, SWE-agent's tools, and its
tests as the reward. ``pivotgym.make("swe")``.

An episode is one task (:mod:`pivotgym.envs.swe.tasks`): the repository checked out at
the task's commit in the sandbox's ``/testbed``, with Python and pytest there
(:mod:`pivotgym.envs.swe.image`). The agent gets the problem statement as a user would
file it, and acts with ``bash``, ``str_replace_editor`` and ``submit``
(:mod:`pivotgym.envs.swe.tools`). The episode ends at ``submit``, at an assistant turn
that calls no tool, or at the turn limit; the grader then runs the task's tests on the
agent's change in a fresh sandbox (:mod:`pivotgym.envs.swe.grader`).

The world is the sandbox (:class:`~pivotgym.sandbox.world.SandboxWorld`), so reset to any
turn, fork and the snapshot cache work as for the terminal env, on bwrap and Docker.
Replay re-executes every call but the editor's ``view`` (which changes nothing), and
compares outputs as text once timings are masked.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pivotgym.core.replay import normalizer, text_divergence
from pivotgym.core.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.swe.grader import SWEGrader
from pivotgym.envs.swe.image import dockerfile
from pivotgym.envs.swe.tasks import WORKDIR, SWETask, materialize, task_from_json
from pivotgym.envs.swe.tools import EDITOR_TOOL, SUBMIT_TOOL, run_editor, run_submit
from pivotgym.sandbox import RANDOM_SEED_VAR, Sandbox, SandboxSpec, get_backend
from pivotgym.sandbox.base import Backend, Limits, Snapshot
from pivotgym.sandbox.shell import BASH_TOOL, run_bash
from pivotgym.sandbox.world import SandboxOptions, SandboxWorld

SYSTEM_PROMPT = (
    "You are a software engineer working in a Python repository checked out at /testbed. "
    "A user has reported an issue. Find its cause in the code, fix it with the smallest "
    "change that makes the behaviour right, and check your fix by running the tests with "
    "`python -m pytest`. Use `bash` to explore and run commands, `str_replace_editor` to "
    "view and edit files, and `submit` when the fix is done. Do not change the tests."
)
# A test suite runs in seconds; a sandbox holds a repository, its git objects and what
# pytest writes.
LIMITS = Limits(timeout_s=120.0, memory_mb=1024, max_processes=128, max_output_bytes=16_384,
                disk_mb=256, max_files=16_384, cpus=1.0)  # fmt: skip
# What varies from one run of the same tests to the next, and nothing else in a replayed
# output should: pytest's timings, the addresses of objects its failure reports show
# (``<function f at 0x7f...>``, or its tail where pytest shortens a repr: ``...1f53c90>``),
# which move with the address space's random layout, and the clock's time as a number
# (``time.time()``, which tracing tests print).
VARYING = (r"\bin \d+\.\d+s\b", r"\b\d+\.\d+s (call|setup|teardown)\b",
           r"\b0x[0-9a-fA-F]{6,16}\b", r"(?<=\.\.\.)[0-9a-f]{5,16}(?=>)",
           r"\b1\d{9}\.\d+\b")  # fmt: skip


class SWEEnv(ToolEnv):
    """A repository with a bug to fix (module docstring)."""

    name = "swe"
    Options: ClassVar[type[ToolEnvOptions]] = SandboxOptions
    options: SandboxOptions
    world: SandboxWorld | None  # type: ignore[assignment]
    tools: ClassVar[list[dict[str, Any]]] = [BASH_TOOL, EDITOR_TOOL, SUBMIT_TOOL]
    finishing_tools = frozenset({"submit"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend: Backend = get_backend(self.options.sandbox)
        self._grader = SWEGrader(self)

    @property
    def grader(self) -> SWEGrader:
        return self._grader

    @property
    def sandbox(self) -> Sandbox | None:
        return self.world.sandbox if self.world is not None else None

    def spec_for(self, task: SWETask) -> SandboxSpec:
        overrides = {k: v for k, v in self.options.limit_overrides().items() if v is not None}
        return SandboxSpec(
            workdir=WORKDIR,
            files=materialize(task),
            dockerfile=dockerfile() if self.backend.name == "docker" else None,
            limits=Limits(**{**LIMITS.__dict__, **overrides}),
            # Fixed hash and random seeds: test ids made from sets, outputs that show random
            # draws (a cache evicting at random), and so verdicts, are the same each run.
            # Tests timed by the clock are deselected from every pytest run, the agent's
            # and the grader's alike (:attr:`Repo.timed`).
            env={
                "PYTHONPATH": task.python_path,
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONHASHSEED": "0",
                RANDOM_SEED_VAR: "0",
                **({"PYTEST_ADDOPTS": task.pytest_addopts} if task.pytest_addopts else {}),
            },
            labels={"task": task.instance_id, "env": self.name},
        )

    async def create_world(self, task: SWETask, snapshot: Snapshot | None = None) -> SandboxWorld:
        return SandboxWorld(await self.backend.create(self.spec_for(task), snapshot=snapshot))

    def resolve_task(self, trajectory: Trajectory) -> SWETask:
        return task_from_json(trajectory.task, base=trajectory.base_dir)

    async def initial_messages(self, task: SWETask) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task.problem_statement},
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        sandbox = self.sandbox
        assert sandbox is not None
        if name == "bash":
            return await run_bash(sandbox, arguments)
        if name == "str_replace_editor":
            return await run_editor(sandbox, arguments)
        return await run_submit(sandbox)

    def mutates(self, name: Any, call: Any) -> bool:
        if name != "str_replace_editor":
            return True
        try:  # ``call`` is the call's ``function``: its name and JSON arguments
            arguments = json.loads(call["arguments"])
        except (TypeError, KeyError, ValueError, RecursionError):
            return True
        return not (isinstance(arguments, dict) and arguments.get("command") == "view")

    def divergence(
        self, task: SWETask, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        return text_divergence(recorded, replayed, normalizer(VARYING))
