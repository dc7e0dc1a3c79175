"""Tool-calling environments over a sandbox with tasks in Harbor's format.

:class:`HarborEnv` is the :class:`~pivotgym.core.tool_env.ToolEnv` over a
:class:`~pivotgym.sandbox.world.SandboxWorld`: tasks in Harbor's format, per-task sandbox
limits that options may override, the task's ``[agent] timeout_sec`` as the episode's
time budget, and the task's ``tests/test.sh`` as its grader
(:class:`~pivotgym.harbor.grader.HarborGrader`). Every shell command may change the
sandbox, so replay re-executes every recorded action, and compares outputs as text once
timestamps, pids and the task's ``normalize`` patterns are masked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pivotgym.core.replay import normalizer, text_divergence
from pivotgym.core.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.core.trajectory import Trajectory
from pivotgym.harbor.grader import HarborGrader
from pivotgym.harbor.task import HarborTask, resolve_task
from pivotgym.sandbox import Sandbox, SandboxSpec, get_backend
from pivotgym.sandbox.base import Backend, Snapshot
from pivotgym.sandbox.world import SandboxOptions, SandboxWorld


class HarborEnv(ToolEnv):
    """An episode is one Harbor task in one sandbox (module docstring).

    Subclasses declare ``tools`` and implement :meth:`call_tool` on ``self.sandbox``.
    """

    name: str = "harbor"
    system_prompt: str = "You are an agent working in a sandbox. Use the tools to act."
    Options: ClassVar[type[ToolEnvOptions]] = SandboxOptions
    options: SandboxOptions
    world: SandboxWorld | None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend: Backend = get_backend(self.options.sandbox)
        self._grader = HarborGrader()

    @property
    def grader(self) -> HarborGrader:
        return self._grader

    @property
    def sandbox(self) -> Sandbox | None:
        """The episode's sandbox (``None`` before reset)."""
        return self.world.sandbox if self.world is not None else None

    def spec_for(self, task: HarborTask) -> SandboxSpec:
        env_dir = task.environment_dir
        return SandboxSpec(
            workdir=task.config.workdir,
            files=env_dir if env_dir.is_dir() else None,
            dockerfile=task.dockerfile,
            limits=task.config.limits(**self.options.limit_overrides()),
            labels={"task": task.name, "env": self.name},
        )

    async def create_world(
        self, task: HarborTask, snapshot: Snapshot | None = None
    ) -> SandboxWorld:
        return SandboxWorld(await self.backend.create(self.spec_for(task), snapshot=snapshot))

    def resolve_task(self, trajectory: Trajectory) -> HarborTask:
        return resolve_task(trajectory.task, trajectory.base_dir, source=trajectory.id)

    async def initial_messages(self, task: HarborTask) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": task.instruction},
        ]

    def task_time_budget_s(self, task: HarborTask) -> float:
        # Harbor's [agent] timeout_sec bounds the episode's own time (grading aside).
        return task.config.agent_timeout_s

    def divergence(
        self, task: HarborTask, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        return text_divergence(recorded, replayed, normalizer(tuple(task.config.normalize)))
