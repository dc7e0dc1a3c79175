"""Per-sandbox memory, process-count and CPU limits through Linux control groups.

Works with the unified hierarchy (cgroup v2: ``memory.max``, ``pids.max``, ``cpu.max``)
and with the legacy per-controller hierarchies (v1: ``memory.limit_in_bytes``,
``pids.max``, ``cpu.cfs_quota_us``), which is what many container hosts still mount.
Groups live under a ``pivotgym`` parent, named by sandbox id and owner process
(:func:`group_name`), so the reaper finds every group whose owner is gone from its
name alone, whichever runtime directory its sandbox used. Where no writable hierarchy
exists (not root, or a read-only ``/sys/fs/cgroup``), :func:`controller` returns
``None`` and the bubblewrap backend falls back to rlimits (and has no CPU limit).

The groups are the host's: a sandboxed process cannot see them (its cgroup namespace
is its own and ``/sys`` is not mounted), cannot mount a cgroup file system (no
capability, and the seccomp filter denies ``mount``), and runs as a user that does not
own them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from pivotgym.sandbox import leases

ROOT = Path("/sys/fs/cgroup")
PARENT = "pivotgym"
CPU_PERIOD_US = 100_000


def group_name(sandbox_id: str, owner: str) -> str:
    """The group of sandbox ``sandbox_id`` made by the process of owner token ``owner``."""
    _, pid, start = owner.rsplit(":", 2)
    return f"{sandbox_id}-{pid}-{start}"


def group_owner_alive(name: str) -> bool:
    """Whether the process that made group ``name`` still runs (False for foreign names)."""
    try:
        _, pid, start = name.rsplit("-", 2)
        return leases.process_running(int(pid), start)
    except ValueError:
        return False


@dataclass(frozen=True)
class CgroupLayout:
    """Where the memory, pids and cpu controllers live, for one cgroup version."""

    version: int
    memory: Path  # parent directory of pivotgym's groups for the memory controller
    pids: Path
    cpu: Path | None  # None where the cpu controller is not available

    def _parents(self) -> list[Path]:
        found = {self.memory, self.pids}
        if self.cpu is not None:
            found.add(self.cpu)
        return sorted(found)

    def groups(self, name: str) -> list[Path]:
        return [parent / name for parent in self._parents()]

    def procs_files(self, name: str) -> list[Path]:
        return [group / "cgroup.procs" for group in self.groups(name)]

    def create(self, name: str, memory_mb: int, max_processes: int, cpus: float) -> None:
        mem_bytes = str(memory_mb * 1024 * 1024)
        quota = str(max(1000, int(cpus * CPU_PERIOD_US)))
        if self.version == 2:
            group = self.memory / name
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(mem_bytes)
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(max_processes))
            if self.cpu is not None:
                (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            return
        mem = self.memory / name
        mem.mkdir(exist_ok=True)
        (mem / "memory.limit_in_bytes").write_text(mem_bytes)
        with contextlib.suppress(OSError):  # absent when swap accounting is off
            (mem / "memory.memsw.limit_in_bytes").write_text(mem_bytes)
        pids = self.pids / name
        pids.mkdir(exist_ok=True)
        (pids / "pids.max").write_text(str(max_processes))
        if self.cpu is not None:
            cpu = self.cpu / name
            cpu.mkdir(exist_ok=True)
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(quota)

    def join(self, name: str, pid: int) -> None:
        """Move process ``pid`` (with its threads) into every group of sandbox ``name``."""
        for procs in self.procs_files(name):
            procs.write_text(str(pid))

    def _pids(self, name: str) -> set[int]:
        pids: set[int] = set()
        for group in self.groups(name):
            for procs in _tree(group, "cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        return pids

    def kill(self, name: str) -> None:
        """SIGKILL every process in the groups (the whole sandbox's process tree)."""
        for _ in range(50):
            pids = self._pids(name)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self, name: str) -> None:
        """Kill everything in the groups and remove them, child groups first."""
        self.kill(name)
        for group in self.groups(name):
            for sub in sorted(_dirs(group), key=lambda p: len(p.parts), reverse=True):
                for _ in range(100):
                    try:
                        sub.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # busy while the last killed tasks exit
                        self.kill(name)
                        os.sched_yield()

    def names(self) -> set[str]:
        """Every group under pivotgym's parents."""
        found: set[str] = set()
        for parent in self._parents():
            with contextlib.suppress(OSError):
                found.update(p.name for p in parent.iterdir() if p.is_dir())
        return found


def _dirs(group: Path) -> list[Path]:
    if not group.is_dir():
        return []
    found = [group]
    for dirpath, dirnames, _ in os.walk(group):
        found.extend(Path(dirpath, d) for d in dirnames)
    return found


def _tree(group: Path, filename: str) -> list[Path]:
    return [d / filename for d in _dirs(group)]


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
        controllers = set((ROOT / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= controllers:
            return None
        parent = _writable_parent(ROOT / PARENT)
        if parent is None:
            return None
        wanted = "+memory +pids" + (" +cpu" if "cpu" in controllers else "")
        try:
            (ROOT / "cgroup.subtree_control").write_text(wanted)
            (parent / "cgroup.subtree_control").write_text(wanted)
        except OSError:
            return None
        return CgroupLayout(2, parent, parent, parent if "cpu" in controllers else None)
    memory = _writable_parent(ROOT / "memory" / PARENT) if (ROOT / "memory").is_dir() else None
    pids = _writable_parent(ROOT / "pids" / PARENT) if (ROOT / "pids").is_dir() else None
    if memory is None or pids is None:
        return None
    cpu = _writable_parent(ROOT / "cpu" / PARENT) if (ROOT / "cpu").is_dir() else None
    return CgroupLayout(1, memory, pids, cpu)


_layout: CgroupLayout | bool | None = False


def controller() -> CgroupLayout | None:
    """The writable cgroup layout of this host, detected once; ``None`` if there is none."""
    global _layout
    if _layout is False:
        _layout = _detect()
    return _layout  # type: ignore[return-value]
