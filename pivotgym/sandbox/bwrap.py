"""Bubblewrap sandboxes: the host's userland read-only, private writable state, no network.

Each sandbox owns a host directory (a size-limited tmpfs when running as root, which is
the disk quota) holding the writable parts bound into every exec:

==================  =======================================
inside              host directory
==================  =======================================
``spec.workdir``    ``<sandbox>/work``
``/tmp``            ``<sandbox>/tmp``
``/root`` (HOME)    ``<sandbox>/home``
``/logs``           ``<sandbox>/logs``
``/tests``          ``<sandbox>/tests``
``/run/pivotgym``   ``<sandbox>/state``
==================  =======================================

Everything else is read-only, so state lives only where snapshots and forks see it.

Every exec is a fresh ``bwrap`` with all namespaces unshared (user, pid, net, ipc, uts,
cgroup): when the command exits, its pid namespace dies and takes every child with it,
so nothing outlives an exec. Memory and process count are limited by a per-sandbox
cgroup (see :mod:`pivotgym.sandbox.cgroups`), or by rlimits where cgroups are not
writable; file size by ``RLIMIT_FSIZE``. Snapshots and forks are copies of the writable
directory, which is small next to the read-only userland it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from pivotgym.errors import InfraError
from pivotgym.sandbox import leases
from pivotgym.sandbox.base import (
    DETERMINISTIC_ENV,
    IMAGE_RECIPE,
    Backend,
    ExecResult,
    OutputCollector,
    Sandbox,
    SandboxSpec,
    Snapshot,
)
from pivotgym.sandbox.cgroups import CgroupLayout, controller

FIXED_MTIME = int(DETERMINISTIC_ENV["SOURCE_DATE_EPOCH"])
_FIXED_MOUNTS = {
    "/tmp": "tmp",
    "/root": "home",
    "/logs": "logs",
    "/tests": "tests",
    "/run/pivotgym": "state",
}
# The parts of the host's /etc that programs need; the rest (credentials, host config)
# stays invisible.
_ETC = (
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "localtime",
    "timezone",
    "mime.types",
    "magic",
    "magic.mime",
    "bash.bashrc",
    "inputrc",
    "profile",
    "os-release",
    "debian_version",
    "python3",
    "python3.11",
    "protocols",
    "services",
)
_TRANSFER_LIMIT = 1 << 34  # file transfers are not model output: keep everything


def default_runtime_dir() -> Path:
    configured = os.environ.get("PIVOTGYM_RUNTIME_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"pivotgym-{os.getuid()}"


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    options = f"size={size_mb}m,mode=0755".encode()
    flags = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
    if _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _unmount(path: Path) -> None:
    _libc().umount2(str(path).encode(), 2)  # MNT_DETACH; fails harmlessly if not mounted


def _remove_tree(path: Path) -> None:
    _unmount(path)
    shutil.rmtree(path, ignore_errors=True)


def _copy_tree(src: Path, dst: Path) -> None:
    # cp -a keeps modes, times and symlinks as symlinks (never following a link the
    # model planted towards the host).
    subprocess.run(["cp", "-a", "--", f"{src}/.", f"{dst}/"], check=True, capture_output=True)


def _stamp(root: Path) -> None:
    """Give every file a fixed mtime so that listings replay identically."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


async def _reap_namespace_init(info_read: int) -> None:
    """Wait for the sandbox's pid-namespace init, which bwrap leaves behind as an orphan.

    bwrap exits as soon as its namespace init reports the command's status, before that
    init has exited; the orphan is re-parented to this process (a child subreaper, see
    ``BwrapBackend``) and must be waited for here, or zombies pile up.
    """
    try:
        info = os.read(info_read, 4096)
    finally:
        os.close(info_read)
    try:
        child = int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return
    with contextlib.suppress(ChildProcessError):
        await asyncio.to_thread(os.waitpid, child, 0)


class BwrapSnapshot(Snapshot):
    def __init__(self, backend: BwrapBackend, snap_id: str, path: Path, spec: SandboxSpec) -> None:
        self.backend = backend
        self.id = snap_id
        self.path = path
        self.spec = spec
        self._released = False

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.backend._snapshots.pop(self.id, None)
        await asyncio.to_thread(self.backend._discard, self.path)


class BwrapSandbox(Sandbox):
    def __init__(self, backend: BwrapBackend, sandbox_id: str, root: Path, spec: SandboxSpec):
        self.backend = backend
        self.id = sandbox_id
        self.root = root
        self.spec = spec
        self._closed = False
        self._procs: set[int] = set()
        self._mounts = {spec.workdir: "work", **_FIXED_MOUNTS}

    @property
    def closed(self) -> bool:
        return self._closed

    def _argv(
        self, argv: Sequence[str], cwd: str, env: Mapping[str, str], info_fd: int
    ) -> list[str]:
        limits = self.spec.limits
        cmd: list[str] = []
        cg = self.backend.cgroups
        if cg is not None:
            # Join the sandbox's cgroups before bwrap starts, so no child can escape them.
            procs = [str(p) for p in cg.procs_files(self.id)]
            script = (
                'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; '
                'shift; n=$((n-1)); done; exec "$@"'
            )
            cmd += ["/bin/sh", "-c", script, "sh", str(len(procs)), *procs]
        cmd += ["prlimit", f"--fsize={limits.disk_mb * 1024 * 1024}"]
        if cg is None:
            cmd += [f"--as={limits.memory_mb * 1024 * 1024}", f"--nproc={limits.max_processes}"]
        cmd += ["--", "bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
        cmd += ["--unshare-user", "--uid", "0", "--gid", "0", "--hostname", "sandbox"]
        cmd += ["--info-fd", str(info_fd)]
        if limits.network:
            cmd += ["--share-net"]
        cmd += ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                cmd += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                cmd += ["--ro-bind", f"/{link}", f"/{link}"]
        for name in _ETC:
            if os.path.lexists(f"/etc/{name}"):
                cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--symlink", "/tmp", "/var/tmp"]
        for inside, sub in self._mounts.items():
            cmd += ["--bind", str(self.root / sub), inside]
        # The root is bwrap's scratch tmpfs: a write there would succeed and then vanish
        # with the exec (and escape the disk quota), so it fails loudly instead.
        cmd += ["--remount-ro", "/", "--chdir", cwd, "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        cmd += ["--", *argv]
        return cmd

    async def exec(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        limit = self.spec.limits.max_output_bytes
        return await self._run(
            argv, timeout_s=timeout_s, cwd=cwd, env=env, stdin=stdin, limit=limit
        )

    async def _run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None,
        cwd: str | None,
        env: Mapping[str, str] | None,
        stdin: bytes | None,
        limit: int,
        collector: OutputCollector | None = None,
    ) -> ExecResult:
        if self._closed:
            raise InfraError(f"sandbox {self.id} is closed")
        timeout = self.spec.limits.timeout_s if timeout_s is None else timeout_s
        full_env = {**DETERMINISTIC_ENV, **self.spec.env, **(env or {})}
        info_read, info_write = os.pipe()
        command = self._argv(argv, cwd or self.spec.workdir, full_env, info_write)
        out = collector or OutputCollector(limit)
        start = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(info_write,),
            )
        except OSError as exc:
            os.close(info_read)
            raise InfraError(f"cannot start bwrap: {exc}") from exc
        finally:
            os.close(info_write)
        self._procs.add(proc.pid)
        timed_out = False

        async def pump() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                out.feed(chunk)
                # A reader with buffered data returns without suspending; yield so that
                # the timeout can fire during an output flood.
                await asyncio.sleep(0)

        async def feed() -> None:
            if stdin is None or proc.stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()

        try:
            await asyncio.wait_for(asyncio.gather(feed(), pump(), proc.wait()), timeout)
        except TimeoutError:
            timed_out = True
        finally:
            if proc.returncode is None and self.backend.cgroups is not None:
                self.backend.cgroups.kill(self.id)  # tini stays outside and reaps them
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            # asyncio reports the exit only once the pipe is at EOF, and a flooded reader
            # has paused reading: drain what is left so the EOF is seen.
            assert proc.stdout is not None
            while await proc.stdout.read(65536):
                pass
            await proc.wait()
            self._procs.discard(proc.pid)
            await _reap_namespace_init(info_read)
        duration = time.perf_counter() - start
        code = proc.returncode
        if timed_out:
            code = None
        elif code is not None and code < 0:
            code = 128 - code
        if code == 1 and out.total < 4096 and out.text().startswith("bwrap: "):
            raise InfraError(f"sandbox {self.id}: {out.text().strip()}")
        return ExecResult(
            output=out.text(),
            exit_code=code,
            duration_s=duration,
            timed_out=timed_out,
            truncated=out.truncated,
            output_bytes=out.total,
        )

    async def _transfer(self, argv: Sequence[str], stdin: bytes | None = None) -> bytes:
        raw = _RawCollector()
        result = await self._run(
            argv,
            timeout_s=600,
            cwd="/",
            env=None,
            stdin=stdin,
            limit=_TRANSFER_LIMIT,
            collector=raw,
        )
        if result.exit_code != 0:
            raise OSError(f"sandbox {self.id}: {' '.join(argv[:2])} failed: {raw.head()}")
        return raw.data()

    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1" && chmod "$2" -- "$1"'
        await self._transfer(["sh", "-c", script, "sh", path, oct(mode)[2:]], stdin=data)

    async def read_file(self, path: str) -> bytes:
        script = 'test -f "$1" || { echo "no such file: $1" >&2; exit 3; }; cat -- "$1"'
        try:
            return await self._transfer(["sh", "-c", script, "sh", path])
        except OSError as exc:
            if "no such file" in str(exc):
                raise FileNotFoundError(path) from exc
            raise

    async def upload(self, src: Path, dest: str) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if src.is_dir():
                for child in sorted(src.iterdir()):
                    tar.add(child, arcname=child.name)
            else:
                tar.add(src, arcname=PurePosixPath(dest).name)
                dest = str(PurePosixPath(dest).parent)
        script = 'mkdir -p -- "$1" && tar -x -m -C "$1" -f -'
        await self._transfer(["sh", "-c", script, "sh", dest], stdin=buf.getvalue())

    async def download(self, src: str, dest: Path) -> None:
        script = 'cd -- "$(dirname -- "$1")" && tar -c -f - -- "$(basename -- "$1")"'
        data = await self._transfer(["sh", "-c", script, "sh", src])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            top = members[0].name if members else ""
            with tempfile.TemporaryDirectory() as tmp:
                tar.extractall(tmp, filter="data")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(os.path.join(tmp, top), dest)

    async def snapshot(self) -> BwrapSnapshot:
        return await asyncio.to_thread(self.backend._snapshot_sync, self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        self._closed = True
        for pid in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self.backend.cgroups is not None:
            self.backend.cgroups.remove(self.id)
        self.backend._sandboxes.pop(self.id, None)
        self.backend._discard(self.root)


class _RawCollector(OutputCollector):
    """Keeps bytes as they are (file transfers), instead of decoded model-facing text."""

    def __init__(self) -> None:
        super().__init__(_TRANSFER_LIMIT)

    def data(self) -> bytes:
        return b"".join(self._chunks)

    def head(self) -> str:
        return self.data()[:300].decode("utf-8", errors="replace")


class BwrapBackend(Backend):
    """Sandboxes as bubblewrap namespaces over the host's read-only userland."""

    name = "bwrap"

    def __init__(self, runtime_dir: Path | None = None) -> None:
        self.runtime = runtime_dir or default_runtime_dir()
        self.owner = leases.owner_token()
        self.cgroups: CgroupLayout | None = controller()
        self.quota = os.geteuid() == 0  # tmpfs mounts, i.e. a real disk quota, need root
        self._sandboxes: dict[str, BwrapSandbox] = {}
        self._snapshots: dict[str, BwrapSnapshot] = {}
        self._started = False
        self._start_lock = threading.Lock()
        leases.register_backend(self)

    @classmethod
    @functools.cache
    def available(cls) -> str | None:
        if shutil.which("bwrap") is None:
            return "bwrap is not installed (apt-get install bubblewrap)"
        probe = subprocess.run(
            [
                "bwrap",
                "--unshare-all",
                "--unshare-user",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/bin",
                "/bin",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "true",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            return f"bwrap cannot create namespaces here: {probe.stderr.strip()}"
        return None

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
            # Become the reaper of orphaned descendants (bwrap's namespace inits): without
            # it they go to pid 1, which inside many containers never reaps them.
            _libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            for sub in ("sandboxes", "snapshots"):
                (self.runtime / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            self.reap()
            leases.register_backend(self)

    def _claim(self, kind: str) -> tuple[str, Path]:
        item_id = uuid.uuid4().hex[:12]
        path = self.runtime / kind / item_id
        # The owner file comes first: whatever follows, a crash leaves something reapable.
        (self.runtime / kind / f"{item_id}.owner").write_text(self.owner)
        path.mkdir()
        return item_id, path

    def _discard(self, path: Path) -> None:
        _remove_tree(path)
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".owner").unlink()

    def _create_sync(self, spec: SandboxSpec, snapshot: BwrapSnapshot | None) -> BwrapSandbox:
        self._ensure_started()
        sandbox_id, root = self._claim("sandboxes")
        try:
            if self.quota:
                _mount_tmpfs(root, spec.limits.disk_mb)
            if snapshot is not None:
                _copy_tree(snapshot.path, root)
            else:
                for sub in {"work", *_FIXED_MOUNTS.values()}:
                    (root / sub).mkdir()
                (root / "tmp").chmod(0o1777)
                if spec.files is not None:
                    shutil.copytree(
                        spec.files,
                        root / "work",
                        symlinks=True,
                        dirs_exist_ok=True,
                        ignore=lambda d, names: [IMAGE_RECIPE] if Path(d) == spec.files else [],
                    )
                _stamp(root / "work")
            if self.cgroups is not None:
                self.cgroups.create(sandbox_id, spec.limits.memory_mb, spec.limits.max_processes)
        except Exception as exc:
            if self.cgroups is not None:
                self.cgroups.remove(sandbox_id)
            self._discard(root)
            raise InfraError(f"cannot create bwrap sandbox: {exc}") from exc
        sandbox = BwrapSandbox(self, sandbox_id, root, spec)
        self._sandboxes[sandbox_id] = sandbox
        return sandbox

    async def create(self, spec: SandboxSpec, *, snapshot: Snapshot | None = None) -> BwrapSandbox:
        if snapshot is not None:
            if not isinstance(snapshot, BwrapSnapshot) or snapshot._released:
                raise InfraError(f"snapshot {snapshot.id} is not a live bwrap snapshot")
            spec = snapshot.spec
        return await asyncio.to_thread(self._create_sync, spec, snapshot)

    def _snapshot_sync(self, sandbox: BwrapSandbox) -> BwrapSnapshot:
        if sandbox.closed:
            raise InfraError(f"sandbox {sandbox.id} is closed")
        snap_id, path = self._claim("snapshots")
        try:
            _copy_tree(sandbox.root, path)
        except subprocess.CalledProcessError as exc:
            self._discard(path)
            raise InfraError(f"snapshot of {sandbox.id} failed: {exc.stderr!r}") from exc
        snap = BwrapSnapshot(self, snap_id, path, sandbox.spec)
        self._snapshots[snap_id] = snap
        return snap

    def reap(self) -> int:
        removed = 0
        for kind in ("sandboxes", "snapshots"):
            folder = self.runtime / kind
            if not folder.is_dir():
                continue
            for owner_file in folder.glob("*.owner"):
                item_id = owner_file.name.removesuffix(".owner")
                try:
                    token = owner_file.read_text()
                except OSError:
                    continue
                if leases.owner_alive(token):
                    continue
                if kind == "sandboxes" and self.cgroups is not None:
                    self.cgroups.remove(item_id)
                self._discard(folder / item_id)
                removed += 1
        return removed

    def close_all_sync(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            with contextlib.suppress(Exception):
                sandbox._close_sync()
        for snap in list(self._snapshots.values()):
            with contextlib.suppress(Exception):
                snap._released = True
                self._discard(snap.path)
        self._snapshots.clear()
