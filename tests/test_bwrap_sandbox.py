"""What only the bubblewrap backend does: its host user, tmpfs states, cgroups and zombies.

The contract both backends keep is ``test_sandbox_contract.py``; attacks are
``test_sandbox_security.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import own_backend
from sandbox_checks import descendants, run

from pivotgym.errors import InfraError
from pivotgym.sandbox import leases
from pivotgym.sandbox.base import SandboxSpec
from pivotgym.sandbox.bwrap import BwrapBackend
from pivotgym.sandbox.cgroups import group_name

_UNAVAILABLE = BwrapBackend.available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"bwrap backend: {_UNAVAILABLE}")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def backend(runtime_dir: Path) -> BwrapBackend:
    yield from own_backend("bwrap", runtime_dir)


def _groups(backend: BwrapBackend, name: str) -> list[Path]:
    if backend.cgroups is None:
        return []
    return [group for group in backend.cgroups.groups(name) if group.exists()]


def _tmpfs_mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    return [m for m in Path("/proc/self/mounts").read_text().splitlines()
            if m.split()[1].startswith(prefix)]  # fmt: skip


def test_states_belong_to_the_sandbox_user_and_are_quota_tmpfs(backend, tmp_path):
    (tmp_path / "given.txt").write_text("x\n")

    async def go():
        async with await backend.create(SandboxSpec(files=tmp_path)) as sb:
            await sb.exec(["sh", "-c", "echo made > /app/made; mkdir /tmp/d"])
            work = sb.host_dir("/app")
            owners = {p.name: p.lstat().st_uid for p in (work / "made", work / "given.txt")}
            return owners, (sb.host_dir("/tmp") / "d").lstat().st_uid, sb.root

    owners, tmp_owner, root = run(go())
    assert set(owners.values()) == {tmp_owner} == {backend.uid}
    if os.geteuid() == 0:
        assert backend.uid != 0 and backend.quota
    assert not root.exists() and _tmpfs_mounts_under(backend.runtime / "sandboxes") == []


def test_close_removes_the_tmpfs_and_the_cgroups(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        await sb.exec(["true"])
        groups = _groups(backend, sb.group)
        if backend.quota:
            assert len(_tmpfs_mounts_under(backend.runtime / "sandboxes")) == 1
        await sb.close()
        return sb, groups

    sb, groups = run(go())
    assert (backend.cgroups is None) or len(groups) >= 2
    assert _groups(backend, sb.group) == []
    assert _tmpfs_mounts_under(backend.runtime / "sandboxes") == []


def test_child_and_orphan_cgroups_are_removed(backend):
    """A group with child groups under it goes whole; a group whose owner died is found
    by its name alone, even without an owner file."""
    if backend.cgroups is None:
        pytest.skip("no writable cgroup hierarchy here")

    async def go():
        sb = await backend.create(SandboxSpec())
        for group in _groups(backend, sb.group):
            (group / "child" / "grandchild").mkdir(parents=True)
        await sb.close()
        return sb.group

    name = run(go())
    assert _groups(backend, name) == []
    # A group of a process that is gone (pid 1 never started at that tick).
    dead = group_name("0123456789ab", f"{os.uname().nodename}:1:0")
    live = group_name("ba9876543210", leases.owner_token())
    for orphan in (dead, live):
        for parent in {backend.cgroups.memory, backend.cgroups.pids}:
            (parent / orphan / "child").mkdir(parents=True)
    try:
        backend.reap()
        assert _groups(backend, dead) == []
        assert _groups(backend, live) != []  # this process lives: its groups stay
    finally:
        backend.cgroups.remove(live)


def test_no_zombies_pile_up(backend):
    """Every exec's namespace init is waited for (this process is their subreaper)."""

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            before = set(descendants(os.getpid()))
            await asyncio.gather(*(sb.exec(["sh", "-c", "sleep 0.1 & true"]) for _ in range(20)))
            return set(descendants(os.getpid())) - before

    assert run(go()) == set()


def test_a_runtime_the_sandbox_user_cannot_reach_is_refused_clearly(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("without root sandboxes run as the driver's user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    backend = BwrapBackend(runtime_dir=private / "runtime")
    with pytest.raises(InfraError, match="cannot pass"):
        run(backend.create(SandboxSpec()))


_DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from pivotgym.sandbox.base import SandboxSpec
    from pivotgym.sandbox.bwrap import BwrapBackend

    async def main():
        backend = BwrapBackend(runtime_dir=Path(sys.argv[1]))
        sandboxes = [await backend.create(SandboxSpec()) for _ in range(2)]
        print(json.dumps([s.group for s in sandboxes]), flush=True)
        await sandboxes[0].exec(["sleep", "1000"])

    asyncio.run(main())
    """
)


def test_a_killed_drivers_cgroups_and_mounts_are_reaped(backend):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", _DRIVER, str(backend.runtime)]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    try:
        groups = json.loads(driver.stdout.readline())
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    if backend.cgroups is not None:
        assert all(_groups(backend, g) for g in groups)
    if backend.quota:
        assert len(_tmpfs_mounts_under(backend.runtime / "sandboxes")) == 2
    assert backend.reap() == 3  # two states and the driver's /etc
    assert [g for g in groups if _groups(backend, g)] == []
    assert _tmpfs_mounts_under(backend.runtime) == []
