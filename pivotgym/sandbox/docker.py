"""Docker sandbox backend: one container per sandbox over a read-only image.

Every sandbox is a container of the local image ``pivotgym/base:bookworm`` (built without
any registry by ``docker/build-base.sh``), or of a task image built from a task's own
Dockerfile on top of it. Images are never pulled. The container's root file system is
read-only; what a command can change is the sandbox's state (see
:mod:`pivotgym.sandbox.state`), a quota'd tmpfs on the host whose folders are bound at
the workdir, ``/tmp``, ``/root``, ``/logs``, ``/tests``, ``/run/pivotgym`` and
``/dev/shm``. So snapshots and forks are copies of that state, exactly as for bwrap,
and the harness never depends on a binary the agent could have replaced.

A container has no network unless the limits allow it; memory without swap, a
process count, a CPU share and a file-size rlimit; the file-ownership capabilities
only (:data:`seccomp.CAPABILITIES`) under the seccomp filter of :mod:`.seccomp`,
``no-new-privileges``, ``/dev`` and ``/sys/fs/cgroup`` read-only, and no log (its
output would otherwise grow a file on the host without bound).

PID 1 is a bash loop blocked reading a stdin that the driver holds open through an
attached socket: it never forks, ignores every signal it can, and exits when that
socket closes, that is when the driver goes, even by ``SIGKILL``; the container is then
removed by Docker (``auto_remove``). The driver kills every other process of the
container from the host, through the container's cgroup, when an exec's command exits
or runs out of time, so nothing outlives an exec whatever the command did to its own
processes.

Blocking SDK calls run on a thread pool owned by the backend (the default executor of
asyncio has too few threads on a small machine for eight forks that exec at once).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import hashlib
import io
import os
import posixpath
import select
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import docker.errors
import docker.types

from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox import leases, seccomp
from pivotgym.sandbox.base import (
    DETERMINISTIC_ENV,
    Backend,
    ExecResult,
    OutputCollector,
    Sandbox,
    SandboxSpec,
    Snapshot,
    check_argv,
)
from pivotgym.sandbox.docker_images import (
    BASE_IMAGE,
    build_task_image,
    context_signature,
    require_image,
    task_image_tag,
)
from pivotgym.sandbox.state import (
    StateSandbox,
    StateSnapshot,
    StateStore,
    default_runtime_dir,
    host_tool,
    libc,
    places,
    unpack_archive,
)

SANDBOX_LABEL = "pivotgym.sandbox"
USER_LABEL_PREFIX = "pivotgym.label."

# Files copied or written into a sandbox get this mtime and owner root, so that ``ls -l``
# and archive listings replay byte-for-byte.
FIXED_MTIME = int(DETERMINISTIC_ENV["SOURCE_DATE_EPOCH"])

_IDLE_PID1 = [
    "/bin/bash",
    "-c",
    "trap '' HUP INT QUIT TERM USR1 USR2; while read -r _; do :; done",
]

# Runs every exec: $1 is the working directory, the rest the command. stderr joins
# stdout before anything runs, so output keeps the order it was written in; the
# command then replaces the wrapper, so the exec's process is the command itself. Its
# OOM score goes to the top first, so that the OOM killer takes the command's
# processes, never PID 1 (a command that fills memory fails; it does not kill its
# sandbox), and nothing inside can lower it again.
_WRAPPER = 'exec 2>&1; echo 1000 > /proc/self/oom_score_adj; cd -- "$1" || exit 1; shift; exec "$@"'

# Docker's defaults for these, plus /dev and the cgroup mounts: nothing of the
# container's own file system is writable but the state's binds.
_READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/dev",
    "/sys/fs/cgroup",
]
_MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

_GO_MODE_DIR = 1 << 31
_CLONE_NEWIPC = 0x08000000

T = TypeVar("T")


@contextmanager
def _infra(what: str) -> Iterator[None]:
    """Turn a daemon failure into :class:`InfraError` naming what was being done."""
    try:
        yield
    except (docker.errors.DockerException, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError)):
            raise
        raise InfraError(f"docker: {what} failed: {exc}") from exc


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = FIXED_MTIME
    return info


def _add_tree(tar: tarfile.TarFile, src: Path, arcname: str) -> None:
    """Add ``src`` (file or directory) as ``arcname``, entries sorted and normalised."""
    tar.add(src, arcname=arcname, recursive=False, filter=_normalise)
    if src.is_dir() and not src.is_symlink():
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel = Path(root).relative_to(src)
            for name in sorted(dirs + files):
                tar.add(
                    Path(root, name),
                    arcname=posixpath.join(arcname, *rel.parts, name),
                    recursive=False,
                    filter=_normalise,
                )


def _add_parents(tar: tarfile.TarFile, rel: str) -> None:
    """Directory entries for every folder above ``rel``, which the daemon would not make."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        info = tarfile.TarInfo("/".join(parts[:depth]))
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(_normalise(info))


def _read_exact(reader: Any, raw: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        raw.settimeout(left)
        chunk = reader.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _procs_file(init_pid: int) -> Path:
    """The ``cgroup.procs`` of the container whose PID 1 is host process ``init_pid``."""
    lines = Path(f"/proc/{init_pid}/cgroup").read_text().splitlines()
    by_controller = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            by_controller[name] = path
    if "pids" in by_controller:  # cgroup v1: the pids hierarchy holds every task
        return Path("/sys/fs/cgroup/pids", by_controller["pids"].lstrip("/"), "cgroup.procs")
    return Path("/sys/fs/cgroup", by_controller[""].lstrip("/"), "cgroup.procs")


# -------------------------------------------------------------------------- sandboxes


class DockerSandbox(StateSandbox):
    """One container. Execs run one at a time: each ends by killing every process but
    PID 1, which would take a concurrent exec's processes with it."""

    def __init__(
        self,
        backend: DockerBackend,
        container_id: str,
        root: Path,
        spec: SandboxSpec,
        stdin: Any,
        init_pid: int,
    ) -> None:
        self.backend = backend
        self.id = container_id
        self.root = root
        self.spec = spec
        self._stdin = stdin  # PID 1 lives as long as this socket is open
        self._init_pid = init_pid
        self._procs = _procs_file(init_pid)
        self._places = places(spec.workdir)
        self._closed = False
        self._close_task: asyncio.Future[None] | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _exec_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _check_open(self) -> None:
        if self._closed:
            raise InfraError(f"sandbox {self.id[:12]} is closed")

    async def exec(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        self._check_open()
        check_argv(argv, {**DETERMINISTIC_ENV, **self.spec.env, **(env or {})})
        timeout = self.spec.limits.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout!r}")
        async with self._exec_lock():
            return await self.backend._run(
                self._exec_sync, list(argv), timeout, cwd or self.spec.workdir, env, stdin
            )

    def _exec_sync(
        self,
        argv: list[str],
        timeout_s: float,
        cwd: str,
        env: Mapping[str, str] | None,
        stdin: bytes | None,
    ) -> ExecResult:
        api = self.backend._api()
        command = ["/bin/sh", "-c", _WRAPPER, "sh", cwd, *argv]
        environment = [f"{k}={v}" for k, v in env.items()] if env else None
        with _infra(f"exec in sandbox {self.id[:12]}"):
            try:
                exec_id = api.exec_create(
                    self.id, command, stdin=stdin is not None, environment=environment
                )["Id"]
            except docker.errors.APIError as exc:
                raise InfraError(f"sandbox {self.id[:12]} cannot exec: {exc}") from exc
            collector = OutputCollector(self.spec.limits.max_output_bytes)
            start = time.monotonic()
            deadline = start + timeout_s
            sock = api.exec_start(exec_id, socket=True)
            exited = threading.Event()
            watcher = threading.Thread(
                target=self._watch, args=(api, exec_id, deadline, exited), daemon=True
            )
            watcher.start()
            try:
                # The output ends when the command and all it started closed it; the
                # watcher ends it early when the command exits and leaves children.
                self._stream(sock, stdin, collector, deadline)
                watcher.join(max(0.0, deadline - time.monotonic()))
            finally:
                # Whatever the command left running, or all of it on a time out.
                self._kill_all()
                watcher.join()
                self._clear_ipc()
            timed_out = not exited.is_set()
            duration = time.monotonic() - start
            code = None if timed_out else self._exit_code(api, exec_id)
            state = api.inspect_container(self.id)["State"]
            if not state.get("Running"):
                raise InfraError(
                    f"sandbox {self.id[:12]} died during exec "
                    f"(exit {state.get('ExitCode')}, oom={state.get('OOMKilled')})"
                )
        return ExecResult(
            output=collector.text(),
            exit_code=code,
            duration_s=duration,
            timed_out=timed_out,
            truncated=collector.truncated,
            output_bytes=collector.total,
        )

    @staticmethod
    def _stream(
        sock: Any, stdin: bytes | None, collector: OutputCollector, deadline: float
    ) -> None:
        """Feed the exec's multiplexed output to ``collector`` until its end or ``deadline``."""
        raw: socket.socket = getattr(sock, "_sock", sock)
        # Read through the buffered reader that parsed the HTTP headers: output that
        # arrived together with them sits in its buffer, not in the socket.
        response = getattr(sock, "_response", None)
        try:
            reader = response.raw._fp.fp  # type: ignore[union-attr]
        except AttributeError:
            reader = sock
        writer = None
        if stdin is not None:
            writer = threading.Thread(target=_send_stdin, args=(raw, stdin), daemon=True)
            writer.start()
        try:
            while True:
                header = _read_exact(reader, raw, 8, deadline)
                if len(header) < 8:
                    return
                _, size = struct.unpack(">BxxxL", header)
                collector.feed(_read_exact(reader, raw, size, deadline))
        except TimeoutError:
            return
        finally:
            with suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
            for closeable in (response, sock):
                with suppress(OSError, ValueError, AttributeError):
                    closeable.close()  # type: ignore[union-attr]
            if writer is not None:
                writer.join(timeout=1.0)

    def _watch(
        self, api: docker.APIClient, exec_id: str, deadline: float, exited: threading.Event
    ) -> None:
        """Wait for the exec's own process to end (by ``deadline``), then kill what it
        left: the daemon names the process, the host waits on it and kills."""
        pid = 0
        while time.monotonic() < deadline:
            info = api.exec_inspect(exec_id)
            pid = info.get("Pid") or 0
            if pid or not info.get("Running"):
                break
            time.sleep(0.001)
        else:
            return  # out of time before the process was seen: the caller kills everything
        try:
            pidfd = os.pidfd_open(pid) if pid > 0 else None
        except ProcessLookupError:
            pidfd = None  # already gone
        try:
            # A pid that is no longer in this container is not the command: it has exited.
            if pidfd is not None and pid in self._pids():
                left = max(0.0, deadline - time.monotonic())
                if not select.select([pidfd], [], [], left)[0]:
                    return  # out of time: the caller kills everything
            # An exit seen only after the deadline is the time out's kill.
            if time.monotonic() <= deadline:
                exited.set()
            self._kill_all()
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _clear_ipc(self) -> None:
        """Remove the container's System V IPC objects and POSIX message queues: they
        outlive every process, so they would keep memory, and state outside the state,
        past the exec (each bwrap exec has an IPC namespace of its own)."""
        queues = Path(f"/proc/{self._init_pid}/root/dev/mqueue")
        with suppress(OSError):
            for name in os.listdir(queues):
                with suppress(OSError):
                    os.unlink(queues / name)
        # This thread joins the container's IPC namespace to look: cheap, where
        # running ipcrm after every exec would cost a process each time.
        with suppress(OSError), _ipc_namespace(self._init_pid):
            objects = [Path("/proc/sysvipc", kind).read_text() for kind in ("shm", "sem", "msg")]
            if any(text.count("\n") > 1 for text in objects):
                subprocess.run([host_tool("ipcrm"), "--all"], capture_output=True)

    def _pids(self) -> set[int]:
        """The container's processes but PID 1, as the host sees them (none once gone)."""
        try:
            return {int(p) for p in self._procs.read_text().split()} - {self._init_pid}
        except OSError:
            return set()

    def _kill_all(self) -> None:
        """SIGKILL every process of the container but PID 1, from the host."""
        for _ in range(50):
            pids = self._pids()
            if not pids:
                return
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _exit_code(api: docker.APIClient, exec_id: str) -> int | None:
        # The stream can end a moment before the daemon records the exit.
        for _ in range(200):
            info = api.exec_inspect(exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.005)
        return None

    # ------------------------------------------------------------------------ files

    def _in_place(self, path: str) -> tuple[str, str]:
        """The writable place holding ``path`` and the path relative to it.

        Archives go to a place's root, because Docker refuses to unpack at any path of
        the read-only root file system (and resolves links inside the container).
        """
        if not path.startswith("/"):
            raise ValueError(f"sandbox paths must be absolute, got {path!r}")
        norm = posixpath.normpath(path)
        for place in sorted(self._places, key=len, reverse=True):
            if norm == place or norm.startswith(place + "/"):
                return place, posixpath.relpath(norm, place)
        raise OSError(errno.EROFS, f"{path} is not in a writable place of the sandbox")

    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._check_open()
        place, rel = self._in_place(path)
        if rel == ".":
            raise IsADirectoryError(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            _add_parents(tar, rel)
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = mode
            tar.addfile(_normalise(info), io.BytesIO(data))
        await self.backend._run(self._put_sync, place, buf.getvalue())

    async def upload(self, src: Path, dest: str) -> None:
        self._check_open()
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(src)
        place, rel = self._in_place(dest)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if rel == ".":
                if not src.is_dir():
                    raise IsADirectoryError(dest)
                for child in sorted(src.iterdir()):
                    _add_tree(tar, child, child.name)
            else:
                _add_parents(tar, rel)
                _add_tree(tar, src, rel)
        await self.backend._run(self._put_sync, place, buf.getvalue())

    def _put_sync(self, place: str, archive: bytes) -> None:
        with _infra(f"copy into sandbox {self.id[:12]}"):
            self.backend._api().put_archive(self.id, place, archive)

    async def read_file(self, path: str) -> bytes:
        self._check_open()
        return await self.backend._run(self._read_sync, path)

    def _read_sync(self, path: str, depth: int = 0) -> bytes:
        with self._get_archive(path) as (tar, stat):
            if stat.get("linkTarget") and depth < 8:
                target = posixpath.join(posixpath.dirname(path), stat["linkTarget"])
                return self._read_sync(target, depth + 1)
            if stat.get("mode", 0) & _GO_MODE_DIR:
                raise IsADirectoryError(path)
            member = tar.next()
            fh = tar.extractfile(member) if member is not None else None
            if fh is None:
                raise InfraError(f"sandbox {self.id[:12]}: {path} is not a regular file")
            return fh.read()

    async def download(self, src: str, dest: Path) -> None:
        self._check_open()
        await self.backend._run(self._download_sync, src, Path(dest))

    def _download_sync(self, src: str, dest: Path) -> None:
        with self._get_archive(src) as (tar, _):
            unpack_archive(tar, dest)

    @contextmanager
    def _get_archive(self, path: str) -> Iterator[tuple[tarfile.TarFile, dict[str, Any]]]:
        with _infra(f"copy out of sandbox {self.id[:12]}"):
            try:
                chunks, stat = self.backend._api().get_archive(self.id, path)
            except docker.errors.NotFound as exc:
                raise FileNotFoundError(path) from exc
            with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
                for chunk in chunks:
                    spool.write(chunk)
                spool.seek(0)
                with tarfile.open(fileobj=spool, mode="r|") as tar:
                    yield tar, stat

    # --------------------------------------------------------------- snapshots, forks

    async def snapshot(self, keep: Sequence[str] | None = None) -> StateSnapshot:
        self._check_open()
        async with self._exec_lock():
            try:
                return await self.backend._run(
                    self.backend.store.freeze, self.root, self.spec, keep
                )
            except OSError as exc:
                raise InfraError(f"snapshot of sandbox {self.id[:12]} failed: {exc}") from exc

    # -------------------------------------------------------------------------- close

    async def close(self) -> None:
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.ensure_future(self.backend._run(self._close_sync))
        await asyncio.shield(self._close_task)

    def _close_sync(self) -> None:
        self._closed = True
        self.backend._remove_container_sync(self.id)
        _close_socket(self._stdin)
        self.backend.store.discard(self.root)


# ---------------------------------------------------------------------------- backend


@contextmanager
def _ipc_namespace(pid: int) -> Iterator[None]:
    """Run the block in the IPC namespace of process ``pid`` (this thread only)."""
    target = os.open(f"/proc/{pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc().setns(target, _CLONE_NEWIPC) != 0:
            raise OSError(ctypes.get_errno(), "setns into the container's IPC namespace")
        try:
            yield
        finally:
            if libc().setns(own, _CLONE_NEWIPC) != 0:  # never leave a pool thread there
                raise RuntimeError("cannot return to the driver's IPC namespace")
    finally:
        os.close(target)
        os.close(own)


def _close_socket(sock: Any) -> None:
    for closeable in (sock, getattr(sock, "_sock", None)):
        with suppress(OSError, AttributeError):
            closeable.close()


def _send_stdin(raw: socket.socket, data: bytes) -> None:
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the command exited without reading all of it


class DockerBackend(Backend):
    """Sandboxes as Docker containers. Task images are a kept cache; containers are
    labelled with their owner and removed with it."""

    name = "docker"

    def __init__(self, *, max_workers: int = 64, runtime_dir: Path | None = None) -> None:
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pivotgym-docker")
        self._track_lock = threading.Lock()
        # Container root is host root (Docker's own model); the state belongs to it.
        self.store = StateStore(runtime_dir or default_runtime_dir() / self.name, 0)
        self._sandboxes: dict[str, DockerSandbox | None] = {}
        self._started = False
        self._task_images: dict[tuple[Any, ...], str] = {}
        self._seeds: dict[tuple[str, str], Path | None] = {}
        self._build_locks: dict[str, asyncio.Lock] = {}
        leases.register_backend(self)

    # ------------------------------------------------------------------- availability

    @classmethod
    def available(cls) -> str | None:
        if os.geteuid() != 0:
            return "the docker backend needs root (it kills container processes from the host)"
        try:
            seccomp.docker_profile()
        except seccomp.UnsupportedArchitecture as exc:
            return str(exc)
        try:
            client = docker.from_env(timeout=10)
        except (docker.errors.DockerException, OSError) as exc:
            return f"docker daemon not reachable: {exc}"
        try:
            client.ping()
            client.api.inspect_image(BASE_IMAGE)
        except docker.errors.ImageNotFound:
            return f"base image {BASE_IMAGE} missing: run docker/build-base.sh"
        except (docker.errors.DockerException, OSError) as exc:
            return f"docker daemon not reachable: {exc}"
        finally:
            client.close()
        return None

    # ---------------------------------------------------------------------- plumbing

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                with _infra("connecting to the daemon"):
                    self._client = docker.from_env(max_pool_size=128)
            return self._client.api

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args)
        )

    @functools.cached_property
    def _owner_token(self) -> str:
        return leases.owner_token()

    def _owner(self) -> str:
        # A forked child process must not reuse its parent's token.
        token = self._owner_token
        if int(token.rsplit(":", 2)[1]) != os.getpid():
            del self.__dict__["_owner_token"]
            token = self._owner_token
        return token

    # ------------------------------------------------------------------------ images

    async def _image_for(self, spec: SandboxSpec) -> str:
        if spec.dockerfile is None:
            await self._run(
                self._images_call, "looking up the base image", require_image, BASE_IMAGE
            )
            return BASE_IMAGE
        dockerfile = Path(spec.dockerfile).resolve()
        if not dockerfile.is_file():
            raise DataError("Dockerfile not found", file=dockerfile)
        key = (str(dockerfile), await self._run(context_signature, dockerfile.parent))
        tag = self._task_images.get(key)
        if tag is not None:
            return tag
        tag = await self._run(self._images_call, "hashing a task image", task_image_tag, dockerfile)
        lock = self._build_locks.setdefault(tag, asyncio.Lock())
        async with lock:
            what = f"building {tag} from {dockerfile}"
            await self._run(self._images_call, what, build_task_image, dockerfile, tag)
        self._build_locks.pop(tag, None)  # a lock belongs to one event loop; do not keep it
        self._task_images[key] = tag
        return tag

    def _images_call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        with _infra(what):
            return fn(self._api(), *args)

    def _seed_sync(self, image: str, workdir: str) -> Path | None:
        """What the image holds at ``workdir``, unpacked once on the host (``None`` if
        nothing): the state's tmpfs is bound over that folder, so a fresh sandbox's
        workdir starts from this copy. Cached by image id across processes."""
        api = self._api()
        with _infra(f"inspecting {image}"):
            image_id = api.inspect_image(image)["Id"]
        key = (image_id, workdir)
        if key in self._seeds:
            return self._seeds[key]
        name = hashlib.sha256(f"{image_id}\0{workdir}".encode()).hexdigest()[:24]
        seed = self.store.runtime / "images" / name
        empty = seed.with_name(name + ".empty")
        if not seed.is_dir() and not empty.exists():
            self._unpack_seed(api, image, workdir, seed, empty)
        self._seeds[key] = seed if seed.is_dir() else None
        return self._seeds[key]

    def _unpack_seed(
        self, api: docker.APIClient, image: str, workdir: str, seed: Path, empty: Path
    ) -> None:
        seed.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _infra(f"reading {workdir} of {image}"):
            container = api.create_container(image, command=["true"])["Id"]
            try:
                try:
                    chunks, _ = api.get_archive(container, workdir)
                except docker.errors.NotFound:
                    empty.touch()
                    return
                with tempfile.TemporaryDirectory(dir=seed.parent) as tmp:
                    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
                        for chunk in chunks:
                            spool.write(chunk)
                        spool.seek(0)
                        with tarfile.open(fileobj=spool, mode="r|") as tar:
                            tar.extractall(tmp, filter="tar")
                    top = Path(tmp) / posixpath.basename(posixpath.normpath(workdir))
                    if not top.is_dir() or not any(top.iterdir()):
                        empty.touch()
                        return
                    with suppress(OSError):  # another process unpacked it first
                        top.rename(seed)
            finally:
                api.remove_container(container, force=True)

    # ---------------------------------------------------------------------- sandboxes

    async def create(self, spec: SandboxSpec, *, snapshot: Snapshot | None = None) -> Sandbox:
        if not self._started:
            self._started = True
            leases.register_backend(self)
            await self._run(self.store.prepare)
            await self._run(self.reap)
        if snapshot is not None:
            snapshot = self.store.own(snapshot, self.name)
            spec = snapshot.spec
            places(spec.workdir)
            image = await self._image_for(spec)
            state_id, root = await self._run(self.store.restore, snapshot)
        else:
            places(spec.workdir)
            image = await self._image_for(spec)
            seed = await self._run(self._seed_sync, image, spec.workdir)
            state_id, root = await self._run(self.store.create, spec, seed)
        try:
            return await self._run(self._start_sync, image, spec, state_id, root)
        except BaseException:
            await self._run(self.store.discard, root)
            raise

    def _start_sync(
        self, image: str, spec: SandboxSpec, state_id: str, root: Path
    ) -> DockerSandbox:
        api = self._api()
        limits = spec.limits
        labels = {leases.LABEL: self._owner(), SANDBOX_LABEL: state_id}
        labels.update({USER_LABEL_PREFIX + k: v for k, v in spec.labels.items()})
        file_limit = limits.disk_mb * 1024 * 1024
        binds = {
            str(root / sub): {"bind": inside, "mode": "rw"}
            for inside, sub in places(spec.workdir).items()
        }
        host_config = api.create_host_config(
            network_mode="bridge" if limits.network else "none",
            mem_limit=f"{limits.memory_budget_mb}m",
            memswap_limit=f"{limits.memory_budget_mb}m",
            pids_limit=limits.max_processes,
            nano_cpus=int(limits.cpus * 1e9),
            ulimits=[docker.types.Ulimit(name="fsize", soft=file_limit, hard=file_limit)],
            read_only=True,
            binds=binds,
            ipc_mode="private",
            cap_drop=["ALL"],
            cap_add=list(seccomp.CAPABILITIES),
            security_opt=["no-new-privileges", f"seccomp={seccomp.docker_profile()}"],
            log_config=docker.types.LogConfig(type="none"),
            auto_remove=True,
        )
        host_config["ReadonlyPaths"] = _READONLY_PATHS
        host_config["MaskedPaths"] = _MASKED_PATHS
        with _infra(f"starting a container of {image}"):
            container_id = api.create_container(
                image,
                command=_IDLE_PID1,
                hostname="sandbox",
                stdin_open=True,  # with attach, Docker closes it when the driver goes
                environment={**DETERMINISTIC_ENV, **spec.env},
                working_dir=spec.workdir,
                labels=labels,
                host_config=host_config,
                name=f"pivotgym-{uuid.uuid4().hex[:12]}",
            )["Id"]
            with self._track_lock:
                self._sandboxes[container_id] = None
            stdin = None
            try:
                stdin = api.attach_socket(container_id, params={"stdin": 1, "stream": 1})
                api.start(container_id)
                init_pid = int(api.inspect_container(container_id)["State"]["Pid"])
                sandbox = DockerSandbox(self, container_id, root, spec, stdin, init_pid)
            except BaseException:
                self._remove_container_sync(container_id)
                if stdin is not None:
                    _close_socket(stdin)
                raise
        with self._track_lock:
            self._sandboxes[container_id] = sandbox
        return sandbox

    # ----------------------------------------------------------------------- cleanup

    def _remove_container_sync(self, container_id: str) -> None:
        with _infra(f"removing container {container_id[:12]}"), suppress(docker.errors.NotFound):
            try:
                self._api().remove_container(container_id, force=True, v=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: auto-removal already under way
                    raise
        with self._track_lock:
            self._sandboxes.pop(container_id, None)

    def reap(self) -> int:
        api = self._api()
        removed = 0
        with _infra("listing leftovers of dead owners"):
            for c in api.containers(all=True, filters={"label": leases.LABEL}):
                if not leases.owner_alive((c.get("Labels") or {}).get(leases.LABEL, "")):
                    try:
                        api.remove_container(c["Id"], force=True, v=True)
                        removed += 1
                    except (docker.errors.NotFound, docker.errors.APIError):
                        pass  # removed by Docker itself meanwhile
        return removed + self.store.reap()

    def close_all_sync(self) -> None:
        with self._track_lock:
            containers = list(self._sandboxes)
            sandboxes = [s for s in self._sandboxes.values() if s is not None]
            self._sandboxes.clear()
        for sandbox in sandboxes:
            sandbox._closed = True
        if containers:
            self._remove_containers(containers)
        for sandbox in sandboxes:
            _close_socket(sandbox._stdin)
            with suppress(Exception):
                self.store.discard(sandbox.root)
        self.store.discard_snapshots()

    @staticmethod
    def _remove_containers(containers: list[str]) -> None:
        try:
            # A fresh client: this may run in a signal handler that interrupted a request
            # on the shared one.
            client = docker.from_env(timeout=30)
        except Exception:
            return
        api = client.api

        def remove_container(container_id: str) -> None:
            with suppress(Exception):
                api.remove_container(container_id, force=True, v=True)

        try:
            # Plain threads: executors refuse new work once interpreter shutdown began,
            # which is exactly when atexit runs this.
            threads = [threading.Thread(target=remove_container, args=(c,)) for c in containers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            client.close()


__all__ = ["DockerBackend", "DockerSandbox"]
