"""The sandbox contract, on every backend that runs here: what an environment above the
protocol of :mod:`pivotgym.sandbox.base` relies on. Attacks have their own suite
(``test_sandbox_security.py``); what only one backend does, its own file."""

from __future__ import annotations

import asyncio
import json
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
    leftovers,
    run,
    sandbox_processes,
    tcp_listener,
)

from pivotgym.errors import InfraError
from pivotgym.sandbox.base import TRUNCATION_MARKER, Limits, SandboxSpec
from pivotgym.sandbox.state import UncopyableState, read_tree

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ exec


def test_exec_output_exit_code_stdin_cwd_and_env(backend, tmp_path):
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
                ["sh", "-c", 'echo "$FOO $TZ $SOURCE_DATE_EPOCH $HOME"'], env={"FOO": "x"}
            )
            assert res.output == "x UTC 1700000000 /root\n"
            assert (await sb.exec(["sh", "-c", "kill -9 $$"])).exit_code == 128 + 9
            # Copied files are owned by root with a fixed mtime, so listings replay.
            res = await sb.exec(["ls", "-ln", "--time-style=+%s", "hello.txt"])
            assert res.output.split()[2:4] == ["0", "0"] and "1700000000" in res.output
            assert (await sb.exec(["id", "-u"])).output == "0\n"

    run(go())


def test_an_argument_exec_would_refuse_is_a_value_error(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            with pytest.raises(ValueError, match="over the limit"):
                await sb.exec(["echo", "x" * 200_000])
            with pytest.raises(ValueError, match="command line"):
                await sb.exec(["echo", *(["y" * 100_000] * 12)])
            with pytest.raises(ValueError):
                await sb.exec([])
            with pytest.raises(ValueError, match="NUL"):
                await sb.exec(["echo", "a\0b"])
            assert (await sb.exec(["echo", "x" * 100_000])).output == "x" * 16_384 + (
                TRUNCATION_MARKER.format(dropped=100_001 - 16_384)
            )

    run(go())


def test_timeout_kills_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", "echo before; while :; do :; done"], timeout_s=1)
            assert res.timed_out and res.exit_code is None and not res.ok
            assert res.output == "before\n"
            assert 1 <= res.duration_s < 5
            assert (await sb.exec(["echo", "still here"])).output == "still here\n"
            assert await sandbox_processes(sb) == []
            # A command that closes its output and goes on is waited for, not cut off.
            res = await sb.exec(["sh", "-c", "exec >&- 2>&-; sleep 0.5; echo done > /tmp/d"])
            assert res.exit_code == 0 and not res.timed_out
            assert (await sb.exec(["cat", "/tmp/d"])).output == "done\n"

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


def test_terminal_control_characters_are_escaped(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["printf", "\\033[2J\\033]0;t\\007a\\tb\\r\\n\\302\\233x\\n"])
            # One character for one: escaped output is never longer than what was written.
            assert res.output == "\u241b[2J\u241b]0;t\u2407a\tb\r\n\ufffdx\n"

    run(go())


# ---------------------------------------------------------------------------- limits


def test_memory_hog_is_killed_and_sandbox_stays_usable(backend):
    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(memory_mb=64))) as sb:
            res = await sb.exec(["python3", "-c", MEMORY_HOG])
            assert "survived" not in res.output and not res.timed_out
            assert res.exit_code != 0
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
            assert await sandbox_processes(sb) == []

    run(go())


def test_disk_quota_covers_every_writable_place_together(backend):
    async def go():
        async with await backend.create(SandboxSpec(limits=Limits(disk_mb=16))) as sb:
            if not backend.store.quota:
                pytest.skip("a disk quota needs root (a size-limited tmpfs per sandbox)")
            script = "; ".join(
                f"head -c 6M /dev/zero > {place}/f 2>/dev/null"
                for place in ("/app", "/tmp", "/root", "/dev/shm")
            )
            await sb.exec(["sh", "-c", script])
            res = await sb.exec(["sh", "-c", "du -skc /app /tmp /root /dev/shm | tail -1"])
            assert int(res.output.split()[0]) <= 16 * 1024
            await sb.exec(["sh", "-c", "rm -f /app/f /tmp/f /root/f /dev/shm/f"])
            res = await sb.exec(["sh", "-c", "echo fine > /app/after && cat /app/after"])
            assert res.output == "fine\n"

    run(go())


def test_file_count_is_limited(backend):
    async def go():
        spec = SandboxSpec(limits=Limits(max_files=500))
        async with await backend.create(spec) as sb:
            if not backend.store.quota:
                pytest.skip("a file-count limit needs root (a tmpfs per sandbox)")
            many = "i=0; while [ $i -lt 5000 ] && : > /tmp/f$i; do i=$((i+1)); done; echo $i"
            res = await sb.exec(["bash", "-c", many], timeout_s=30)
            assert "No space left on device" in res.output
            assert 400 < int(res.output.split()[-1]) <= 500

    run(go())


# ------------------------------------------------------------------------- isolation


def test_network_is_closed(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"])
            assert res.output.split() == ["lo"]
            with tcp_listener() as port:
                for host in ("127.0.0.1", "172.17.0.1"):
                    res = await sb.exec(
                        ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], timeout_s=5
                    )
                    assert res.exit_code != 0 and not res.timed_out

    run(go())


def test_host_files_are_untouched_and_invisible(backend, tmp_path):
    probe = f"pivotgym-probe-{uuid.uuid4().hex[:8]}"
    secret = tmp_path / "secret"
    secret.write_text("host only")

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            for target in (f"/etc/{probe}", f"/usr/{probe}", f"/usr/bin/{probe}", f"/{probe}"):
                res = await sb.exec(["sh", "-c", f"echo inside > {target}"])
                assert res.exit_code != 0, target
            res = await sb.exec(["sh", "-c", "echo x >> /etc/passwd; rm -f /usr/bin/env"])
            assert res.exit_code != 0
            # The sandbox's /root is its own empty home, not the host's.
            assert (await sb.exec(["ls", "-A", "/root"])).output == ""
            for hidden in (str(secret), str(backend.store.runtime), str(sb.root)):
                assert (await sb.exec(["test", "-e", hidden])).exit_code == 1, hidden
            await sb.exec(["rm", "-rf", str(tmp_path), "/root/.bashrc"])

    run(go())
    for base in (Path("/etc"), Path("/usr"), Path("/usr/bin"), Path("/")):
        assert not (base / probe).exists()
    assert secret.read_text() == "host only"
    assert Path("/usr/bin/env").exists()


def test_nothing_outlives_an_exec(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            res = await sb.exec(["sh", "-c", LEAVE_CHILDREN])
            assert res.output == "started\n" and res.exit_code == 0
            assert await sandbox_processes(sb) == []
            # A foreground command that ignores SIGTERM and runs out of time.
            res = await sb.exec(["python3", "-c", STUBBORN], timeout_s=1)
            assert res.timed_out
            assert await sandbox_processes(sb) == []
            assert leftovers("sleep 1000", "sleep 1001", STUBBORN) == []

    run(go())


# ---------------------------------------------------------------------- files, state


def test_files_roundtrip(backend, tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "nested" / "a.txt").write_text("alpha")
    (src / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "run.sh").chmod(0o755)

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.write_file("/app/deep/dir/data.bin", b"\x00\x01binary", mode=0o600)
            assert await sb.read_file("/app/deep/dir/data.bin") == b"\x00\x01binary"
            res = await sb.exec(["stat", "-c", "%a %u", "/app/deep/dir/data.bin"])
            assert res.output == "600 0\n"
            with pytest.raises(FileNotFoundError):
                await sb.read_file("/no/such/file")

            await sb.upload(src, "/tmp/copy")
            assert (await sb.exec(["/tmp/copy/run.sh"])).output == "run\n"
            await sb.exec(["sh", "-c", "echo made inside > /tmp/copy/nested/b.txt"])
            await sb.download("/tmp/copy", tmp_path / "back")
            back = tmp_path / "back"
            assert (back / "nested" / "a.txt").read_text() == "alpha"
            assert (back / "nested" / "b.txt").read_text() == "made inside\n"
            assert os.access(back / "run.sh", os.X_OK)
            await sb.download("/tmp/copy/nested/a.txt", tmp_path / "single.txt")
            assert (tmp_path / "single.txt").read_text() == "alpha"

    run(go())


def test_host_dir_is_the_state_of_each_writable_place(backend):
    async def go():
        async with await backend.create(SandboxSpec(workdir="/srv/work")) as sb:
            await sb.exec(
                ["sh", "-c", "echo w > /srv/work/a; echo t > /tmp/b; echo s > /dev/shm/c"]
            )
            assert (sb.host_dir("/srv/work") / "a").read_text() == "w\n"
            assert (sb.host_dir("/tmp") / "b").read_text() == "t\n"
            assert (sb.host_dir("/dev/shm/") / "c").read_text() == "s\n"
            for other in ("/usr", "/app", "/srv", "/"):
                with pytest.raises(ValueError):
                    sb.host_dir(other)
        with pytest.raises(ValueError, match="overlaps"):
            await backend.create(SandboxSpec(workdir="/tmp/work"))

    run(go())


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


def test_a_partial_snapshot_keeps_only_the_places_asked_for(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.exec(["sh", "-c", "echo a > /app/a; echo t > /tmp/t; echo h > /root/h; "
                                       "mkdir -p /logs/v && echo 1 > /logs/v/r"])  # fmt: skip
            (copy,) = await sb.fork(1, keep=["/app"])
            try:
                res = await copy.exec(["sh", "-c", "ls -A /app /tmp /root /logs /tests /dev/shm"])
                assert res.output.split() == [
                    "/app:", "a", "/dev/shm:", "/logs:", "/root:", "/tests:", "/tmp:"
                ]  # fmt: skip
                assert (await copy.exec(["touch", "/tmp/ok"])).exit_code == 0
            finally:
                await copy.close()
            with pytest.raises(ValueError):
                await sb.snapshot(keep=["/usr"])

    run(go())


def test_a_state_too_deep_to_copy_is_the_commands_doing(backend):
    """A fork of a state the host cannot copy raises UncopyableState (a ValueError,
    like any bad input), never an InfraError; the host still reads and removes it."""
    deep = "import os\nfor _ in range(25):\n    os.mkdir('d' * 200); os.chdir('d' * 200)"

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.exec(["python3", "-c", deep])
            with pytest.raises(UncopyableState, match="longer than the system takes"):
                await sb.fork(1)
            tree = read_tree(sb.host_dir("/app"), digests=False)
            assert max(path.count("/") for path in tree) == 24
            return sb.root

    root = run(go())
    assert not root.exists()


def test_a_folder_lists_the_same_in_a_fresh_restored_or_forked_sandbox(backend, tmp_path):
    """``ls -U`` (and ``find``, ``grep -r``) prints a folder in the order its state's
    file system gives, which a replay compares: copies are made in name order, never in
    the order the files were made in on the host, nor of their inode numbers."""
    names = [f"m{i:02d}.py" for i in (7, 3, 11, 0, 5, 9, 1, 12, 4, 8, 2, 10, 6)]
    for name in names:  # made out of order
        (tmp_path / name).write_text(name)
    (tmp_path / "pkg").mkdir()
    for name in reversed(names):
        (tmp_path / "pkg" / name).write_text(name)
    listing = ["sh", "-c", "ls -U . pkg"]

    async def go():
        async with await backend.create(SandboxSpec(files=tmp_path)) as sb:
            fresh = (await sb.exec(listing)).output
            snap = await sb.snapshot()
            try:
                async with await backend.create(SandboxSpec(), snapshot=snap) as restored:
                    again = (await restored.exec(listing)).output
            finally:
                await snap.release()
            forks = await sb.fork(2)
            try:
                forked = [(await f.exec(listing)).output for f in forks]
            finally:
                for f in forks:
                    await f.close()
            return fresh, again, forked

    fresh, again, forked = run(go())
    assert again == fresh and forked == [fresh, fresh]
    if os.geteuid() == 0:  # the state is a tmpfs, which lists the newest entry first
        top = fresh.split("\n\n")[0].splitlines()[1:]
        assert top == sorted([*names, "pkg"], reverse=True)


def test_a_sparse_file_costs_its_blocks_not_its_length(backend):
    """The host's digest skips holes and equals that of the same bytes written out; a
    file of hundreds of MB is digested, never held (a reader asked for its bytes)."""
    script = (
        "printf 'PK\\003\\004' > zip; truncate -s 250M zip; truncate -s 3M holes; "
        "head -c 3M /dev/zero > zeros; printf x >> holes; printf x >> zeros"
    )

    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            await sb.exec(["sh", "-c", script])
            return read_tree(sb.host_dir("/app"), want_data=lambda path, head: True)

    tree = run(go())
    assert tree["zip"].size == 250 << 20 and tree["zip"].data is None
    assert tree["holes"].sha256 == tree["zeros"].sha256 and tree["holes"].data is not None


def test_close_is_idempotent_and_concurrent(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        assert not sb.closed
        await sb.exec(["true"])
        await asyncio.gather(sb.close(), sb.close(), sb.close())
        await sb.close()
        assert sb.closed
        assert not sb.root.exists()
        assert not sb.root.with_name(sb.root.name + ".owner").exists()
        with pytest.raises(InfraError):
            await sb.exec(["true"])

    run(go())
    backend.close_all_sync()
    backend.close_all_sync()


def test_close_all_sync_removes_everything_of_this_process(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        snap = await sb.snapshot()
        return sb, snap

    sb, snap = run(go())
    backend.close_all_sync()
    backend.close_all_sync()
    assert sb.closed and snap.released
    assert not sb.root.exists() and not snap.path.exists()


# --------------------------------------------------------------------------- reaping

_DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from pivotgym.sandbox import backend_class
    from pivotgym.sandbox.base import SandboxSpec

    async def main():
        backend = backend_class(sys.argv[1])(runtime_dir=Path(sys.argv[2]))
        a = await backend.create(SandboxSpec())
        await a.exec(["sh", "-c", "seq 100 > /app/x"])
        forks = await a.fork(2)
        snaps = [await a.snapshot(), await forks[0].snapshot()]
        b = await backend.create(SandboxSpec(), snapshot=snaps[0])
        if sys.argv[3] == "hang":
            print(json.dumps([s.id for s in (a, b, *forks)]), flush=True)
            running = asyncio.create_task(b.exec(["sh", "-c", "echo running; sleep 1000"]))
            await asyncio.sleep(0.5)
            print("ready", flush=True)
            await running

    asyncio.run(main())
    """
)


def _start_driver(name: str, runtime: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", _DRIVER, name, str(runtime), "hang"]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    json.loads(driver.stdout.readline())
    assert driver.stdout.readline() == "ready\n"
    return driver


def _nothing_left(backend, runtime: Path) -> None:
    for kind in ("sandboxes", "snapshots", "scratch"):
        assert not (runtime / kind).exists() or sorted(os.listdir(runtime / kind)) == []
    mounts = Path("/proc/self/mounts").read_text()
    assert str(runtime) not in mounts
    assert leftovers("sleep 1000") == []
    if backend.name == "docker":
        import docker

        api = docker.from_env().api
        mine = [c for c in api.containers(all=True) if str(runtime) in json.dumps(c["Mounts"])]
        assert mine == []


def test_reap_removes_leftovers_of_a_killed_driver(backend):
    runtime = backend.store.runtime
    driver = _start_driver(backend.name, runtime)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # The crash really left states and snapshots behind for the reaper to find.
    assert len(list((runtime / "sandboxes").glob("*.owner"))) == 4
    assert len(list((runtime / "snapshots").glob("*.owner"))) == 2
    assert backend.reap() >= 6
    _nothing_left(backend, runtime)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_clean_up_without_a_reaper(backend, signum):
    runtime = backend.store.runtime
    driver = _start_driver(backend.name, runtime)
    try:
        assert leftovers("sleep 1000")
        driver.send_signal(signum)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode != 0
    # Nothing is left for a reaper: the signal handler closed every sandbox and snapshot.
    _nothing_left(backend, runtime)


def test_running_processes_of_a_killed_driver_stop_at_once(backend):
    """Not at the next start: the moment the driver dies (bwrap: the parent-death signal;
    docker: PID 1's stdin closes with the driver)."""
    driver = _start_driver(backend.name, backend.store.runtime)
    assert leftovers("sleep 1000")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while leftovers("sleep 1000") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers("sleep 1000") == []
    # What is left is only files and mounts, for the next start's reaper.
    backend.reap()
    _nothing_left(backend, backend.store.runtime)
