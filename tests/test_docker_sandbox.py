"""The Docker backend against a real daemon: limits, isolation, snapshots and cleanup."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
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

from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox import leases
from pivotgym.sandbox.base import TRUNCATION_MARKER, Limits, SandboxSpec
from pivotgym.sandbox.docker import DockerBackend, DockerSandbox

_UNAVAILABLE = DockerBackend.available()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"docker backend: {_UNAVAILABLE}"),
]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backend() -> DockerBackend:
    return DockerBackend()


async def _processes(sb) -> list[str]:
    """Commands of every process in the sandbox except PID 1 and this ``ps`` (with the
    processes that run it)."""
    res = await sb.exec(["ps", "-e", "-o", "pid=,args="])
    rows = [line.split(None, 1) for line in res.output.splitlines() if line.strip()]
    return [args for pid, args in rows if pid != "1" and "pid=,args=" not in args]


def _api():
    import docker

    return docker.from_env().api


def test_exec_output_exit_code_stdin_and_cwd(backend, tmp_path):
    (tmp_path / "hello.txt").write_text("hi there\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("echo from script\n")
    (tmp_path / "sub" / "run.sh").chmod(0o755)

    async def go():
        async with await backend.create(SandboxSpec(files=tmp_path)) as sb:
            res = await sb.exec(["sh", "-c", "echo out; echo err >&2; echo again; exit 3"])
            assert res.output == "out\nerr\nagain\n"
            assert res.exit_code == 3 and not res.ok and not res.timed_out
            assert res.output_bytes == len(res.output)

            assert (await sb.exec(["cat", "hello.txt"])).output == "hi there\n"
            assert (await sb.exec(["sub/run.sh"])).output == "from script\n"
            assert (await sb.exec(["cat"], stdin=b"piped in")).output == "piped in"
            assert (await sb.exec(["pwd"], cwd="/tmp")).output == "/tmp\n"
            res = await sb.exec(
                ["sh", "-c", 'echo "$FOO $TZ $SOURCE_DATE_EPOCH"'], env={"FOO": "x"}
            )
            assert res.output == "x UTC 1700000000\n"
            assert (await sb.exec(["sh", "-c", "kill -9 $$"])).exit_code == 128 + 9
            # Copied files are owned by root with a fixed mtime, so listings replay.
            res = await sb.exec(["ls", "-ln", "--time-style=+%s", "hello.txt"])
            assert res.output.split()[2:4] == ["0", "0"] and "1700000000" in res.output

    run(go())


def test_timeout_kills_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", "echo before; sleep 30"], timeout_s=1)
            assert res.timed_out and res.exit_code is None
            assert res.output == "before\n"
            assert 1 <= res.duration_s < 5
            assert (await sb.exec(["echo", "still here"])).output == "still here\n"
            assert await _processes(sb) == []

    run(go())


def test_output_flood_is_truncated_and_counted(backend):
    async def go():
        spec = SandboxSpec(limits=Limits(max_output_bytes=1000))
        async with await backend.create(spec) as sb:
            res = await sb.exec(["sh", "-c", FLOOD])
            assert res.exit_code == 0 and res.truncated
            assert res.output_bytes == FLOOD_BYTES
            assert res.output.startswith("pivot\npivot\n")
            assert res.output.endswith(TRUNCATION_MARKER.format(dropped=FLOOD_BYTES - 1000))

    run(go())


def test_memory_hog_is_killed_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(memory_mb=64))) as sb:
            res = await sb.exec(["python3", "-c", MEMORY_HOG])
            assert res.exit_code == 128 + 9 and not res.timed_out
            assert "survived" not in res.output
            assert (await sb.exec(["echo", "ok"])).output == "ok\n"

    run(go())


def test_fork_bomb_is_contained(backend):
    async def go():
        spec = SandboxSpec(limits=Limits(max_processes=32, timeout_s=5))
        async with await backend.create(spec) as sb:
            res = await sb.exec(["python3", "-c", FORK_COUNTER])
            assert res.exit_code == 0
            assert 0 < int(res.output) < 32
            await sb.exec(["bash", "-c", FORK_BOMB], timeout_s=3)
            assert (await sb.exec(["echo", "alive"])).output == "alive\n"
            assert await _processes(sb) == []

    run(go())


def test_network_is_closed(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["ls", "/sys/class/net"])
            assert res.output.split() == ["lo"]
            with tcp_listener() as port:
                for host in ("127.0.0.1", "172.17.0.1"):
                    res = await sb.exec(
                        ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], timeout_s=5
                    )
                    assert res.exit_code != 0 and not res.timed_out

    run(go())


def test_host_files_are_untouched(backend, tmp_path):
    probe = Path("/etc") / f"pivotgym-probe-{uuid.uuid4().hex[:8]}"
    host_secret = tmp_path / "secret"
    host_secret.write_text("host only")

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", f"echo inside > {probe} && cat {probe}"])
            assert res.output == "inside\n"
            assert (await sb.exec(["test", "-e", str(host_secret)])).exit_code == 1
            await sb.exec(["rm", "-rf", str(tmp_path)])

    run(go())
    assert not probe.exists()
    assert host_secret.read_text() == "host only"


def test_leftover_processes_are_gone_after_exec(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", LEAVE_CHILDREN])
            assert res.output == "started\n" and res.exit_code == 0
            assert await _processes(sb) == []
            # The same for a foreground command that ignores SIGTERM and runs out of time.
            res = await sb.exec(["python3", "-c", STUBBORN], timeout_s=1)
            assert res.timed_out
            assert await _processes(sb) == []

    run(go())


def test_files_roundtrip(backend, tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "nested" / "a.txt").write_text("alpha")
    (src / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "run.sh").chmod(0o755)

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.write_file("/opt/deep/dir/data.bin", b"\x00\x01binary", mode=0o600)
            assert await sb.read_file("/opt/deep/dir/data.bin") == b"\x00\x01binary"
            res = await sb.exec(["stat", "-c", "%a %u", "/opt/deep/dir/data.bin"])
            assert res.output == "600 0\n"
            with pytest.raises(FileNotFoundError):
                await sb.read_file("/no/such/file")
            with pytest.raises(IsADirectoryError):
                await sb.read_file("/opt/deep")

            await sb.upload(src, "/srv/copy")
            assert (await sb.exec(["/srv/copy/run.sh"])).output == "run\n"
            await sb.exec(["sh", "-c", "echo made inside > /srv/copy/nested/b.txt"])
            await sb.download("/srv/copy", tmp_path / "back")
            back = tmp_path / "back"
            assert (back / "nested" / "a.txt").read_text() == "alpha"
            assert (back / "nested" / "b.txt").read_text() == "made inside\n"
            assert os.access(back / "run.sh", os.X_OK)
            await sb.download("/srv/copy/nested/a.txt", tmp_path / "single.txt")
            assert (tmp_path / "single.txt").read_text() == "alpha"

    run(go())


def test_fork_isolation(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as parent:
            await parent.exec(["sh", "-c", "echo shared > /app/base.txt"])
            forks = await parent.fork(3)
            try:
                assert len({f.id for f in forks} | {parent.id}) == 4
                for i, f in enumerate(forks):
                    await f.exec(["sh", "-c", f"echo {i} > /app/mine-{i} && echo {i} > /tmp/t"])
                for i, f in enumerate(forks):
                    res = await f.exec(["sh", "-c", "ls /app; cat /tmp/t"])
                    assert res.output.split() == ["base.txt", f"mine-{i}", str(i)]
                res = await parent.exec(["sh", "-c", "ls /app; ls /tmp"])
                assert res.output.split() == ["base.txt"]
            finally:
                await asyncio.gather(*(f.close() for f in forks))

    run(go())


def test_snapshot_restores_identical_state_twice(backend):
    listing = ["sh", "-c", "cd / && find app tmp -exec stat -c '%n %a %s %Y' {} + | sort"]

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.exec(["sh", "-c", "mkdir -p /app/d && echo one > /app/d/f && echo t > /tmp/x"])
            before = (await sb.exec(listing)).output
            snap = await sb.snapshot()
            await sb.exec(["sh", "-c", "echo two > /app/d/f && rm /tmp/x && touch /app/late"])
            restored = [await backend.create(SandboxSpec(), snapshot=snap) for _ in range(2)]
            try:
                for r in restored:
                    assert (await r.exec(listing)).output == before
                    assert (await r.exec(["cat", "/app/d/f"])).output == "one\n"
            finally:
                await snap.release()
                await snap.release()
                # Still used by the restored sandboxes, so removal waits for them.
                assert [i for i in _api().images() if i["Id"] == snap.id]
                for r in restored:
                    await r.close()
            assert not [i for i in _api().images() if i["Id"] == snap.id]
            with pytest.raises(ValueError):
                await backend.create(SandboxSpec(), snapshot=snap)

    run(go())


def test_close_is_idempotent_and_concurrent(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        assert not sb.closed
        await asyncio.gather(sb.close(), sb.close(), sb.close())
        await sb.close()
        assert sb.closed
        assert not _api().containers(all=True, filters={"id": sb.id})
        with pytest.raises(InfraError):
            await sb.exec(["true"])

    run(go())


def test_dead_container_is_an_infra_error(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        try:
            _api().kill(sb.id)
            with pytest.raises(InfraError):
                await sb.exec(["true"])
        finally:
            await sb.close()

    run(go())


def test_task_dockerfile_is_built_once_without_pulling(backend, tmp_path):
    env = tmp_path / "environment"
    env.mkdir()
    (env / "data.txt").write_text(f"payload {uuid.uuid4().hex}\n")
    (env / "Dockerfile").write_text(
        "FROM pivotgym/base:bookworm\nCOPY data.txt /opt/data.txt\nRUN echo built > /opt/built\n"
    )
    spec = SandboxSpec(dockerfile=env / "Dockerfile", files=env)

    def task_images() -> set[str]:
        return {i["Id"] for i in _api().images(name="pivotgym/task")}

    before = task_images()

    async def go():
        async with await backend.create(spec) as sb:
            res = await sb.exec(["cat", "/opt/built", "/opt/data.txt", "/app/data.txt"])
            assert res.output.splitlines()[0] == "built"
            assert res.output.splitlines()[1] == res.output.splitlines()[2]
        built = task_images() - before
        assert len(built) == 1
        started = time.monotonic()
        async with await backend.create(spec) as sb:
            assert (await sb.exec(["cat", "/opt/built"])).output == "built\n"
        assert time.monotonic() - started < 3  # a cache hit, not a rebuild
        assert task_images() - before == built

        (env / "Dockerfile").write_text("FROM pivotgym/never-built:latest\n")
        with pytest.raises(DataError, match="never pulls"):
            await backend.create(spec)

    try:
        run(go())
    finally:
        for image_id in task_images() - before:
            _api().remove_image(image_id, force=True)


_DRIVER = textwrap.dedent(
    """
    import asyncio, sys
    from pivotgym.sandbox.base import SandboxSpec
    from pivotgym.sandbox.docker import DockerBackend

    async def main():
        backend = DockerBackend()
        a = await backend.create(SandboxSpec())
        await a.fork(2)
        await a.exec(["touch", "/app/x"])
        await a.snapshot()
        if sys.argv[1] == "hang":
            print("ready", flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def test_reap_removes_leftovers_of_a_killed_driver():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, "hang"], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert driver.stdout.readline() == "ready\n"
        owner = leases.owner_token(driver.pid)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    api = _api()
    assert len(api.containers(all=True, filters={"label": f"{leases.LABEL}={owner}"})) == 3
    assert api.images(filters={"label": f"{leases.LABEL}={owner}"})

    # The next start reaps them; it exits without closing its own sandboxes, which the
    # exit hook removes.
    subprocess.run([sys.executable, "-c", _DRIVER, "exit"], env=env, check=True, timeout=60)
    assert not api.containers(all=True, filters={"label": f"{leases.LABEL}={owner}"})
    assert not api.images(filters={"label": f"{leases.LABEL}={owner}"})
    mine = leases.owner_token()
    left = api.containers(all=True, filters={"label": leases.LABEL})
    assert [c["Id"] for c in left if c["Labels"][leases.LABEL] != mine] == []


def test_close_all_sync_removes_everything_of_this_process(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        snap = await sb.snapshot()
        return sb, snap

    sb, snap = run(go())
    assert isinstance(sb, DockerSandbox)
    backend.close_all_sync()
    backend.close_all_sync()
    assert sb.closed
    assert not _api().containers(all=True, filters={"id": sb.id})
    assert not [i for i in _api().images() if i["Id"] == snap.id]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_clean_up_without_a_reaper(signum):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, "hang"], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert driver.stdout.readline() == "ready\n"
        owner = leases.owner_token(driver.pid)
        driver.send_signal(signum)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode != 0
    api = _api()
    assert not api.containers(all=True, filters={"label": f"{leases.LABEL}={owner}"})
    assert not api.images(filters={"label": f"{leases.LABEL}={owner}"})
