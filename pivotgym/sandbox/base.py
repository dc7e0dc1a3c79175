"""The sandbox protocol shared by every backend.

A sandbox is an isolated place to run model-written commands: a private writable
working directory, home and /tmp over a read-only userland, no network unless allowed,
and limits on every exec. Backends (``bwrap``, ``docker``) implement :class:`Sandbox`
and :class:`Backend`; everything above them (environments, replay, verifiers) speaks
only this protocol. What a sandbox promises against a hostile command, and how each
promise is tested, is in ``docs/security.md``.

Everything a command can change lives in the sandbox's *state* (see
:mod:`pivotgym.sandbox.state`): a host directory, shown inside at the workdir, ``/tmp``,
``/root``, ``/logs``, ``/tests``, ``/run/pivotgym`` and ``/dev/shm``, under one disk
quota. :meth:`Sandbox.host_dir` gives the host side of those places, so that the
harness can read a sandbox's state without running anything in it.

Lifecycle: ``Backend.create`` returns a live sandbox; ``snapshot`` freezes its state
into a :class:`Snapshot` that ``Backend.create(spec, snapshot=...)`` restores any
number of times; ``fork(n)`` is the shortcut for n independent copies of the live
state. ``close`` is idempotent. Every sandbox and snapshot is labelled with its owner
(see :mod:`pivotgym.sandbox.leases`) so a crashed driver's leftovers are reaped at the
next start.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A top-level file of this name in ``SandboxSpec.files`` describes the image; it is not
# copied into the workdir.
IMAGE_RECIPE = "Dockerfile"
TRUNCATION_MARKER = "\n[... output truncated: {dropped} more bytes ...]\n"
# One argument of exec(2) is at most MAX_ARG_STRLEN (32 pages) long, NUL included; the
# whole command line and environment stay well under ARG_MAX (a quarter of the stack).
MAX_ARG_BYTES = 131_071
MAX_ARGV_BYTES = 1 << 20
# Control characters that a terminal would act on (escape sequences, cursor moves,
# erasing) are shown in model-facing output as the Unicode symbol that pictures them
# (ESC as U+241B), one character for one, so output never grows past its limit; tab,
# newline and carriage return are text (CRLF files print as they are). C1 controls,
# which have no pictures, become U+FFFD.
_CONTROL_PICTURES = {
    **{c: 0x2400 + c for c in range(0x20) if chr(c) not in "\t\n\r"},
    0x7F: 0x2421,
    **{c: 0xFFFD for c in range(0x80, 0xA0)},
}

# Fixed clock and locale inside every sandbox, so that recorded tool outputs replay
# byte-for-byte (git commit ids depend on the commit date, sort order on the locale).
DETERMINISTIC_ENV: Mapping[str, str] = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "HOME": "/root",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "dumb",
    "SOURCE_DATE_EPOCH": "1700000000",
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "agent@pivotgym.invalid",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "agent@pivotgym.invalid",
    "GIT_AUTHOR_DATE": "2023-11-14T22:13:20Z",
    "GIT_COMMITTER_DATE": "2023-11-14T22:13:20Z",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
}

# Python's start-up hook (``sitecustomize``) that backends install in sandboxes: it seeds
# :mod:`random` from :data:`RANDOM_SEED_VAR` when a world sets that variable in
# ``SandboxSpec.env`` (see the hook's docstring).
PYTHON_STARTUP = Path(__file__).parent / "python_startup"
RANDOM_SEED_VAR = "PIVOTGYM_RANDOM_SEED"


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every exec in a sandbox.

    ``timeout_s`` bounds wall time of one exec; ``memory_mb`` and ``max_processes``
    bound what the command and all its children may hold at once; ``cpus`` is the
    share of CPU time they may use (1.0: one core's worth); ``disk_mb`` and
    ``max_files`` bound the writable state as a whole (every writable place together,
    see :mod:`pivotgym.sandbox.state`); ``max_output_bytes`` is how much of the combined
    stdout/stderr is kept (the rest is counted and dropped behind a marker); ``network``
    opens the network, which is closed by default.
    """

    timeout_s: float = 30.0
    memory_mb: int = 512
    max_processes: int = 128
    max_output_bytes: int = 16_384
    disk_mb: int = 256
    max_files: int = 16_384
    cpus: float = 1.0
    network: bool = False

    @property
    def memory_budget_mb(self) -> int:
        """What a sandbox's memory cgroup allows: ``memory_mb`` for its processes, plus
        ``disk_mb`` for its state, whose files live in memory (a tmpfs) and are charged
        to it; so a full disk never leaves the processes without memory."""
        return self.memory_mb + self.disk_mb

    def __post_init__(self) -> None:
        for name in (
            "timeout_s",
            "memory_mb",
            "max_processes",
            "max_output_bytes",
            "disk_mb",
            "max_files",
            "cpus",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class SandboxSpec:
    """What a new sandbox starts from.

    ``files`` is a host directory copied into ``workdir`` at creation (a task's
    ``environment/`` folder), less a top-level :data:`IMAGE_RECIPE`. ``dockerfile`` is
    used by image-based backends to build the sandbox's image; backends that share the
    host's userland ignore it. ``env`` adds to
    :data:`DETERMINISTIC_ENV`. ``labels`` are free-form tags recorded on the sandbox.
    """

    workdir: str = "/app"
    files: Path | None = None
    dockerfile: Path | None = None
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    """What one exec did.

    ``output`` is stdout and stderr interleaved as the command wrote them, decoded as
    UTF-8 with replacement, terminal control characters shown as the symbols that
    picture them (see :func:`escape_controls`), cut at the output limit with
    :data:`TRUNCATION_MARKER`.
    ``exit_code`` is the command's status, or ``None`` when pivotgym killed it (time out);
    a command killed by a signal reports ``128 + signal`` as a shell would.
    ``output_bytes`` counts everything the command wrote, kept or not.
    """

    output: str
    exit_code: int | None
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class OutputCollector:
    """Accumulates a stream of output up to a byte budget and counts what it drops."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._kept = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.max_bytes - self._kept
        if room > 0:
            piece = data[:room]
            self._chunks.append(piece)
            self._kept += len(piece)

    @property
    def truncated(self) -> bool:
        return self.total > self._kept

    def text(self) -> str:
        text = escape_controls(b"".join(self._chunks).decode("utf-8", errors="replace"))
        if self.truncated:
            text += TRUNCATION_MARKER.format(dropped=self.total - self._kept)
        return text


def escape_controls(text: str) -> str:
    """``text`` with every control character but tab, newline and carriage return shown
    as its picture (ESC as ␛, BEL as ␇), so that output cannot drive the terminal it is
    read on."""
    return text.translate(_CONTROL_PICTURES)


def check_argv(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Raise ``ValueError`` for a command line that exec(2) would refuse (E2BIG, or a
    NUL byte inside an argument).

    Such a command is the caller's mistake, not a failure of the sandbox, so it is
    refused before anything starts.
    """
    if not argv:
        raise ValueError("exec needs a command")
    total = 0
    for arg in argv:
        if "\0" in arg:
            raise ValueError("an argument holds a NUL byte, which exec cannot pass")
        size = len(arg.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG_BYTES:
            raise ValueError(
                f"an argument of {size:,} bytes is over the limit of {MAX_ARG_BYTES:,}"
            )
        total += size + 1
    total += sum(len(k) + len(v) + 2 for k, v in env.items())
    if total > MAX_ARGV_BYTES:
        raise ValueError(
            f"the command line and environment take {total:,} bytes; at most {MAX_ARGV_BYTES:,}"
        )


class Snapshot(abc.ABC):
    """A frozen copy of a sandbox's writable state, restorable many times."""

    id: str
    spec: SandboxSpec

    @abc.abstractmethod
    async def release(self) -> None:
        """Free the storage behind the snapshot. Idempotent."""


class Sandbox(abc.ABC):
    """One live isolated environment. Methods are coroutines; ``close`` is idempotent."""

    id: str
    spec: SandboxSpec
    backend: Backend

    @abc.abstractmethod
    async def exec(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run ``argv`` inside the sandbox under its limits.

        ``timeout_s`` overrides ``spec.limits.timeout_s`` for this exec only. Every process
        the command started is gone when this returns, including children it left running.
        Raises :class:`~pivotgym.errors.InfraError` only when the sandbox itself failed;
        a command that fails, times out or is killed is a normal :class:`ExecResult`.
        """

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Create or replace the file at absolute ``path`` inside the sandbox."""

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Return the bytes of the file at absolute ``path``; ``FileNotFoundError`` if absent."""

    @abc.abstractmethod
    async def upload(self, src: Path, dest: str) -> None:
        """Copy the host file or directory ``src`` to ``dest`` inside the sandbox."""

    @abc.abstractmethod
    async def download(self, src: str, dest: Path) -> None:
        """Copy ``src`` (file or directory) from inside the sandbox to the host path ``dest``."""

    @abc.abstractmethod
    def host_dir(self, inside: str) -> Path:
        """The host directory behind ``inside``, one of the sandbox's writable places.

        ``ValueError`` for any other path. It lets the harness read the state without
        running anything in the sandbox; read it only while no exec runs, and never
        through what it holds (:func:`pivotgym.sandbox.state.read_tree`): it is the
        agent's.
        """

    @abc.abstractmethod
    async def snapshot(self, keep: Sequence[str] | None = None) -> Snapshot:
        """Freeze the current state; the sandbox stays usable.

        With ``keep`` (writable places, as inside paths), only those are frozen and the
        others start empty in a sandbox restored from it.
        """

    async def fork(
        self, n: int, *, keep: Sequence[str] | None = None, limits: Limits | None = None
    ) -> list[Sandbox]:
        """Return ``n`` independent sandboxes in this sandbox's current state.

        One source (:meth:`_fork_source`), ``n`` sandboxes started from it concurrently,
        the source released. All or nothing: if any start fails, the ones that started
        are closed and the first error is raised. ``keep`` is as for :meth:`snapshot`;
        ``limits`` replaces the copies' limits (a grader's copy gets room to spare).
        """
        if n < 1:
            raise ValueError(f"fork needs n >= 1, got {n}")
        spec = self.spec if limits is None else dataclasses.replace(self.spec, limits=limits)
        snap = await self._fork_source(keep, spec)
        try:
            made = await asyncio.gather(
                *(self.backend.create(self.spec, snapshot=snap) for _ in range(n)),
                return_exceptions=True,
            )
        finally:
            await snap.release()
        failures = [m for m in made if isinstance(m, BaseException)]
        if failures:
            await asyncio.gather(
                *(m.close() for m in made if isinstance(m, Sandbox)), return_exceptions=True
            )
            raise failures[0]
        return list(made)  # type: ignore[arg-type]

    async def _fork_source(self, keep: Sequence[str] | None, spec: SandboxSpec) -> Snapshot:
        """What :meth:`fork` starts its sandboxes from, under ``spec``: a snapshot,
        unless the backend can hand a cheaper source (a view of the live state)."""
        snap = await self.snapshot(keep)
        snap.spec = spec
        return snap

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything running and free the sandbox's storage. Idempotent."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether ``close`` has run."""

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Backend(abc.ABC):
    """A kind of sandbox: creates them, restores snapshots, and reaps leftovers."""

    name: str

    @classmethod
    @abc.abstractmethod
    def available(cls) -> str | None:
        """``None`` when this backend can run here, else a sentence saying why not."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, *, snapshot: Snapshot | None = None) -> Sandbox:
        """Start a sandbox from ``spec``, or from ``snapshot`` when given (its spec wins)."""

    @abc.abstractmethod
    def reap(self) -> int:
        """Remove sandboxes and snapshots whose owning process is gone; return how many."""

    @abc.abstractmethod
    def close_all_sync(self) -> None:
        """Tear down every sandbox and snapshot this process owns, without an event loop.

        Called from signal handlers and ``atexit``; must not raise.
        """
