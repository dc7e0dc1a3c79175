"""Docker sandbox backend: one container per sandbox, ``docker commit`` for snapshots.

Every sandbox is a container of the local image ``pivotgym/base:bookworm`` (built without
any registry by ``docker/build-base.sh``), or of a task image built from a task's own
Dockerfile on top of it. Images are never pulled. A container has no network unless
the limits allow it, a memory cgroup without swap, a process-count cgroup and a
file-size rlimit; its filesystem is a private copy-on-write layer, so nothing a command
does reaches the host.

PID 1 of a container is a bash loop blocked in ``read`` on a stdin that never delivers:
it never forks (a fork bomb cannot starve it), the kernel does not deliver SIGKILL to a
namespace's init from inside, and bash reaps every orphan it inherits. That lets each
exec end with ``kill -9 -1``, which removes whatever the command left running without
touching PID 1.

Blocking SDK calls run on a thread pool owned by the backend (the default executor of
asyncio has too few threads on a small machine for eight forks that exec at once).
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import posixpath
import socket
import struct
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
from pivotgym.sandbox.docker_images import (
    BASE_IMAGE,
    build_task_image,
    context_signature,
    require_image,
    task_image_tag,
)

SNAPSHOT_REPOSITORY = "pivotgym/snapshot"
SANDBOX_LABEL = "pivotgym.sandbox"
USER_LABEL_PREFIX = "pivotgym.label."

# Files copied or written into a sandbox get this mtime and owner root, so that ``ls -l``
# and archive listings replay byte-for-byte.
FIXED_MTIME = int(DETERMINISTIC_ENV["SOURCE_DATE_EPOCH"])

# How long past its own time limit an exec may run before the host gives up on the
# in-container ``timeout`` and kills from outside.
HOST_GRACE_S = 10.0

_IDLE_PID1 = [
    "/bin/bash",
    "-c",
    "trap '' HUP INT QUIT TERM USR1 USR2; while :; do read -r _ || sleep 60; done",
]

# Runs every exec: $1 is the working directory, $2 the time limit, the rest the command.
# stderr joins stdout before anything runs, so output keeps the order it was written in.
# ``--foreground`` keeps ``timeout`` out of a process group of its own, so it cannot kill
# itself; the ``kill -9 -1`` loop afterwards takes every process but PID 1 and this shell
# (repeated because a fork bomb may spawn while the first pass runs).
_WRAPPER = (
    'exec 2>&1; cd "$1" || exit 1; t=$2; shift 2; '
    'timeout --foreground -s KILL "$t" "$@"; rc=$?; '
    "for _ in 1 2 3 4 5 6 7 8; do kill -9 -1 2>/dev/null || break; done; "
    "exit $rc"
)

_GO_MODE_DIR = 1 << 31

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


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return _normalise(info)


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


def _archive_path(path: str) -> str:
    """An absolute sandbox path as a member name of an archive extracted at ``/``."""
    if not path.startswith("/"):
        raise ValueError(f"sandbox paths must be absolute, got {path!r}")
    rel = posixpath.normpath(path).lstrip("/")
    if not rel or rel == ".":
        raise ValueError(f"cannot write over the sandbox root: {path!r}")
    return rel


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


# -------------------------------------------------------------------------- snapshots


class DockerSnapshot(Snapshot):
    """A committed image. Its removal waits until the last container started from it
    is closed, because Docker refuses to delete an image a container still uses."""

    def __init__(self, backend: DockerBackend, image_id: str, spec: SandboxSpec) -> None:
        self.backend = backend
        self.id = image_id
        self.spec = spec
        self.users = 0
        self.released = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.users == 0:
            await self.backend._run(self.backend._remove_image_sync, self.id)

    async def _user_closed(self) -> None:
        self.users -= 1
        if self.released and self.users == 0:
            await self.backend._run(self.backend._remove_image_sync, self.id)


# -------------------------------------------------------------------------- sandboxes


class DockerSandbox(Sandbox):
    """One container. Execs run one at a time: each ends by killing every process but
    PID 1, which would take a concurrent exec's processes with it."""

    def __init__(
        self,
        backend: DockerBackend,
        container_id: str,
        spec: SandboxSpec,
        origin: DockerSnapshot | None,
    ) -> None:
        self.backend = backend
        self.id = container_id
        self.spec = spec
        self._origin = origin
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
        if not argv:
            raise ValueError("exec needs a command")
        self._check_open()
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
        # ``timeout 0`` would mean no limit at all.
        limit = f"{max(timeout_s, 0.001):.3f}"
        command = ["/bin/sh", "-c", _WRAPPER, "sh", cwd, limit, *argv]
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
            guard_tripped = self._stream(
                api, exec_id, stdin, collector, start + timeout_s + HOST_GRACE_S
            )
            duration = time.monotonic() - start
            if guard_tripped:
                self._kill_all(api)
                code = None
            else:
                code = self._exit_code(api, exec_id)
            if code is None or code == 137 or not 0 <= code < 256:
                # The command was killed: by its time limit, by the OOM killer, or because
                # the whole container went away. Only the last is the harness's fault.
                state = api.inspect_container(self.id)["State"]
                if not state.get("Running"):
                    raise InfraError(
                        f"sandbox {self.id[:12]} died during exec "
                        f"(exit {state.get('ExitCode')}, oom={state.get('OOMKilled')})"
                    )
        # ``timeout -s KILL`` exits 137 like any command killed by SIGKILL; only the
        # clock tells a time out from, say, the OOM killer.
        timed_out = guard_tripped or (code == 137 and duration >= timeout_s)
        return ExecResult(
            output=collector.text(),
            exit_code=None if timed_out else code,
            duration_s=duration,
            timed_out=timed_out,
            truncated=collector.truncated,
            output_bytes=collector.total,
        )

    @staticmethod
    def _stream(
        api: docker.APIClient,
        exec_id: str,
        stdin: bytes | None,
        collector: OutputCollector,
        deadline: float,
    ) -> bool:
        """Feed the exec's multiplexed output to ``collector``; True if the host deadline hit."""
        sock = api.exec_start(exec_id, socket=True)
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
                    return False
                _, size = struct.unpack(">BxxxL", header)
                collector.feed(_read_exact(reader, raw, size, deadline))
        except TimeoutError:
            return True
        finally:
            with suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
            for closeable in (response, sock):
                with suppress(OSError, ValueError, AttributeError):
                    closeable.close()  # type: ignore[union-attr]
            if writer is not None:
                writer.join(timeout=1.0)

    @staticmethod
    def _exit_code(api: docker.APIClient, exec_id: str) -> int | None:
        # The stream can end a moment before the daemon records the exit.
        for _ in range(50):
            info = api.exec_inspect(exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.01)
        return None

    def _kill_all(self, api: docker.APIClient) -> None:
        exec_id = api.exec_create(self.id, ["/bin/sh", "-c", "kill -9 -1"])["Id"]
        api.exec_start(exec_id)

    # ------------------------------------------------------------------------ files

    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._check_open()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(_archive_path(path))
            info.size = len(data)
            info.mode = mode
            tar.addfile(_normalise(info), io.BytesIO(data))
        await self.backend._run(self._put_sync, buf.getvalue())

    async def upload(self, src: Path, dest: str) -> None:
        self._check_open()
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(src)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            _add_tree(tar, src, _archive_path(dest))
        await self.backend._run(self._put_sync, buf.getvalue())

    def _put_sync(self, archive: bytes) -> None:
        with _infra(f"copy into sandbox {self.id[:12]}"):
            self.backend._api().put_archive(self.id, "/", archive)

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
        links: list[tuple[Path, str]] = []
        with self._get_archive(src) as (tar, _):
            for member in tar:
                parts = Path(member.name).parts[1:]
                if Path(member.name).is_absolute() or ".." in parts:
                    continue
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as fh, open(target, "wb") as out:  # type: ignore[union-attr]
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            out.write(block)
                    target.chmod(member.mode & 0o777)
                elif member.issym():
                    links.append((target, member.linkname))
        # Links last, so that no file above was written through one of them.
        for target, linkname in links:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(linkname)

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

    async def snapshot(self) -> Snapshot:
        self._check_open()
        async with self._exec_lock():
            image_id = await self.backend._run(self._commit_sync)
        return DockerSnapshot(self.backend, image_id, self.spec)

    def _commit_sync(self) -> str:
        labels = {leases.LABEL: self.backend._owner(), SANDBOX_LABEL: "snapshot"}
        with _infra(f"snapshot of sandbox {self.id[:12]}"):
            image_id = self.backend._api().commit(
                self.id,
                repository=SNAPSHOT_REPOSITORY,
                tag=uuid.uuid4().hex[:16],
                conf={"Labels": labels},
            )["Id"]
        self.backend._track_image(image_id)
        return image_id

    # -------------------------------------------------------------------------- close

    async def close(self) -> None:
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        await self.backend._run(self.backend._remove_container_sync, self.id)
        if self._origin is not None:
            await self._origin._user_closed()


# ---------------------------------------------------------------------------- backend


def _send_stdin(raw: socket.socket, data: bytes) -> None:
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the command exited without reading all of it


class DockerBackend(Backend):
    """Sandboxes as Docker containers. Task images are a kept cache; containers and
    snapshot images are labelled with their owner and removed with it."""

    name = "docker"

    def __init__(self, *, max_workers: int = 64) -> None:
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pivotgym-docker")
        self._track_lock = threading.Lock()
        self._sandboxes: dict[str, DockerSandbox | None] = {}
        self._images: set[str] = set()  # snapshot images not yet removed
        self._doomed: set[str] = set()  # released snapshot images Docker still refuses to drop
        self._started = False
        self._task_images: dict[tuple[Any, ...], str] = {}
        self._build_locks: dict[str, asyncio.Lock] = {}
        leases.register_backend(self)

    # ------------------------------------------------------------------- availability

    @classmethod
    def available(cls) -> str | None:
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

    def _track_image(self, image_id: str) -> None:
        with self._track_lock:
            self._images.add(image_id)

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

    # ---------------------------------------------------------------------- sandboxes

    async def create(self, spec: SandboxSpec, *, snapshot: Snapshot | None = None) -> Sandbox:
        if not self._started:
            self._started = True
            leases.register_backend(self)
            await self._run(self.reap)
        origin: DockerSnapshot | None = None
        if snapshot is not None:
            if not isinstance(snapshot, DockerSnapshot):
                raise TypeError(f"not a docker snapshot: {snapshot!r}")
            if snapshot.released:
                raise ValueError(f"snapshot {snapshot.id[:19]} was released")
            origin, spec, image = snapshot, snapshot.spec, snapshot.id
            origin.users += 1
        else:
            image = await self._image_for(spec)
        try:
            container_id = await self._run(self._start_sync, image, spec, snapshot is None)
        except BaseException:
            if origin is not None:
                await origin._user_closed()
            raise
        sandbox = DockerSandbox(self, container_id, spec, origin)
        with self._track_lock:
            self._sandboxes[container_id] = sandbox
        return sandbox

    def _start_sync(self, image: str, spec: SandboxSpec, fresh: bool) -> str:
        api = self._api()
        limits = spec.limits
        labels = {leases.LABEL: self._owner(), SANDBOX_LABEL: "1"}
        labels.update({USER_LABEL_PREFIX + k: v for k, v in spec.labels.items()})
        file_limit = limits.disk_mb * 1024 * 1024
        host_config = api.create_host_config(
            network_mode="bridge" if limits.network else "none",
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            pids_limit=limits.max_processes,
            ulimits=[docker.types.Ulimit(name="fsize", soft=file_limit, hard=file_limit)],
            security_opt=["no-new-privileges"],
        )
        with _infra(f"starting a container of {image}"):
            container_id = api.create_container(
                image,
                command=_IDLE_PID1,
                hostname="sandbox",
                stdin_open=True,
                environment={**DETERMINISTIC_ENV, **spec.env},
                working_dir=spec.workdir,
                labels=labels,
                host_config=host_config,
                name=f"pivotgym-{uuid.uuid4().hex[:12]}",
            )["Id"]
            with self._track_lock:
                self._sandboxes[container_id] = None
            try:
                if fresh:
                    api.put_archive(container_id, "/", self._workdir_archive(spec))
                api.start(container_id)
            except BaseException:
                self._remove_container_sync(container_id)
                raise
        return container_id

    @staticmethod
    def _workdir_archive(spec: SandboxSpec) -> bytes:
        """The workdir and a copy of ``spec.files`` as one archive extracted at ``/``."""
        workdir = _archive_path(spec.workdir)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.addfile(_dir_info(workdir))
            if spec.files is not None:
                files = Path(spec.files)
                if not files.is_dir():
                    raise DataError("sandbox files must be a directory", file=files)
                for entry in sorted(files.iterdir()):
                    if entry.name == IMAGE_RECIPE:
                        continue
                    _add_tree(tar, entry, posixpath.join(workdir, entry.name))
        return buf.getvalue()

    # ----------------------------------------------------------------------- cleanup

    def _remove_container_sync(self, container_id: str) -> None:
        with _infra(f"removing container {container_id[:12]}"), suppress(docker.errors.NotFound):
            self._api().remove_container(container_id, force=True, v=True)
        with self._track_lock:
            self._sandboxes.pop(container_id, None)

    def _remove_image_sync(self, image_id: str) -> None:
        """Remove a snapshot image now if Docker allows it, else after its children go."""
        with self._track_lock:
            self._doomed.add(image_id)
        progress = True
        while progress:
            with self._track_lock:
                doomed = sorted(self._doomed)
            progress = False
            for candidate in doomed:
                progress |= self._try_remove_image(candidate)

    def _try_remove_image(self, image_id: str) -> bool:
        try:
            self._api().remove_image(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                return False  # the parent of another snapshot: retried when that one goes
            raise InfraError(f"docker: removing image {image_id[:19]} failed: {exc}") from exc
        except (docker.errors.DockerException, OSError) as exc:
            raise InfraError(f"docker: removing image {image_id[:19]} failed: {exc}") from exc
        with self._track_lock:
            self._doomed.discard(image_id)
            self._images.discard(image_id)
        return True

    def reap(self) -> int:
        api = self._api()
        removed = 0
        with _infra("listing leftovers of dead owners"):
            for c in api.containers(all=True, filters={"label": leases.LABEL}):
                if not leases.owner_alive((c.get("Labels") or {}).get(leases.LABEL, "")):
                    try:
                        api.remove_container(c["Id"], force=True, v=True)
                        removed += 1
                    except docker.errors.NotFound:
                        pass
            images = [
                i
                for i in api.images(filters={"label": leases.LABEL})
                if not leases.owner_alive((i.get("Labels") or {}).get(leases.LABEL, ""))
            ]
        # Newest first: a snapshot of a restored snapshot must go before its parent.
        for image in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
            try:
                api.remove_image(image["Id"], force=True)
                removed += 1
            except docker.errors.ImageNotFound:
                pass
            except (docker.errors.APIError, OSError):
                pass  # in use by a live owner's container, or a child is left: next time
        return removed

    def close_all_sync(self) -> None:
        try:
            with self._track_lock:
                containers = list(self._sandboxes)
                sandboxes = [s for s in self._sandboxes.values() if s is not None]
                images = set(self._images) | set(self._doomed)
                self._sandboxes.clear()
                self._images.clear()
                self._doomed.clear()
            for sandbox in sandboxes:
                sandbox._closed = True
            if not containers and not images:
                return
            # A fresh client: this may run in a signal handler that interrupted a request
            # on the shared one.
            client = docker.from_env(timeout=30)
            api = client.api
        except Exception:
            return

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
            left = set(images)
            for _ in range(len(left)):
                for image_id in sorted(left):
                    try:
                        api.remove_image(image_id, force=True)
                        left.discard(image_id)
                    except docker.errors.ImageNotFound:
                        left.discard(image_id)
                    except Exception:
                        pass
                if not left:
                    break
        except Exception:
            pass
        finally:
            client.close()
