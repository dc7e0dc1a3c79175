"""Bubblewrap sandboxes: the host's userland read-only, a private state, no network.

Each sandbox owns a state (see :mod:`pivotgym.sandbox.state`): a quota'd tmpfs on the
host whose folders are bound at the workdir, ``/tmp``, ``/root``, ``/logs``,
``/tests``, ``/run/pivotgym`` and ``/dev/shm``. Everything else is read-only, so state
lives only where snapshots and forks see it.

Every exec is a fresh ``bwrap`` with all namespaces unshared (user, mount, pid, net,
ipc, uts, cgroup). Its privileges, deliberately:

- bwrap runs as an unprivileged host user (:func:`sandbox_uid`; the driver's own user
  when the driver is not root), which is root inside its user namespace and nobody
  outside it: the read-only binds are locked, host files it can see belong to an
  unmapped user, and a file it creates on the host belongs to that user;
- it keeps only the file-ownership capabilities (:data:`seccomp.CAPABILITIES`), which
  reach only files of its own user, under a seccomp filter (:mod:`.seccomp`) that
  denies mounts, namespaces, ptrace and the kernel's wider surface;
- its environment is the sandbox's own fixed one, never the driver's, and its options
  reach it through a file descriptor (``--args``), so ``/proc/1`` inside shows neither.

Limits: memory, process count and CPU by a per-sandbox cgroup, which a root shell joins
before it drops to the sandbox's user and starts bwrap (so no process of the exec is
ever outside it), or by rlimits where cgroups are not writable; the size of one file
by ``RLIMIT_FSIZE``; the state as a whole by its tmpfs. When the command exits, its pid
namespace dies and takes every child with it, so nothing outlives an exec.

The command is started through a launcher that writes one marker byte to the output
before it execs the command: output without the marker means bwrap itself failed (an
infrastructure error), and no command can write before its own launcher did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from pivotgym.errors import InfraError
from pivotgym.sandbox import leases, seccomp
from pivotgym.sandbox.base import (
    DETERMINISTIC_ENV,
    PYTHON_STARTUP,
    Backend,
    ExecResult,
    OutputCollector,
    SandboxSpec,
    Snapshot,
    check_argv,
)
from pivotgym.sandbox.cgroups import CgroupLayout, controller, group_name, group_owner_alive
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

# The parts of the host's /etc that programs need (see _shared_etc); the rest
# (credentials, host config) stays invisible.
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
# The launcher's first byte of output. bwrap's own messages start with "bwrap: ".
_MARKER = b"\x00"
# Joins the cgroups its first argument counts, then execs the rest; exit 125 (so no
# marker: an infrastructure failure) if a join fails.
_JOIN = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; '
    'n=$((n-1)); done; exec "$@"'
)
# Default host user of sandboxes when the driver is root: far above any user a system
# allocates, so it owns nothing on the host but the sandboxes' own files.
DEFAULT_SANDBOX_UID = 2_000_000_000


def _copy_etc(into: Path) -> None:
    """Copy the host's /etc entries that sandboxes see (:data:`_ETC`) into ``into``, which
    is bound as their /etc: one mount instead of two for each entry, which saves about
    7 ms of every exec (bwrap makes each mount in a copy of the host's whole mount
    table). The host's private TLS keys are left out."""
    entries = [f"/etc/{name}" for name in _ETC if os.path.lexists(f"/etc/{name}")]
    subprocess.run([host_tool("cp"), "-a", "--", *entries, f"{into}/"], check=True)
    shutil.rmtree(into / "ssl" / "private", ignore_errors=True)
    # Debian's interpreters import ``sitecustomize`` from /etc/python3.X (a link in the
    # standard library's folder): ours replaces the host's there.
    for folder in into.glob("python3.*"):
        if folder.is_dir():
            (folder / "sitecustomize.py").unlink(missing_ok=True)
            shutil.copyfile(PYTHON_STARTUP / "sitecustomize.py", folder / "sitecustomize.py")
    into.chmod(0o755)


def sandbox_uid() -> int:
    """The host user sandboxes run as: ``PIVOTGYM_SANDBOX_UID``, else
    :data:`DEFAULT_SANDBOX_UID` for a root driver, else the driver's own user."""
    if os.geteuid() != 0:
        return os.getuid()
    configured = os.environ.get("PIVOTGYM_SANDBOX_UID")
    uid = int(configured) if configured else DEFAULT_SANDBOX_UID
    if uid == 0:
        raise InfraError("PIVOTGYM_SANDBOX_UID must not be 0: sandboxes never run as host root")
    return uid


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _child_pid(fd: int) -> int | None:
    """The namespace init's pid from bwrap's ``--info-fd`` report in the pipe ``fd``
    (read without waiting), if bwrap got that far."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    try:
        return int(json.loads(b"".join(chunks))["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


# Outer bwrap processes this process spawned and has not waited for yet (any backend).
_in_flight: set[int] = set()


def _reap_adopted() -> int:
    """Wait for finished bwrap processes this process adopted as a subreaper but never
    spawned: namespace inits of a child process that died before it could wait for
    them (a killed driver). Returns how many."""
    reaped = 0
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in _in_flight:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        state, ppid = rest.split()[:2]
        if name == "bwrap" and state == "Z" and ppid == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)
                reaped += 1
    return reaped


async def _reap_namespace_init(child: int) -> None:
    """Wait for the sandbox's pid-namespace init, which bwrap leaves behind as an orphan.

    bwrap exits as soon as its namespace init reports the command's status, before that
    init has exited; the orphan is re-parented to this process (a child subreaper, see
    ``BwrapBackend``) and must be waited for here, or zombies pile up.
    """
    with contextlib.suppress(ChildProcessError):
        await asyncio.to_thread(os.waitpid, child, 0)


class BwrapSandbox(StateSandbox):
    def __init__(self, backend: BwrapBackend, sandbox_id: str, root: Path, spec: SandboxSpec):
        self.backend = backend
        self.id = sandbox_id
        self.root = root
        self.spec = spec
        self.group = group_name(sandbox_id, backend.store.owner)
        self._closed = False
        self._procs: set[int] = set()
        self._places = places(spec.workdir)

    @property
    def closed(self) -> bool:
        return self._closed

    def _options(self, cwd: str) -> list[str]:
        limits = self.spec.limits
        cmd = ["--unshare-all", "--die-with-parent", "--new-session"]
        cmd += ["--unshare-user", "--uid", "0", "--gid", "0", "--hostname", "sandbox"]
        for cap in seccomp.CAPABILITIES:
            cmd += ["--cap-add", f"CAP_{cap}"]
        if limits.network:
            cmd += ["--share-net"]
        cmd += ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                cmd += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                cmd += ["--ro-bind", f"/{link}", f"/{link}"]
        cmd += ["--ro-bind", str(self.backend.etc), "/etc"]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--symlink", "/tmp", "/var/tmp"]
        for inside, sub in self._places.items():
            cmd += ["--bind", str(self.root / sub), inside]
        # bwrap's /dev and root are scratch tmpfs mounts: a write there would succeed,
        # escape the disk quota and vanish with the exec, so it fails loudly instead.
        cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", cwd]
        return cmd

    def _argv(
        self, argv: Sequence[str], cwd: str, info_fd: int | None = None
    ) -> tuple[list[str], list[int]]:
        """The host command line of one exec, and the descriptors made for it (the caller
        closes them once it started); ``info_fd`` receives bwrap's namespace report."""
        # The options (host paths among them) reach bwrap through a descriptor, so that
        # its command line, which the sandbox can read as /proc/1/cmdline, shows only
        # the command.
        options = b"".join(o.encode("utf-8", "surrogateescape") + b"\0" for o in self._options(cwd))
        args_fd = _memfd("bwrap-args", options)
        filter_fd = _memfd("bwrap-seccomp", seccomp.bpf_program())
        bwrap = [host_tool("bwrap"), "--seccomp", str(filter_fd), "--args", str(args_fd)]
        if info_fd is not None:
            bwrap += ["--info-fd", str(info_fd)]
        bwrap += ["--", "/bin/sh", "-c", self._launcher(), "sh", *argv]
        return [*self.backend._host_prefix(self), *bwrap], [args_fd, filter_fd]

    def _launcher(self) -> str:
        """The script that starts every command: rlimits, then the marker, then exec.

        The rlimits are set here, by the sandbox's own first process, because the driver
        may lack the capability to set another user's; nothing inside can raise them
        again (no CAP_SYS_RESOURCE). A limit that cannot be set leaves no marker.
        """
        limits = self.spec.limits
        settings = [f"ulimit -f {limits.disk_mb * 2048}"]  # 512-byte blocks
        if self.backend.cgroups is None:
            settings += [
                f"ulimit -v {limits.memory_mb * 1024}",
                f"ulimit -p {limits.max_processes}",
            ]
        return " && ".join(settings) + " || exit 125; printf '\\000'; exec \"$@\""

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
        check_argv(argv, full_env)
        info_read, info_write = os.pipe()
        command, fds = self._argv(argv, cwd or self.spec.workdir, info_write)
        out = collector or OutputCollector(limit)
        start = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(*fds, info_write),
                env=full_env,
            )
        except OSError as exc:
            os.close(info_read)
            raise InfraError(f"cannot start bwrap: {exc}") from exc
        except BaseException:
            os.close(info_read)
            raise
        finally:
            for fd in (*fds, info_write):
                os.close(fd)
        self._procs.add(proc.pid)
        _in_flight.add(proc.pid)
        timed_out = False
        started: list[bool] = []  # whether the output began with the launcher's marker

        async def pump() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                if not started:
                    started.append(chunk[:1] == _MARKER)
                    chunk = chunk[1:] if started[0] else chunk
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
                self.backend.cgroups.kill(self.group)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            # asyncio reports the exit only once the pipe is at EOF, and a flooded reader
            # has paused reading: drain what is left so the EOF is seen.
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                if not started:
                    started.append(chunk[:1] == _MARKER)
            await proc.wait()
            self._procs.discard(proc.pid)
            _in_flight.discard(proc.pid)
            # bwrap wrote the namespace init's pid as it started; the pipe holds it.
            child = _child_pid(info_read)
            os.close(info_read)
            if child is not None:
                await _reap_namespace_init(child)
        duration = time.perf_counter() - start
        if not timed_out and not (started and started[0]):
            raise InfraError(f"sandbox {self.id}: bwrap failed: {out.text().strip()[:500]}")
        code = proc.returncode
        if timed_out:
            code = None
        elif code is not None and code < 0:
            code = 128 - code
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
        # --no-same-owner: the files belong to the sandbox's root, whoever owned them here.
        script = 'mkdir -p -- "$1" && tar -x -m --no-same-owner -C "$1" -f -'
        await self._transfer(["sh", "-c", script, "sh", dest], stdin=buf.getvalue())

    async def download(self, src: str, dest: Path) -> None:
        script = 'cd -- "$(dirname -- "$1")" && tar -c -f - -- "$(basename -- "$1")"'
        data = await self._transfer(["sh", "-c", script, "sh", src])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            await asyncio.to_thread(unpack_archive, tar, dest)

    async def snapshot(self, keep: Sequence[str] | None = None) -> StateSnapshot:
        if self._closed:
            raise InfraError(f"sandbox {self.id} is closed")
        try:
            return await asyncio.to_thread(self.backend.store.freeze, self.root, self.spec, keep)
        except OSError as exc:
            raise InfraError(f"snapshot of {self.id} failed: {exc}") from exc

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
            self.backend.cgroups.remove(self.group)
        self.backend._sandboxes.pop(self.id, None)
        self.backend.store.discard(self.root)


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
        self.uid = sandbox_uid()
        self.store = StateStore(runtime_dir or default_runtime_dir() / self.name, self.uid)
        self.cgroups: CgroupLayout | None = controller()
        # As root, bwrap drops to the sandbox user; as anyone else it runs as them.
        self.credentials: dict[str, object] = (
            {"user": self.uid, "group": self.uid, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        self._sandboxes: dict[str, BwrapSandbox] = {}
        self._started = False
        self.etc: Path | None = None  # the /etc sandboxes see, made at the first start
        self._start_lock = threading.Lock()
        leases.register_backend(self)

    @property
    def runtime(self) -> Path:
        return self.store.runtime

    @property
    def quota(self) -> bool:
        return self.store.quota

    @classmethod
    @functools.cache
    def available(cls) -> str | None:
        if shutil.which("bwrap") is None:
            return "bwrap is not installed (apt-get install bubblewrap)"
        try:
            seccomp.bpf_program()
        except seccomp.UnsupportedArchitecture as exc:
            return str(exc)
        # --as-pid-1: bwrap waits for the probe itself, so no namespace init is orphaned.
        probe = subprocess.run(
            [
                "bwrap",
                "--unshare-all",
                "--unshare-user",
                "--as-pid-1",
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
            user=sandbox_uid() if os.geteuid() == 0 else None,
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
            libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            self.store.prepare()
            self.reap()
            self.etc = self.store.scratch(size_mb=64, files=8192)
            _copy_etc(self.etc)
            leases.register_backend(self)

    def _host_prefix(self, sandbox: BwrapSandbox) -> list[str]:
        """What runs on the host before bwrap: as root, a shell that moves itself into
        the sandbox's cgroups (so bwrap and all it starts are in them from the first
        instant), then ``setpriv`` down to the sandbox's user. The spawn itself changes
        no credentials, so it can vfork: forking this large process for every exec
        would cost milliseconds on the event loop."""
        prefix: list[str] = []
        if self.cgroups is not None:
            procs = [str(p) for p in self.cgroups.procs_files(sandbox.group)]
            prefix += [host_tool("sh"), "-c", _JOIN, "sh", str(len(procs)), *procs]
        if os.geteuid() == 0:
            prefix += [host_tool("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}"]
            prefix += ["--clear-groups", "--"]
        return prefix

    def _create_sync(self, spec: SandboxSpec, snapshot: StateSnapshot | None) -> BwrapSandbox:
        self._ensure_started()
        try:
            places(spec.workdir)
            if snapshot is not None:
                sandbox_id, root = self.store.restore(snapshot)
            else:
                sandbox_id, root = self.store.create(spec)
        except ValueError:
            raise
        except Exception as exc:
            raise InfraError(f"cannot create bwrap sandbox: {exc}") from exc
        sandbox = BwrapSandbox(self, sandbox_id, root, spec)
        try:
            if self.cgroups is not None:
                limits = spec.limits
                self.cgroups.create(
                    sandbox.group, limits.memory_budget_mb, limits.max_processes, limits.cpus
                )
        except Exception as exc:
            if self.cgroups is not None:
                self.cgroups.remove(sandbox.group)
            self.store.discard(root)
            raise InfraError(f"cannot create bwrap sandbox: {exc}") from exc
        self._sandboxes[sandbox_id] = sandbox
        return sandbox

    async def create(self, spec: SandboxSpec, *, snapshot: Snapshot | None = None) -> BwrapSandbox:
        if snapshot is not None:
            snapshot = self.store.own(snapshot, self.name)
            spec = snapshot.spec
        return await asyncio.to_thread(self._create_sync, spec, snapshot)

    def reap(self) -> int:
        # A group names its owner, so it is found even when its state is already gone
        # (a crash between the two removals) or lives in another runtime directory.
        removed = self.store.reap()
        _reap_adopted()
        if self.cgroups is not None:
            for name in self.cgroups.names():
                if not group_owner_alive(name):
                    self.cgroups.remove(name)
        return removed

    def close_all_sync(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            with contextlib.suppress(Exception):
                sandbox._close_sync()
        self.store.discard_snapshots()
        with self._start_lock:
            if self.etc is not None:
                with contextlib.suppress(Exception):
                    self.store.discard(self.etc)
            self.etc, self._started = None, False
