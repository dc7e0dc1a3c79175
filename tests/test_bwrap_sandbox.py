"""The bubblewrap backend for real: isolation, limits, leftovers, snapshots and reaping.

Every test gets its own runtime directory, so what it checks on the host (sandbox
folders, tmpfs mounts, cgroups, bwrap processes) is its own and not another user's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sandbox_checks import (
    FLOOD,
    FLOOD_BYTES,
    FORK_BOMB,
    FORK_COUNTER,
    LEAVE_CHILDREN,
    MEMORY_HOG,
    STUBBORN,
    run,
    tcp_listener,
)

from pivotgym.errors import InfraError
from pivotgym.sandbox.base import TRUNCATION_MARKER, Limits, SandboxSpec
from pivotgym.sandbox.bwrap import BwrapBackend, BwrapSandbox

_UNAVAILABLE = BwrapBackend.available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"bwrap backend: {_UNAVAILABLE}")


@pytest.fixture
def backend(tmp_path: Path) -> BwrapBackend:
    runtime = tmp_path / "runtime"
    backend = BwrapBackend(runtime_dir=runtime)
    yield backend
    backend.close_all_sync()


# ----------------------------------------------------------------------- host probes


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state letter, command line) for every process on the host."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        table[int(entry)] = (int(fields[1]), fields[0].decode(), args)
    return table


def _descendants(root: int) -> list[str]:
    """Every process below ``root`` (zombies included), as 'pid state args'."""
    table = _proc_table()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, args) in table.items():
            if ppid == parent:
                found.append(f"{pid} {state} {args}")
                frontier.append(pid)
    return found


def _processes_mentioning(text: str) -> list[str]:
    return [f"{pid} {state} {args}" for pid, (_, state, args) in _proc_table().items()
            if text in args and pid != os.getpid()]  # fmt: skip


def _tmpfs_mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return [m for m in mounts if m.split()[1].startswith(prefix)]


def _cgroup_dirs(backend: BwrapBackend, name: str) -> list[Path]:
    if backend.cgroups is None:
        return []
    return [d for d in {backend.cgroups.memory / name, backend.cgroups.pids / name} if d.exists()]


def _assert_nothing_left_running() -> None:
    assert _descendants(os.getpid()) == []


# --------------------------------------------------------------------------- network


def test_network_is_closed(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"])
            assert res.output.split() == ["lo"]
            with tcp_listener() as port:
                res = await sb.exec(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                    timeout_s=5)  # fmt: skip
                assert res.exit_code != 0 and not res.timed_out
                probe = (
                    "import socket; s = socket.socket(); s.settimeout(2); "
                    f"s.connect(('127.0.0.1', {port})); print('connected')"
                )
                res = await sb.exec(["python3", "-c", probe], timeout_s=5)
                assert res.exit_code != 0 and "connected" not in res.output

    run(go())


# ---------------------------------------------------------------------- host files


def test_host_files_are_untouched_and_invisible(backend, tmp_path):
    probe = f"pivotgym-probe-{uuid.uuid4().hex[:8]}"
    secret = tmp_path / "secret"
    secret.write_text("host only")

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            for target in (f"/etc/{probe}", f"/usr/{probe}", f"/usr/bin/{probe}"):
                res = await sb.exec(["sh", "-c", f"echo inside > {target}"])
                assert res.exit_code != 0, target
            res = await sb.exec(["sh", "-c", "echo x >> /etc/passwd; rm -f /usr/bin/env"])
            assert res.exit_code != 0
            assert (await sb.exec(["cat", "/etc/shadow"])).exit_code != 0
            # The sandbox's /root is its own empty home, not the host's.
            assert (await sb.exec(["ls", "-A", "/root"])).output == ""
            for hidden in ("/home", "/work", str(secret), str(backend.runtime),
                           str(backend.runtime / "sandboxes" / sb.id)):  # fmt: skip
                assert (await sb.exec(["test", "-e", hidden])).exit_code == 1, hidden
            await sb.exec(["rm", "-rf", str(tmp_path), "/root/.bashrc"])

    run(go())
    for base in (Path("/etc"), Path("/usr"), Path("/usr/bin")):
        assert not (base / probe).exists()
    assert secret.read_text() == "host only"
    assert Path("/usr/bin/env").exists()


# ----------------------------------------------------------------------------- limits


def test_fork_bomb_is_contained(backend):
    async def go():
        spec = SandboxSpec(limits=Limits(max_processes=32, timeout_s=5))
        async with await backend.create(spec) as sb:
            res = await sb.exec(["python3", "-c", FORK_COUNTER])
            assert res.exit_code == 0
            assert 0 < int(res.output) < 32
            await sb.exec(["bash", "-c", FORK_BOMB], timeout_s=3)
            assert (await sb.exec(["echo", "alive"])).output == "alive\n"
            _assert_nothing_left_running()

    run(go())


def test_memory_hog_is_killed_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(memory_mb=64))) as sb:
            res = await sb.exec(["python3", "-c", MEMORY_HOG])
            assert "survived" not in res.output and not res.timed_out
            if backend.cgroups is not None:
                assert res.exit_code == 128 + 9
            else:  # the address-space rlimit makes the allocation fail instead
                assert res.exit_code != 0
            assert (await sb.exec(["echo", "ok"])).output == "ok\n"

    run(go())


def test_disk_flood_is_stopped_by_the_quota(backend):
    if not backend.quota:
        pytest.skip("a disk quota needs root (a size-limited tmpfs per sandbox)")
    limit = 16 << 20

    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(disk_mb=16))) as sb:
            res = await sb.exec(["sh", "-c", "head -c 200M /dev/zero > /app/big"])
            assert res.exit_code != 0
            size = int((await sb.exec(["stat", "-c", "%s", "/app/big"])).output)
            assert size <= limit
            # /tmp shares the quota with the workdir.
            res = await sb.exec(["sh", "-c", "head -c 1M /dev/zero > /tmp/more"])
            assert res.exit_code != 0
            await sb.exec(["rm", "-f", "/app/big", "/tmp/more"])

            many = "i=0; while [ $i -lt 100000 ] && echo x > /tmp/f$i; do i=$((i+1)); done; echo $i"
            res = await sb.exec(["bash", "-c", many], timeout_s=60)
            assert "No space left on device" in res.output
            assert 0 < int(res.output.split()[-1]) < 100000
            used = int((await sb.exec(["sh", "-c", "du -sk /tmp | cut -f1"])).output)
            assert used * 1024 <= limit

            await sb.exec(["sh", "-c", "rm -rf /tmp/f*"])
            res = await sb.exec(["sh", "-c", "echo fine > /app/after && cat /app/after"])
            assert res.output == "fine\n"

    run(go())


def test_output_flood_is_truncated_and_counted(backend):
    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(max_output_bytes=1000))) as sb:
            res = await sb.exec(["sh", "-c", FLOOD])
            assert res.exit_code == 0 and res.truncated
            assert res.output_bytes == FLOOD_BYTES
            assert res.output.startswith("pivot\npivot\n")
            assert res.output.endswith(TRUNCATION_MARKER.format(dropped=FLOOD_BYTES - 1000))

    run(go())


def test_infinite_loop_times_out_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", "echo before; while :; do :; done"], timeout_s=1)
            assert res.timed_out and res.exit_code is None and not res.ok
            assert res.output == "before\n"
            assert 1 <= res.duration_s < 5
            assert (await sb.exec(["echo", "still here"])).output == "still here\n"
            _assert_nothing_left_running()

    run(go())


# ------------------------------------------------------------------------- leftovers


def test_nothing_outlives_an_exec(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", LEAVE_CHILDREN])
            assert res.output == "started\n" and res.exit_code == 0
            _assert_nothing_left_running()
            assert _processes_mentioning("sleep 1000") == []
            assert _processes_mentioning("sleep 1001") == []
            assert _processes_mentioning(STUBBORN) == []
            # A foreground command that ignores SIGTERM and runs out of time.
            res = await sb.exec(["python3", "-c", STUBBORN], timeout_s=1)
            assert res.timed_out
            _assert_nothing_left_running()
            assert _processes_mentioning(STUBBORN) == []
            if backend.cgroups is not None:
                for procs in backend.cgroups.procs_files(sb.id):
                    assert procs.read_text() == ""

    run(go())


# -------------------------------------------------------------- forks and snapshots


def test_fork_isolation(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as parent:
            await parent.exec(["sh", "-c", "echo shared > /app/base.txt"])
            forks = await parent.fork(3)
            try:
                assert len({f.id for f in forks} | {parent.id}) == 4
                await parent.exec(["sh", "-c", "echo late > /app/late.txt; echo p > /tmp/p"])
                for i, f in enumerate(forks):
                    await f.exec(["sh", "-c", f"echo {i} > /app/mine-{i} && echo {i} > /tmp/t"])
                for i, f in enumerate(forks):
                    res = await f.exec(["sh", "-c", "ls /app; cat /tmp/t; ls /tmp"])
                    assert res.output.split() == ["base.txt", f"mine-{i}", str(i), "t"]
                res = await parent.exec(["sh", "-c", "ls /app; ls /tmp"])
                assert res.output.split() == ["base.txt", "late.txt", "p"]
            finally:
                await asyncio.gather(*(f.close() for f in forks))

    run(go())


def test_snapshot_restores_identical_state_twice(backend):
    listing = ["sh", "-c", "cd / && find app tmp root -exec stat -c '%n %a %s %Y' {} + | sort"]

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.exec(["sh", "-c", "mkdir -p /app/d && echo one > /app/d/f && echo t > /tmp/x "
                                       "&& chmod 600 /app/d/f && ln -s d/f /app/link"])  # fmt: skip
            before = (await sb.exec(listing)).output
            snap = await sb.snapshot()
            await sb.exec(["sh", "-c", "echo two > /app/d/f && rm /tmp/x && touch /app/late"])
            restored = [await backend.create(SandboxSpec(), snapshot=snap) for _ in range(2)]
            try:
                for r in restored:
                    assert (await r.exec(listing)).output == before
                    assert (await r.exec(["cat", "/app/link"])).output == "one\n"
                await restored[0].exec(["touch", "/app/only-in-first"])
                assert (await restored[1].exec(listing)).output == before
            finally:
                await snap.release()
                await snap.release()
                for r in restored:
                    await r.close()
            assert not snap.path.exists()
            with pytest.raises(InfraError):
                await backend.create(SandboxSpec(), snapshot=snap)

    run(go())


def test_close_is_idempotent(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        assert isinstance(sb, BwrapSandbox) and not sb.closed
        await sb.exec(["true"])
        await asyncio.gather(sb.close(), sb.close(), sb.close())
        await sb.close()
        assert sb.closed
        assert not sb.root.exists()
        assert not sb.root.with_name(sb.id + ".owner").exists()
        assert _cgroup_dirs(backend, sb.id) == []
        assert _tmpfs_mounts_under(backend.runtime) == []
        with pytest.raises(InfraError):
            await sb.exec(["true"])

    run(go())
    backend.close_all_sync()
    backend.close_all_sync()


# --------------------------------------------------------------------------- reaping

_DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from pivotgym.sandbox.base import SandboxSpec
    from pivotgym.sandbox.bwrap import BwrapBackend

    async def main():
        backend = BwrapBackend(runtime_dir=Path(sys.argv[1]))
        a = await backend.create(SandboxSpec())
        await a.exec(["sh", "-c", "seq 100 > /app/x"])
        forks = await a.fork(2)
        snaps = [await a.snapshot(), await forks[0].snapshot()]
        b = await backend.create(SandboxSpec(), snapshot=snaps[0])
        if sys.argv[2] == "hang":
            print(json.dumps([s.id for s in (a, b, *forks)]), flush=True)
            running = asyncio.create_task(b.exec(["sh", "-c", "echo running; sleep 1000"]))
            await asyncio.sleep(0.5)
            print("ready", flush=True)
            await running

    asyncio.run(main())
    """
)


def test_reap_removes_leftovers_of_a_killed_driver(tmp_path):
    runtime = tmp_path / "runtime"
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(runtime), "hang"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ids = json.loads(driver.stdout.readline())
        assert driver.stdout.readline() == "ready\n"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    probe = BwrapBackend(runtime_dir=runtime)
    # The crash really left things behind for the reaper to find.
    assert len(list((runtime / "sandboxes").glob("*.owner"))) == 4
    assert len(list((runtime / "snapshots").glob("*.owner"))) == 2
    if probe.quota:
        assert len(_tmpfs_mounts_under(runtime)) == 4
    if probe.cgroups is not None:
        assert all(_cgroup_dirs(probe, i) for i in ids)

    # The next start reaps them; it exits without closing its own sandboxes, which the
    # exit hook removes.
    subprocess.run([sys.executable, "-c", _DRIVER, str(runtime), "exit"], check=True, timeout=60)
    assert sorted(os.listdir(runtime / "sandboxes")) == []
    assert sorted(os.listdir(runtime / "snapshots")) == []
    assert _tmpfs_mounts_under(runtime) == []
    for sandbox_id in ids:
        assert _cgroup_dirs(probe, sandbox_id) == []
    assert _processes_mentioning(str(runtime)) == []
    assert _processes_mentioning("sleep 1000") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_clean_up_without_a_reaper(tmp_path, signum):
    runtime = tmp_path / "runtime"
    argv = [sys.executable, "-c", _DRIVER, str(runtime), "hang"]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ids = json.loads(driver.stdout.readline())
        assert driver.stdout.readline() == "ready\n"
        assert _processes_mentioning("sleep 1000")
        driver.send_signal(signum)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode != 0
    probe = BwrapBackend(runtime_dir=runtime)
    # Nothing is left for a reaper: the signal handler closed every sandbox and snapshot.
    assert sorted(os.listdir(runtime / "sandboxes")) == []
    assert sorted(os.listdir(runtime / "snapshots")) == []
    assert _tmpfs_mounts_under(runtime) == []
    for sandbox_id in ids:
        assert _cgroup_dirs(probe, sandbox_id) == []
    assert _processes_mentioning("sleep 1000") == []
