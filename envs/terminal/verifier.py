"""Execution verifier: run the sampled and the demonstrated action from ``s_t``, compare effects.

For an environment that can fork (the terminal), the action is locally acceptable when
it does to the world what the expert's action did. Each action runs in its own branch
of the restored state (through the environment's tool hook, without the episode
bookkeeping: no turn counting and no end-of-episode test), then the host reads the
branch's state to measure the effect. Nothing runs in the branch to measure it: no
program the action replaced or configured (a repository's file-system monitor, say)
takes part, and the host reads the tree without following any link
(:func:`pivotgym.sandbox.state.read_tree`). The effect:

- ``files``: the working directory's tree: every path with its type and permission
  bits, the sha256 of each regular file, the target of each symlink. Times, sizes of
  directories and owners are left out (they differ between identical runs), a git
  index counts by what it stages (mode, object id, stage and path of each entry), not
  by its stat cache, and a zip archive by its members (size, CRC and name of each, in
  any order), not by its bytes, which hold access times that reading the members moves.
- ``shell``: the working directory and the exported variables the terminal carries to
  the next command (``/run/pivotgym``), less ``OLDPWD``, ``PWD``, ``SHLVL`` and ``_``,
  which record how the shell moved rather than where it is.
- ``exit``: the exit status and time-out flag of each call, in order.
- ``output``: the text each call returned, through :class:`pivotgym.core.replay.Normalizer`
  (timestamps, pids, the task's ``normalize`` patterns), then the whitespace policy:
  ``"trailing"`` (default) drops spaces at line ends and trailing blank lines, which
  are invisible in a terminal; ``"collapse"`` turns every run of whitespace into one
  space (for column layouts); ``"exact"`` keeps it all.

``compare_output="auto"`` (the default) compares outputs only when the demonstration
changed neither files nor shell state: then it was an observation, and what it showed
is its whole effect (``cat a`` and ``ls`` both change nothing, and must not be equal).
When the demonstration changed the world, the world is what counts, and a different
message from an equivalent tool (``patch`` prints, ``git apply`` does not) is no fault.
``True`` or ``False`` force it either way. Each component can be switched off.

Cost. The demonstration's effect is the same for every sample of a candidate, so it is
computed once per candidate id and cached (bounded, least recently used): K samples of
a candidate cost K + 1 branch executions. :meth:`Execution.verify_many` forks every
branch it needs in one ``afork`` (one snapshot of the state, then one copy a branch).
Every branch is closed before the verdict returns, on errors and time-outs too. A
branch that cannot be made, or the demonstration's branch failing to run or be
measured, is an infrastructure failure, never a 0. A sample whose own branch failed
while the demonstration's was measured scores 0 with the failure as its reason: the
sample broke its own sandbox, and masking that would reward it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import struct
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotgym.core.replay import Normalizer
from pivotgym.errors import InfraError
from pivotgym.sandbox.base import DETERMINISTIC_ENV
from pivotgym.sandbox.shell import STATE_DIR
from pivotgym.sandbox.state import TreeEntry, printable, read_small_file, read_tree
from pivotgym.verifiers.base import (
    Call,
    MalformedAction,
    Message,
    State,
    Verdict,
    Verifier,
    failed,
    infra,
    parse_calls,
    passed,
)
from pivotgym.verifiers.match import compare_names
from pivotgym.verifiers.schema import canonical_json

IGNORED_VARIABLES = frozenset({"OLDPWD", "PWD", "SHLVL", "_"})
COMPONENTS = ("files", "shell", "exit", "output")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class Effect:
    """The observable effect of an action (see the module docstring)."""

    files: dict[str, str]
    cwd: str
    env: dict[str, str]
    exits: tuple[tuple[int | None, bool], ...] = ()
    outputs: tuple[str, ...] = ()

    def world(self) -> tuple[Any, ...]:
        return (self.files, self.cwd, self.env)


@dataclass
class ExpertEffect:
    effect: Effect
    changed: bool  # the demonstration changed files or shell state


@dataclass
class ExecutionStats:
    """What the verifier spent: counts and seconds per phase (summed over branches)."""

    verdicts: int = 0
    executions: int = 0
    expert_executions: int = 0
    branches: int = 0
    fork_s: float = 0.0
    exec_s: float = 0.0
    measure_s: float = 0.0
    close_s: float = 0.0
    expert_cache_hits: int = 0


@dataclass(frozen=True)
class _OutOfTime:
    """A sampled action ran past :attr:`Execution.action_timeout_s` in its branch."""

    limit_s: float


@dataclass
class _Pending:
    items: list[tuple[Message, list[Call]]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)


class Execution(Verifier):
    """Equal observable effects from ``s_t`` earn 1; the reason names what differed.

    Options: ``compare_files``, ``compare_shell``, ``compare_exit`` (bools, default on),
    ``compare_output`` (``"auto"``, ``True`` or ``False``), ``output_whitespace``
    (``"trailing"``, ``"collapse"``, ``"exact"``), ``timeout_s`` (the harness limit for
    one verdict, an infrastructure failure when exceeded), ``action_timeout_s`` (what a
    sampled action may take in its branch, below ``timeout_s``: past it the action
    scores 0), ``cache_size`` (candidates whose demonstrated effect is kept).
    """

    name = "execution"

    def __init__(
        self,
        *,
        compare_files: bool = True,
        compare_shell: bool = True,
        compare_exit: bool = True,
        compare_output: bool | str = "auto",
        output_whitespace: str = "trailing",
        timeout_s: float | None = 300.0,
        action_timeout_s: float = 120.0,
        cache_size: int = 4096,
    ) -> None:
        if timeout_s is not None and action_timeout_s >= timeout_s:
            raise ValueError("action_timeout_s must be below timeout_s (the harness's own limit)")
        if compare_output not in (True, False, "auto"):
            raise ValueError("compare_output must be True, False or 'auto'")
        if output_whitespace not in ("trailing", "collapse", "exact"):
            raise ValueError("output_whitespace must be 'trailing', 'collapse' or 'exact'")
        self.compare_files = compare_files
        self.compare_shell = compare_shell
        self.compare_exit = compare_exit
        self.compare_output = compare_output
        self.output_whitespace = output_whitespace
        self.timeout_s = timeout_s
        self.action_timeout_s = action_timeout_s
        self.cache_size = cache_size
        self.stats = ExecutionStats()
        self._experts: OrderedDict[str, asyncio.Future[ExpertEffect]] = OrderedDict()
        self._normalizers: dict[tuple[str, ...], Normalizer] = {}

    # ------------------------------------------------------------------ entry points

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        return (await self._score(state, [(action, calls)], reference_calls))[0]

    async def verify_many(
        self, state: State, actions: Sequence[Message], reference: Message
    ) -> list[Verdict]:
        """Score several actions of one state with a single fork of all their branches."""
        verdicts: list[Verdict | None] = [None] * len(actions)
        tools = state.tools or None
        try:
            reference_calls = parse_calls(reference, tools)
        except MalformedAction as exc:
            return [infra(f"reference action is invalid: {exc}") for _ in actions]
        pending = _Pending()
        for i, action in enumerate(actions):
            try:
                pending.items.append((action, parse_calls(action, tools)))
                pending.index.append(i)
            except MalformedAction as exc:
                verdicts[i] = failed(f"malformed action: {exc}")
        if pending.items:
            scored = await self._guarded(self._score(state, pending.items, reference_calls))
            if isinstance(scored, Verdict):  # the whole group hit an infrastructure failure
                scored = [scored] * len(pending.items)
            for i, verdict in zip(pending.index, scored, strict=True):
                verdicts[i] = verdict
        return [v for v in verdicts if v is not None]

    # ------------------------------------------------------------------ scoring

    async def _score(
        self, state: State, items: list[tuple[Message, list[Call]]], reference_calls: list[Call]
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        runnable: list[int] = []
        for i, (_, calls) in enumerate(items):
            if bool(calls) != bool(reference_calls):
                verdicts[i] = failed(compare_names(calls, reference_calls) or "differs")
            elif not calls:
                verdicts[i] = passed("no tool call, as demonstrated")
            else:
                runnable.append(i)
        if runnable:
            env = state.env
            if env is None:
                return [
                    v or infra("execution needs an environment restored at s_t") for v in verdicts
                ]
            effects = await self._run_branches(
                state, [items[i][1] for i in runnable], reference_calls
            )
            expert, samples = effects
            for i, sample in zip(runnable, samples, strict=True):
                verdicts[i] = self._compare(expert, sample)
        self.stats.verdicts += len(items)
        return [v for v in verdicts if v is not None]

    async def _run_branches(
        self, state: State, samples: list[list[Call]], reference_calls: list[Call]
    ) -> tuple[ExpertEffect, list[Effect | str | BaseException]]:
        # Keyed by the candidate and by the reference itself, should a caller pass another.
        key = state.key + "\0" + canonical_json([[c.name, c.canonical] for c in reference_calls])
        expert_future = self._experts.get(key)
        mine = expert_future is None
        if mine:
            expert_future = asyncio.get_running_loop().create_future()
            self._experts[key] = expert_future
            while len(self._experts) > self.cache_size:
                self._experts.popitem(last=False)
        else:
            self._experts.move_to_end(key)
            self.stats.expert_cache_hits += 1
        assert expert_future is not None
        branches: list[Any] = []
        try:
            started = time.perf_counter()
            branches = await state.env.afork(len(samples) + mine)
            self.stats.fork_s += time.perf_counter() - started
            self.stats.branches += len(branches)
            jobs = [
                self._sample_job(state, b, calls)
                for b, calls in zip(branches, samples, strict=False)
            ]
            if mine:
                jobs.append(
                    self._expert_job(state, key, branches[-1], reference_calls, expert_future)
                )
            results = await asyncio.gather(*jobs, return_exceptions=True)
            self.stats.executions += len(samples)
            for result in results[len(samples) :]:
                if isinstance(result, BaseException):
                    raise result
            expert = await expert_future
        except BaseException as exc:
            if mine and not expert_future.done():
                self._fail_expert(key, expert_future, exc)
            raise
        finally:
            started = time.perf_counter()
            await asyncio.gather(*(b.aclose() for b in branches), return_exceptions=True)
            self.stats.close_s += time.perf_counter() - started
        return expert, list(results[: len(samples)])

    def _fail_expert(
        self, key: str, future: asyncio.Future[ExpertEffect], exc: BaseException
    ) -> None:
        if self._experts.get(key) is future:
            del self._experts[key]
        future.set_exception(exc if isinstance(exc, Exception) else InfraError("cancelled"))
        future.exception()  # retrieved here: waiters, if any, re-raise it themselves

    async def _expert_job(self, state, key, branch, calls, future) -> None:
        try:
            measure_before = self.compare_output == "auto"
            before = await self._measure(state, branch) if measure_before else None
            effect = await self._effect(state, branch, calls)
            if isinstance(effect, str):
                raise InfraError(
                    f"the demonstrated action was rejected by the environment: {effect}"
                )
            self.stats.expert_executions += 1
            changed = before is None or before.world() != effect.world()
            if not future.done():
                future.set_result(ExpertEffect(effect, changed))
        except Exception as exc:
            if not future.done():
                self._fail_expert(key, future, exc)
            raise

    async def _sample_job(
        self, state: State, branch: Any, calls: list[Call]
    ) -> Effect | str | _OutOfTime:
        """A sample's effect within its own time: one that runs past it has failed, not
        the harness (which would mask the whole group with it)."""
        try:
            return await asyncio.wait_for(self._effect(state, branch, calls), self.action_timeout_s)
        except TimeoutError:
            return _OutOfTime(self.action_timeout_s)

    # ------------------------------------------------------------------ one branch

    async def _effect(self, state: State, branch: Any, calls: list[Call]) -> Effect | str:
        """Run ``calls`` in ``branch`` and measure; a string is the env's rejection."""
        exits: list[tuple[int | None, bool]] = []
        outputs: list[str] = []
        normalize = self._normalizer(state)
        for call in calls:
            started = time.perf_counter()
            try:
                content, info = await branch.call_tool(call.name, call.arguments)
            except ValueError as exc:
                return f"call {len(exits)} ({call.name}): {exc}"
            finally:
                self.stats.exec_s += time.perf_counter() - started
            exits.append((info.get("exit_code", 0), bool(info.get("timed_out", False))))
            outputs.append(self._whitespace(normalize(content)))
        world = await self._measure(state, branch)
        return Effect(world.files, world.cwd, world.env, tuple(exits), tuple(outputs))

    async def _measure(self, state: State, branch: Any) -> Effect:
        sandbox = branch.sandbox
        workdir = sandbox.spec.workdir
        baseline = {**DETERMINISTIC_ENV, **sandbox.spec.env}
        started = time.perf_counter()
        try:
            work, shell = sandbox.host_dir(workdir), sandbox.host_dir(STATE_DIR)
            return await asyncio.to_thread(measure, work, shell, workdir, baseline)
        except OSError as exc:
            raise InfraError(f"measuring the effect failed: {exc}") from exc
        finally:
            self.stats.measure_s += time.perf_counter() - started

    # ------------------------------------------------------------------ comparison

    def _normalizer(self, state: State) -> Normalizer:
        task = state.task if state.task is not None else getattr(state.env, "task", None)
        patterns = tuple(getattr(getattr(task, "config", None), "normalize", ()) or ())
        if patterns not in self._normalizers:
            self._normalizers[patterns] = Normalizer(patterns)
        return self._normalizers[patterns]

    def _whitespace(self, text: str) -> str:
        if self.output_whitespace == "collapse":
            return re.sub(r"\s+", " ", text).strip()
        if self.output_whitespace == "trailing":
            return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")
        return text

    def _compare(
        self, expert: ExpertEffect, sample: Effect | str | _OutOfTime | BaseException
    ) -> Verdict:
        if isinstance(sample, BaseException):
            # The demonstration's branch ran and was measured, so the sandbox works: the
            # sample broke its own (see the module docstring).
            reason = f"the action's branch failed: {type(sample).__name__}: {str(sample)[:300]}"
            return failed(reason, branch_failed=True)
        if isinstance(sample, _OutOfTime):
            reason = f"the action ran past the verifier's {sample.limit_s:g} s"
            return failed(reason, timed_out=True)
        if isinstance(sample, str):
            return failed(f"malformed action: {sample}")
        want = expert.effect
        diffs: list[str] = []
        compared: list[str] = []
        if self.compare_files:
            compared.append("files")
            diffs.extend(_file_diffs(want.files, sample.files))
        if self.compare_shell:
            compared.append("shell")
            if want.cwd != sample.cwd:
                diffs.append(f"cwd {sample.cwd} (expected {want.cwd})")
            names = sorted(
                k for k in set(want.env) | set(sample.env) if want.env.get(k) != sample.env.get(k)
            )
            if names:
                diffs.append(
                    "exported " + ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
                )
        if self.compare_exit:
            compared.append("exit")
            if want.exits != sample.exits:
                diffs.append(f"exit status {_exits(sample.exits)} (expected {_exits(want.exits)})")
        output = self.compare_output if self.compare_output != "auto" else not expert.changed
        if output:
            compared.append("output")
            if want.outputs != sample.outputs:
                diffs.append("output differs")
        if diffs:
            reason = "; ".join(diffs)
            return failed(reason if len(reason) <= 300 else reason[:297] + "...", differs=diffs)
        return passed(f"same effect ({', '.join(compared)})", compared=compared)


def _exits(exits: Sequence[tuple[int | None, bool]]) -> str:
    return ",".join("timeout" if timed_out else str(code) for code, timed_out in exits) or "-"


def _file_diffs(want: dict[str, str], got: dict[str, str]) -> list[str]:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(p for p in set(want) & set(got) if want[p] != got[p])
    out = []
    for label, paths in (("missing", missing), ("unexpected", extra), ("differs", changed)):
        if paths:
            names = [printable(p) for p in paths[:4]]
            shown = ", ".join(names) + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")
            out.append(f"{label}: {shown}")
    return out


_EXPORT = re.compile(r'^declare -x ([A-Za-z_][A-Za-z0-9_]*)(?:="((?:[^"\\]|\\.)*)")?$', re.M | re.S)


def parse_exports(text: str) -> dict[str, str]:
    """Exported variables from ``export -p`` output, less the ignored ones."""
    return {
        name: value or "" for name, value in _EXPORT.findall(text) if name not in IGNORED_VARIABLES
    }


def measure(
    work: Path, shell: Path, workdir: str, baseline: Mapping[str, str] | None = None
) -> Effect:
    """The :class:`Effect` (files and shell state) of a sandbox's state, read on the host.

    ``work`` is the host side of the working directory, ``shell`` that of the terminal's
    state folder (:data:`STATE_DIR`). Before the first command no shell state is saved
    yet: the shell then stands in ``workdir`` with the sandbox's environment, ``baseline``.
    """
    tree = read_tree(work, want_data=_wants_bytes)
    files = {path: _describe(path, entry) for path, entry in tree.items()}
    cwd = (read_small_file(shell, "cwd") or b"").decode("utf-8", "replace").strip() or workdir
    exported = (read_small_file(shell, "env") or b"").decode("utf-8", "replace")
    env = parse_exports(exported) if exported.strip() else dict(baseline or {})
    return Effect(files=files, cwd=cwd, env=env)


def _wants_bytes(path: str, head: bytes) -> bool:
    return _is_git_index(path) or head.startswith(_ZIP_MAGIC)


def _is_git_index(path: str) -> bool:
    return path == ".git/index" or path.endswith("/.git/index")


def _describe(path: str, entry: TreeEntry) -> str:
    text = f"{entry.kind} {entry.mode:o}"
    if entry.kind == "l":
        return f"{text} -> {entry.target}"
    if entry.sha256 is None:
        return text
    # A git index caches stat data (times, inodes) that differ between identical runs:
    # what it stages is compared instead. A zip archive records its members' access
    # times, which reading them moves: its members (names, sizes, CRCs) are compared.
    if entry.data is not None:
        if _is_git_index(path):
            staged = staged_entries(entry.data)
            if staged is not None:
                return f"{text} staged:{staged}"
        members = zip_members(entry.data)
        if members is not None:
            return f"{text} members:{members}"
    return f"{text} {entry.sha256}"


def staged_entries(index: bytes) -> str | None:
    """A digest of what a git index stages (mode, object id, stage and path of every
    entry, as ``git ls-files --stage`` lists them), or ``None`` if it is no index."""
    if len(index) < 12 or index[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", index[4:12])
    if version not in (2, 3, 4):
        return None
    # The object id is 20 bytes (SHA-1) or 32 (SHA-256): the one that parses is right.
    for id_size in (20, 32):
        lines = _index_lines(index, version, count, id_size)
        if lines is not None:
            return hashlib.sha256(b"".join(lines)).hexdigest()
    return None


def _index_lines(index: bytes, version: int, count: int, id_size: int) -> list[bytes] | None:
    lines, pos, previous = [], 12, b""
    fixed = 40 + id_size  # ctime, mtime, dev, ino, mode, uid, gid, size; the id
    try:
        for _ in range(count):
            start = pos
            (mode,) = struct.unpack(">I", index[pos + 24 : pos + 28])
            object_id = index[pos + 40 : pos + fixed].hex()
            (flags,) = struct.unpack(">H", index[pos + fixed : pos + fixed + 2])
            pos += fixed + 2
            if version >= 3 and flags & 0x4000:  # extended flags
                pos += 2
            if version == 4:
                strip, pos = _varint(index, pos)
                end = index.index(b"\0", pos)
                name = previous[: len(previous) - strip] + index[pos:end]
                pos = end + 1
            else:
                end = index.index(b"\0", pos)
                name = index[pos:end]
                pos = start + ((end - start + 8) // 8) * 8  # NUL padding to 8 bytes
            if len(object_id) != 2 * id_size or not name:
                return None
            previous = name
            stage = (flags >> 12) & 0x3
            lines.append(b"%o %s %d\t%s\n" % (mode, object_id.encode(), stage, name))
    except (struct.error, ValueError, IndexError):
        return None
    return lines


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Git's offset encoding of index version 4 (each continuation adds one)."""
    byte = data[pos]
    value = byte & 0x7F
    pos += 1
    while byte & 0x80:
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
        pos += 1
    return value, pos


def zip_members(archive: bytes) -> str | None:
    """A digest of a zip archive's members (name, size and CRC of each, in any order),
    or ``None`` if it does not read as a zip archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            members = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None
    if not members:
        return None
    rows = "".join(f"{size} {crc:08x} {name}\n" for name, size, crc in members)
    return hashlib.sha256(rows.encode("utf-8", "surrogateescape")).hexdigest()
