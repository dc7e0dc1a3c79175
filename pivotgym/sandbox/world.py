"""A sandbox as a :class:`~pivotgym.core.world.World`, and the options every env over a
sandbox takes (the backend and the limits a task's own may be overridden by)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pivotgym.core.tool_env import ToolEnvOptions
from pivotgym.sandbox import Sandbox
from pivotgym.sandbox.base import Snapshot
from pivotgym.sandbox.state import read_tree


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
