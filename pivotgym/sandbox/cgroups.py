"""Per-sandbox memory and process-count limits through Linux control groups.

Works with the unified hierarchy (cgroup v2, ``memory.max`` / ``pids.max``) and with the
legacy per-controller hierarchies (v1, ``memory.limit_in_bytes`` / ``pids.max``), which
is what many container hosts still mount. Groups live under a ``pivotgym`` parent so
the reaper can find groups whose owner died. Where no writable hierarchy exists (not
root, or a read-only ``/sys/fs/cgroup``), :func:`controller` returns ``None`` and the
bubblewrap backend falls back to rlimits.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "pivotgym"


@dataclass(frozen=True)
class CgroupLayout:
    """Where the memory and pids controllers live, for one cgroup version."""

    version: int
    memory: Path  # parent directory of pivotgym's groups for the memory controller
    pids: Path

    def procs_files(self, name: str) -> list[Path]:
        dirs = {self.memory / name, self.pids / name}
        return [d / "cgroup.procs" for d in sorted(dirs)]

    def create(self, name: str, memory_mb: int, max_processes: int) -> None:
        mem_bytes = str(memory_mb * 1024 * 1024)
        if self.version == 2:
            group = self.memory / name
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(mem_bytes)
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(max_processes))
            return
        mem = self.memory / name
        mem.mkdir(exist_ok=True)
        (mem / "memory.limit_in_bytes").write_text(mem_bytes)
        with contextlib.suppress(OSError):  # absent when swap accounting is off
            (mem / "memory.memsw.limit_in_bytes").write_text(mem_bytes)
        pids = self.pids / name
        pids.mkdir(exist_ok=True)
        (pids / "pids.max").write_text(str(max_processes))

    def kill(self, name: str) -> None:
        """SIGKILL every process in the group (the whole sandbox's process tree)."""
        for _ in range(50):
            pids = set()
            for procs in self.procs_files(name):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self, name: str) -> None:
        self.kill(name)
        for group in {self.memory / name, self.pids / name}:
            for _ in range(100):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy while the last killed tasks exit
                    self.kill(name)
                    os.sched_yield()


def _writable_parent(path: Path) -> Path | None:
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _detect() -> CgroupLayout | None:
    if os.geteuid() != 0:
        return None
    if (ROOT / "cgroup.controllers").exists():
        controllers = (ROOT / "cgroup.controllers").read_text().split()
        if not {"memory", "pids"} <= set(controllers):
            return None
        parent = _writable_parent(ROOT / PARENT)
        if parent is None:
            return None
        try:
            (ROOT / "cgroup.subtree_control").write_text("+memory +pids")
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            return None
        return CgroupLayout(2, parent, parent)
    memory = _writable_parent(ROOT / "memory" / PARENT) if (ROOT / "memory").is_dir() else None
    pids = _writable_parent(ROOT / "pids" / PARENT) if (ROOT / "pids").is_dir() else None
    if memory is None or pids is None:
        return None
    return CgroupLayout(1, memory, pids)


_layout: CgroupLayout | bool | None = False


def controller() -> CgroupLayout | None:
    """The writable cgroup layout of this host, detected once; ``None`` if there is none."""
    global _layout
    if _layout is False:
        _layout = _detect()
    return _layout  # type: ignore[return-value]
