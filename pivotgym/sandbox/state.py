"""The writable state of a sandbox: one host directory, shown inside at a few fixed places.

Both backends keep everything a command can change in one host directory per sandbox,
its *state*; the rest of the sandbox's file system is read-only (the host's userland
for bwrap, the image for docker). Inside, the state's folders appear at:

==================  ==========
inside              state/
==================  ==========
``spec.workdir``    ``work``
``/tmp``            ``tmp``
``/root`` (HOME)    ``home``
``/logs``           ``logs``
``/tests``          ``tests``
``/run/pivotgym``   ``run``
``/dev/shm``        ``shm``
==================  ==========

As root the state is a tmpfs of ``limits.disk_mb`` holding at most ``limits.max_files``
files: one quota over all of those places together, which nothing inside can lift
(nothing inside can mount, and the tmpfs belongs to the host). Without root it is a
plain directory, and only the size of each file is bounded (``RLIMIT_FSIZE``).

Snapshots and forks are copies of the state made on the host with ``tar``, which
copies a symbolic link as a link and never follows one. It copies in name order, and
so does a fresh state's copy of its files: a tmpfs lists a folder in the order its
entries were made, so ``ls -U``, ``find`` or ``grep -r`` print the same in a sandbox
however its state came to be (fresh, restored or forked), on any machine. (``cp -a``
copies in the order of inode numbers, which a tmpfs hands out in batches by CPU.) What a
command adds to a folder lists in the order it was made until the state is next copied:
a replay that lists such a folder unsorted from a restored state may differ from its
record, and says so (:class:`~pivotgym.errors.DivergenceError`).
The host reads a state only while nothing runs in its sandbox, and never through a link
(:func:`read_tree`): a link, a FIFO or a file name that the agent planted cannot point
the host anywhere else. Every state and snapshot has an owner file beside it
(:mod:`pivotgym.sandbox.leases`), written before the directory exists, so whatever a
crash leaves is found by :meth:`StateStore.reap`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pivotgym.errors import InfraError
from pivotgym.sandbox import leases
from pivotgym.sandbox.base import DETERMINISTIC_ENV, IMAGE_RECIPE, Sandbox, SandboxSpec, Snapshot

# The places every sandbox can write, beside its workdir, and their folders in the state.
FIXED_PLACES: Mapping[str, str] = {
    "/tmp": "tmp",
    "/root": "home",
    "/logs": "logs",
    "/tests": "tests",
    "/run/pivotgym": "run",
    "/dev/shm": "shm",
}
WORK = "work"
FIXED_MTIME = int(DETERMINISTIC_ENV["SOURCE_DATE_EPOCH"])
# Host programs the harness runs, looked up in the system's own folders only: never in
# the driver's PATH, which a user may have pointed anywhere.
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MS_NOSUID, _MS_NODEV = 0x2, 0x4
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def default_runtime_dir() -> Path:
    """Where backends keep states and snapshots: ``PIVOTGYM_RUNTIME_DIR``, else a folder
    of this user's in the system's temporary directory."""
    configured = os.environ.get("PIVOTGYM_RUNTIME_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"pivotgym-{os.getuid()}"


@functools.cache
def host_tool(name: str) -> str:
    """The absolute path of the host program ``name``; :class:`InfraError` if absent."""
    found = shutil.which(name, path=_SYSTEM_PATH)
    if found is None:
        raise InfraError(f"{name} not found in {_SYSTEM_PATH}")
    return found


def copy_tree(src: Path, dst: Path, names: Sequence[str] | None = None) -> None:
    """Copy ``names`` of ``src`` (all of it by default) into the folder ``dst``, in name
    order (module docstring), keeping modes, owners, times, links as links, FIFOs and
    holes in sparse files; :class:`InfraError` if it fails."""
    create = [host_tool("tar"), "--create", "--file=-", f"--directory={src}", "--sort=name",
              "--sparse", "--numeric-owner", "--format=gnu", "--", *(names or ["."])]  # fmt: skip
    extract = [host_tool("tar"), "--extract", "--file=-", f"--directory={dst}",
               "--same-permissions", "--numeric-owner"]  # fmt: skip
    # The reader's complaints go to a file: a pipe could fill while the writer runs.
    with tempfile.TemporaryFile() as complaints:
        with subprocess.Popen(create, stdout=subprocess.PIPE, stderr=complaints) as reader:
            assert reader.stdout is not None
            written = subprocess.run(extract, stdin=reader.stdout, capture_output=True)
            reader.stdout.close()
        complaints.seek(0)
        errors = complaints.read()[-300:] + written.stderr[-300:]
    if reader.returncode != 0 or written.returncode != 0:
        raise InfraError(f"copying sandbox state failed: {errors!r}")


def places(workdir: str) -> dict[str, str]:
    """Inside path -> state folder, for a sandbox whose working directory is ``workdir``."""
    norm = os.path.normpath(workdir)
    if not workdir.startswith("/") or norm == "/":
        raise ValueError(f"the workdir must be an absolute path below /, got {workdir!r}")
    for inside in FIXED_PLACES:
        if norm == inside or norm.startswith(inside + "/") or inside.startswith(norm + "/"):
            raise ValueError(f"the workdir {workdir!r} overlaps the sandbox's {inside}")
    return {norm: WORK, **FIXED_PLACES}


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, for the calls Python has no wrapper for (mount, prctl, setns)."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount_tmpfs(path: Path, size_mb: int, files: int, uid: int) -> None:
    options = f"size={size_mb}m,nr_inodes={files},mode=0755,uid={uid},gid={uid}".encode()
    if libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options):
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _unmount(path: Path) -> None:
    libc().umount2(str(path).encode(), 2)  # MNT_DETACH; fails harmlessly if not mounted


def _stamp(root: Path) -> None:
    """Give every file a fixed mtime so that listings replay identically."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def _chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


class UncopyableState(ValueError):
    """A state holds what the host cannot copy: a path longer than the system takes, or
    (for a driver without root, whose user the sandbox's root is) a folder whose mode
    closes it to its owner.

    Only a command can have made it (a task's own files are copied when the sandbox is
    made), so it is the policy's doing, never an infrastructure failure.
    """


def _uncopyable(root: Path) -> str | None:
    """Why the tree at ``root`` cannot be copied, if a path in it is too long."""
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return f"a path of {len(os.fsencode(folder)):,} bytes, longer than the system takes"
            if exc.errno in (errno.EACCES, errno.EPERM):  # a driver without root
                return f"{printable(folder)} is closed to the host (its mode denies reading)"
    return None


class StateSnapshot(Snapshot):
    """A frozen state: a copy on the host's disk, restored by copying it back.

    A *view* (``owned=False``) is the live state of a sandbox itself, for a fork that
    copies it straight into each new sandbox; releasing it leaves the state alone.
    ``subs`` are the state folders a restore copies (``None``: all of them).
    """

    def __init__(
        self,
        store: StateStore,
        snap_id: str,
        path: Path,
        spec: SandboxSpec,
        subs: Sequence[str] | None = None,
        owned: bool = True,
    ) -> None:
        self.store = store
        self.id = snap_id
        self.path = path
        self.spec = spec
        self.subs = subs
        self.owned = owned
        self.released = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.owned:
            self.store.snapshots.pop(self.id, None)
            self.store.discard(self.path)


class StateStore:
    """The states and snapshots of one backend, under one runtime directory.

    ``uid`` owns every state (the host user that the sandbox's root is); a state is a
    quota'd tmpfs where the driver is root (``quota``), a plain directory elsewhere.
    """

    def __init__(self, runtime: Path, uid: int) -> None:
        self.runtime = runtime
        self.uid = uid
        self.owner = leases.owner_token()
        self.quota = os.geteuid() == 0
        self.snapshots: dict[str, StateSnapshot] = {}

    def prepare(self) -> None:
        """Make the runtime folders; :class:`InfraError` if the sandbox's user could not
        reach its states (bwrap binds them as that user: every folder on the way to
        them must let others pass, as ``/tmp`` does)."""
        # Nobody needs to list the states or to see a snapshot.
        for path, mode in ((self.runtime, 0o711), (self.runtime / "sandboxes", 0o711),
                           (self.runtime / "scratch", 0o711),
                           (self.runtime / "snapshots", 0o700)):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        if self.uid == os.geteuid():
            return
        for folder in [self.runtime, *self.runtime.resolve().parents]:
            st = folder.stat()
            if st.st_uid != self.uid and not st.st_mode & stat.S_IXOTH:
                raise InfraError(
                    f"sandboxes run as user {self.uid}, who cannot pass {folder} on the way "
                    f"to the runtime directory {self.runtime}: choose one under /tmp "
                    "(PIVOTGYM_RUNTIME_DIR), or let others pass (chmod o+x)"
                )

    def _claim(self, kind: str) -> tuple[str, Path]:
        item_id = uuid.uuid4().hex[:12]
        path = self.runtime / kind / item_id
        # The owner file comes first: whatever follows, a crash leaves something reapable.
        (self.runtime / kind / f"{item_id}.owner").write_text(self.owner)
        path.mkdir()
        return item_id, path

    def _new_state(self, spec: SandboxSpec) -> tuple[str, Path]:
        item_id, root = self._claim("sandboxes")
        if self.quota:
            limits = spec.limits
            # The root and the folders of the layout take an inode each.
            inodes = limits.max_files + 2 + len(FIXED_PLACES)
            _mount_tmpfs(root, limits.disk_mb, inodes, self.uid)
        return item_id, root

    def scratch(self, size_mb: int, files: int) -> Path:
        """A folder owned by this process (reaped like a state) for what the driver shows
        every sandbox read-only; a tmpfs of its own where there is a quota, so that a
        sandbox's mount table names no host path."""
        _, root = self._claim("scratch")
        if self.quota:
            _mount_tmpfs(root, size_mb, files, os.geteuid())
        return root

    def create(self, spec: SandboxSpec, seed: Path | None = None) -> tuple[str, Path]:
        """A fresh state: empty places, the workdir holding ``seed`` then ``spec.files``."""
        item_id, root = self._new_state(spec)
        try:
            for sub in {WORK, *FIXED_PLACES.values()}:
                (root / sub).mkdir()
            (root / "tmp").chmod(0o1777)
            (root / "shm").chmod(0o1777)
            work = root / WORK
            if seed is not None:
                copy_tree(Path(seed), work)
            if spec.files is not None:
                files = Path(spec.files)
                copy_tree(files, work, sorted(set(os.listdir(files)) - {IMAGE_RECIPE}))
            _stamp(work)
            if self.uid != os.geteuid():
                _chown_tree(root, self.uid)
        except BaseException:
            self.discard(root)
            raise
        return item_id, root

    def own(self, snapshot: Snapshot, backend: str) -> StateSnapshot:
        """``snapshot`` as one of this store's live snapshots; :class:`InfraError` if not."""
        if (
            not isinstance(snapshot, StateSnapshot)
            or snapshot.store is not self
            or snapshot.released
        ):
            raise InfraError(f"snapshot {snapshot.id} is not a live {backend} snapshot")
        return snapshot

    def restore(self, snapshot: StateSnapshot) -> tuple[str, Path]:
        """A new state holding a copy of ``snapshot``."""
        item_id, root = self._new_state(snapshot.spec)
        try:
            self._copy(snapshot.path, root, snapshot.subs)
        except BaseException:
            self.discard(root)
            raise
        return item_id, root

    def freeze(self, root: Path, spec: SandboxSpec, keep: Sequence[str] | None) -> StateSnapshot:
        """A snapshot of the state at ``root``; with ``keep`` (inside paths), only those
        places are copied and the others are left empty."""
        subs = _kept(spec, keep)
        snap_id, path = self._claim("snapshots")
        try:
            self._copy(root, path, subs)
        except BaseException:
            self.discard(path)
            raise
        snap = StateSnapshot(self, snap_id, path, spec)
        self.snapshots[snap_id] = snap
        return snap

    def view(self, root: Path, spec: SandboxSpec, keep: Sequence[str] | None) -> StateSnapshot:
        """The live state at ``root`` as a snapshot that restores copy from directly (a
        fork's source: one copy a branch, none in between). Valid while that sandbox
        stays idle and open."""
        return StateSnapshot(self, f"view-{uuid.uuid4().hex[:12]}", root, spec,
                             _kept(spec, keep), owned=False)  # fmt: skip

    def _copy(self, src: Path, dst: Path, subs: Iterable[str] | None) -> None:
        # tar keeps modes, owners, times and links as links: it never follows a link
        # the agent planted towards the host, and makes a link that points away last.
        names = None if subs is None else sorted(s for s in subs if (src / s).exists())
        if names is None or names:
            try:
                copy_tree(src, dst, names)
            except InfraError:
                problem = _uncopyable(src)
                if problem is not None:
                    raise UncopyableState(problem) from None
                raise
        for sub in {WORK, *FIXED_PLACES.values()}:
            if not (dst / sub).exists():
                (dst / sub).mkdir()
                if sub in ("tmp", "shm"):
                    (dst / sub).chmod(0o1777)
                if self.uid != os.geteuid():
                    os.lchown(dst / sub, self.uid, self.uid)

    def discard(self, path: Path) -> None:
        _unmount(path)  # a tmpfs state is then an empty folder
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            # rm, not shutil.rmtree: a tree the agent made thousands of levels deep would
            # exhaust Python's recursion.
            subprocess.run(
                [host_tool("rm"), "-rf", "--one-file-system", "--", str(path)],
                capture_output=True,
            )
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".owner").unlink()

    def discard_snapshots(self) -> None:
        for snap in list(self.snapshots.values()):
            snap.released = True
            with contextlib.suppress(Exception):
                self.discard(snap.path)
        self.snapshots.clear()

    def reap(self) -> int:
        """Remove states and snapshots whose owner is gone; return how many went."""
        removed = 0
        for kind in ("sandboxes", "snapshots", "scratch"):
            folder = self.runtime / kind
            if not folder.is_dir():
                continue
            for owner_file in folder.glob("*.owner"):
                try:
                    token = owner_file.read_text()
                except OSError:
                    continue
                if leases.owner_alive(token):
                    continue
                self.discard(folder / owner_file.name.removesuffix(".owner"))
                removed += 1
        return removed


def _kept(spec: SandboxSpec, keep: Sequence[str] | None) -> list[str] | None:
    """The state folders of the places ``keep`` names (``None``: every place)."""
    if keep is None:
        return None
    layout = places(spec.workdir)
    unknown = [p for p in keep if os.path.normpath(p) not in layout]
    if unknown:
        raise ValueError(f"not writable places of this sandbox: {', '.join(unknown)}")
    return [layout[os.path.normpath(p)] for p in keep]


class StateSandbox(Sandbox):
    """What a sandbox over a state folder does the same on every backend: the host side
    of its places, and forks that copy its live state straight into each branch."""

    root: Path
    _places: dict[str, str]

    def host_dir(self, inside: str) -> Path:
        sub = self._places.get(os.path.normpath(inside))
        if sub is None:
            raise ValueError(f"{inside} is not a writable place of sandbox {self.id[:12]}")
        return self.root / sub

    async def _fork_source(self, keep: Sequence[str] | None, spec: SandboxSpec) -> Snapshot:
        if self.closed:
            raise InfraError(f"sandbox {self.id[:12]} is closed")
        store: StateStore = self.backend.store  # type: ignore[attr-defined]
        return store.view(self.root, spec, keep)


# ------------------------------------------------------------------ reading a state


def printable(path: str) -> str:
    """A path read from a state, fit to print and to write as JSON: bytes that are not
    UTF-8 (kept as surrogates, so that names stay distinct) shown as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a state folder as the host read it, without following anything.

    ``kind`` is ``find -printf %y``'s letter (``f`` file, ``d`` directory, ``l`` link,
    ``p`` FIFO, ``s`` socket, ``c``/``b`` devices); ``mode`` the permission bits;
    ``target`` a link's target; ``sha256`` a digest of a regular file's content (see
    :func:`_content_digest`); ``data`` its bytes when the reader asked for them and the
    file is at most :data:`MAX_DATA` long.
    """

    kind: str
    mode: int
    size: int = 0
    target: str | None = None
    sha256: str | None = None
    data: bytes | None = None


MAX_DEPTH = 256
CHUNK = 1 << 20
# Files read whole for a reader that asked (git indexes, zip archives) are at most this
# long; longer ones are only digested, so no file makes the host hold its bytes.
MAX_DATA = 16 << 20
_KINDS = {
    stat.S_IFREG: "f",
    stat.S_IFDIR: "d",
    stat.S_IFLNK: "l",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
}


def read_tree(
    root: Path,
    want_data: Callable[[str, bytes], bool] | None = None,
    *,
    digests: bool = True,
) -> dict[str, TreeEntry]:
    """Every entry below ``root`` by relative path (names decoded as the file system
    does, undecodable bytes kept as surrogates), read without following any link.

    Directories are opened one component at a time with ``O_NOFOLLOW``, regular files
    with ``O_NOFOLLOW | O_NONBLOCK`` and checked again once open, so a link or a FIFO
    the agent put in place of a file is listed as what it is, never read through.
    ``want_data(path, head)`` (``head``: the file's first bytes) keeps a file's bytes;
    ``digests=False`` lists the tree without opening any file. Folders deeper than
    :data:`MAX_DEPTH` are listed but not read: no task goes that deep, and the levels
    above are enough to tell such a tree apart.
    """
    entries: dict[str, TreeEntry] = {}
    # Depth first, in name order, one open descriptor a level (at most MAX_DEPTH): no
    # recursion, which a tree the agent made thousands of levels deep would exhaust.
    stack: list[tuple[int, str, list[str]]] = []
    top = os.open(root, _DIR_FLAGS)
    stack.append((top, "", sorted(os.listdir(top), reverse=True)))
    try:
        while stack:
            dir_fd, prefix, names = stack[-1]
            if not names:
                os.close(dir_fd)
                stack.pop()
                continue
            name = names.pop()
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "?")
            mode = stat.S_IMODE(st.st_mode)
            if kind == "l":
                target = os.readlink(name, dir_fd=dir_fd)
                entries[rel] = TreeEntry(kind, mode, st.st_size, target=target)
            elif kind == "f" and digests:
                entries[rel] = _read_file(dir_fd, name, rel, st, want_data)
            elif kind == "d":
                entries[rel] = TreeEntry(kind, mode)
                if len(stack) >= MAX_DEPTH:
                    continue
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:  # replaced by something else since it was listed
                    continue
                stack.append((sub, rel + "/", sorted(os.listdir(sub), reverse=True)))
            else:
                entries[rel] = TreeEntry(kind, mode, st.st_size if kind == "f" else 0)
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)
    return entries


def _read_file(
    dir_fd: int,
    name: str,
    rel: str,
    st: os.stat_result,
    want_data: Callable[[str, bytes], bool] | None,
) -> TreeEntry:
    mode = stat.S_IMODE(st.st_mode)
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:  # unreadable, or no longer a regular file
        return TreeEntry("f", mode, st.st_size)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_ino != st.st_ino:
            return TreeEntry(_KINDS.get(stat.S_IFMT(opened.st_mode), "?"), mode)
        size = opened.st_size
        head = os.pread(fd, 8, 0)
        wanted = size <= MAX_DATA and want_data is not None and want_data(rel, head)
        data = _pread_all(fd, 0, size) if wanted else None
        return TreeEntry("f", mode, size, sha256=_content_digest(fd, size), data=data)
    finally:
        os.close(fd)


def _content_digest(fd: int, size: int) -> str:
    """A digest of a file's content that costs what its data costs, not its length.

    The content is cut in chunks of :data:`CHUNK` bytes; the digest is the sha256 of
    their sha256s, with every run of chunks that are all zeros written as one
    ``(zeros, length, count)`` record. Chunks inside a hole (``SEEK_HOLE``) are known to
    be zeros without reading them, so a sparse file of terabytes costs as much as its
    few blocks of data; equal content gives an equal digest however it is stored.
    """
    outer = hashlib.sha256()
    zeros: tuple[int, int] | None = None  # (chunk length, how many) of the current run

    def add_zeros(length: int) -> None:
        nonlocal zeros
        if zeros is not None and zeros[0] == length:
            zeros = (length, zeros[1] + 1)
            return
        flush()
        zeros = (length, 1)

    def flush() -> None:
        nonlocal zeros
        if zeros is not None:
            outer.update(b"Z%d:%d;" % zeros)
            zeros = None

    offset, data_at = 0, _next_data(fd, 0, size)
    while offset < size:
        end = min(offset + CHUNK, size)
        if end <= data_at:
            add_zeros(end - offset)
        else:
            block = _pread_all(fd, offset, end - offset)
            if block.count(0) == len(block):
                add_zeros(len(block))
            else:
                flush()
                outer.update(hashlib.sha256(block).digest())
            data_at = _next_data(fd, end, size)
        offset = end
    flush()
    return outer.hexdigest()


def _next_data(fd: int, offset: int, size: int) -> int:
    """Where data starts at or after ``offset`` (``size`` if only a hole is left)."""
    if offset >= size:
        return size
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError:  # ENXIO: a hole up to the end
        return size


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    chunks, done = [], 0
    while done < length:
        block = os.pread(fd, length - done, offset + done)
        if not block:
            break
        chunks.append(block)
        done += len(block)
    return b"".join(chunks)


def read_small_file(root: Path, rel: str, limit: int = 1 << 20) -> bytes | None:
    """The bytes of the regular file ``rel`` below ``root`` (at most ``limit``), reached
    without following any link; ``None`` when it is absent or not a regular file."""
    parts = [p for p in rel.split("/") if p]
    if not parts or ".." in parts:
        return None
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nxt
        try:
            file_fd = os.open(parts[-1], _READ_FLAGS, dir_fd=fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                return None
            return os.read(file_fd, limit)
        finally:
            os.close(file_fd)
    finally:
        os.close(fd)


def unpack_archive(tar: tarfile.TarFile, dest: Path) -> None:
    """Write an archive of one sandbox path to the host path ``dest`` (the archive's top
    entry becomes ``dest``): regular files, folders and symbolic links, nothing else.

    Links are made last, so that no file is written through a link the archive holds;
    a member named with ``..`` or an absolute path is skipped.
    """
    links: list[tuple[Path, str]] = []
    for member in tar:
        parts = Path(member.name).parts[1:]
        if Path(member.name).is_absolute() or ".." in parts:
            continue
        target = dest.joinpath(*parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            target.chmod(member.mode & 0o777)
        elif member.issym():
            links.append((target, member.linkname))
    for target, linkname in links:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(linkname)
