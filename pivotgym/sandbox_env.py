"""Tool-calling environments over a sandbox: the sandbox as a world, Harbor tasks, limits.

:class:`SandboxWorld` makes a :class:`~pivotgym.sandbox.Sandbox` a
:class:`~pivotgym.world.World` (its snapshots, forks and state directory), and
:class:`SandboxEnv` is the :class:`~pivotgym.tool_env.ToolEnv` over it: tasks in
Harbor's format, per-task sandbox limits that options may override, the task's
``[agent] timeout_sec`` as the episode's time budget, and the task's ``tests/test.sh``
as its grader (:class:`pivotgym.grading.HarborGrader`). Every shell command may change
the sandbox, so replay re-executes every recorded action, and compares outputs as text
once timestamps, pids and the task's ``normalize`` patterns are masked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from pivotgym.grading import HarborGrader
from pivotgym.replay import normalizer, text_divergence
from pivotgym.sandbox import Sandbox, SandboxSpec, get_backend
from pivotgym.sandbox.base import Backend, Snapshot
from pivotgym.sandbox.state import read_tree
from pivotgym.tasks import HarborTask, resolve_task
from pivotgym.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.trajectory import Trajectory


class SandboxWorld:
    """A sandbox as a world: snapshots are sandbox snapshots, forks its own forks, and
    the digest hashes the working directory's tree as the host reads it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def snapshot(self) -> Snapshot:
        return await self.sandbox.snapshot()

    async def fork(self, n: int) -> list[SandboxWorld]:
        return [SandboxWorld(s) for s in await self.sandbox.fork(n)]

    def digest(self) -> str:
        workdir = self.sandbox.spec.workdir
        tree = read_tree(self.sandbox.host_dir(workdir), digests=True)
        h = hashlib.sha256(b"pivotgym-sandbox-v1")
        for path in sorted(tree):
            h.update(path.encode("utf-8", "surrogateescape") + b"\0")
            h.update(repr(tree[path]).encode() + b"\n")
        return h.hexdigest()

    async def close(self) -> None:
        await self.sandbox.close()


@dataclass(frozen=True)
class SandboxOptions(ToolEnvOptions):
    """Options of sandboxed envs, beside :class:`ToolEnvOptions`'.

    ``sandbox``: ``"bwrap"`` or ``"docker"`` (default: bwrap where it runs);
    ``timeout_s``, ``memory_mb``, ``max_processes``, ``max_output_bytes``, ``disk_mb``,
    ``max_files``, ``cpus``: sandbox limits, defaulting to each task's ``task.toml``.
    """

    sandbox: str | None = None
    timeout_s: float | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    max_output_bytes: int | None = None
    disk_mb: int | None = None
    max_files: int | None = None
    cpus: float | None = None

    def limit_overrides(self) -> dict[str, Any]:
        names = ("timeout_s", "memory_mb", "max_processes", "max_output_bytes", "disk_mb",
                 "max_files", "cpus")  # fmt: skip
        return {name: getattr(self, name) for name in names}


class SandboxEnv(ToolEnv):
    """An episode is one Harbor task in one sandbox (module docstring).

    Subclasses declare ``tools`` and implement :meth:`call_tool` on ``self.sandbox``.
    """

    name: str = "sandbox"
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

    def initial_messages(self, task: HarborTask) -> list[dict[str, Any]]:
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
