"""Execution verifier: run the sampled and the demonstrated action from ``s_t``, compare effects.

For an environment that can fork (the terminal), the action is locally acceptable when
it does to the world what the expert's action did. Each action runs in its own branch
of the restored state (through the environment's tool hook, without the episode
bookkeeping: no turn counting and no end-of-episode test), then one command in the
branch measures the effect:

- ``files``: the working directory's tree: every path with its type and permission
  bits, the sha256 of each regular file, the target of each symlink. Times, sizes of
  directories and owners are left out (they differ between identical runs), a git
  index counts by what it stages (``git ls-files --stage``), not by its stat cache, and
  a zip archive by its members (size, CRC and name of each, in any order), not by its
  bytes, which hold access times that reading the members moves.
  ``/run/pivotgym`` (the shell-state folder) is never part of it.
- ``shell``: the working directory and the exported variables the terminal carries to
  the next command (``/run/pivotgym``), less ``OLDPWD``, ``PWD``, ``SHLVL`` and ``_``,
  which record how the shell moved rather than where it is.
- ``exit``: the exit status and time-out flag of each call, in order.
- ``output``: the text each call returned, through :class:`pivotgym.replay.Normalizer`
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
branch that cannot be made or measured is an infrastructure failure, never a 0.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotgym.errors import InfraError
from pivotgym.replay import Normalizer
from pivotgym.sandbox.base import DETERMINISTIC_ENV
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

STATE_DIR = "/run/pivotgym"
EFFECT_FILE = "/tmp/.pivotgym-effect"
IGNORED_VARIABLES = frozenset({"OLDPWD", "PWD", "SHLVL", "_"})
COMPONENTS = ("files", "shell", "exit", "output")

# $1 is the workdir. Sections are NUL-separated: cwd, env, the tree as pairs
# (type, mode, path; link target), "sha256  path" of each regular file, then pairs
# (path of a git index; hash of what it stages), then pairs (path of a zip archive; hash
# of its members' sizes, CRCs and names).
MEASURE = f"""
cd -- "$1" 2>/dev/null || {{ printf 'no workdir'; exit 97; }}
printf 'cwd\\0'; cat {STATE_DIR}/cwd 2>/dev/null; printf '\\0'
printf 'env\\0'; cat {STATE_DIR}/env 2>/dev/null; printf '\\0'
printf 'tree\\0'; find . -mindepth 1 -printf '%y %m %P\\0%l\\0' 2>/dev/null
printf 'hash\\0'; find . -type f -exec sha256sum -z -- {{}} + 2>/dev/null
printf 'gitindex\\0'; find . -path '*/.git/index' -type f -print0 2>/dev/null |
while IFS= read -r -d '' f; do
    printf '%s\\0' "${{f#./}}"
    git --git-dir="${{f%/index}}" ls-files --stage 2>/dev/null | sha256sum; printf '\\0'
done
printf 'zip\\0'; command -v unzip >/dev/null &&
find . -type f -exec grep -lZ --binary-files=binary -m1 '^PK' {{}} + 2>/dev/null |
while IFS= read -r -d '' f; do
    members=$(unzip -lv -- "$f" 2>/dev/null |
        awk 'length($7) == 8 && $7 ~ /^[0-9a-f]+$/ {{ $2=$3=$4=$5=$6=""; print }}' | sort)
    [ -n "$members" ] || continue
    printf '%s\\0' "${{f#./}}"; printf '%s' "$members" | sha256sum; printf '\\0'
done
printf 'end\\0'
"""


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


class _Rejected(Exception):
    """The environment refused an action's arguments (a malformed action)."""


@dataclass
class _Pending:
    items: list[tuple[Message, list[Call]]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)


class Execution(Verifier):
    """Equal observable effects from ``s_t`` earn 1; the reason names what differed.

    Options: ``compare_files``, ``compare_shell``, ``compare_exit`` (bools, default on),
    ``compare_output`` (``"auto"``, ``True`` or ``False``), ``output_whitespace``
    (``"trailing"``, ``"collapse"``, ``"exact"``), ``timeout_s`` (the harness limit for
    one verdict, an infrastructure failure when exceeded), ``cache_size`` (candidates
    whose demonstrated effect is kept).
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
        cache_size: int = 4096,
    ) -> None:
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
            if env is None or not hasattr(env, "afork"):
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
                self._effect(state, b, calls) for b, calls in zip(branches, samples, strict=False)
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
        started = time.perf_counter()
        try:
            result = await sandbox.exec(["bash", "-c", MEASURE, "bash", workdir], cwd="/")
            text = result.output
            if result.truncated:  # a large tree: fetch the listing as a file instead
                script = f"{{ {MEASURE}\n}} > {EFFECT_FILE}"
                await sandbox.exec(["bash", "-c", script, "bash", workdir], cwd="/")
                text = (await sandbox.read_file(EFFECT_FILE)).decode("utf-8", "replace")
                await sandbox.exec(["rm", "-f", EFFECT_FILE], cwd="/")
        finally:
            self.stats.measure_s += time.perf_counter() - started
        if result.exit_code != 0 or not text.endswith("end\0"):
            raise InfraError(
                f"measuring the effect failed (exit {result.exit_code}): {text[-200:]!r}"
            )
        baseline = {**DETERMINISTIC_ENV, **sandbox.spec.env}
        return parse_measure(text, workdir, baseline)

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

    def _compare(self, expert: ExpertEffect, sample: Effect | str | BaseException) -> Verdict:
        if isinstance(sample, BaseException):
            return infra(f"{self.name}: {type(sample).__name__}: {str(sample)[:300]}")
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
            shown = ", ".join(paths[:4]) + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")
            out.append(f"{label}: {shown}")
    return out


_EXPORT = re.compile(r'^declare -x ([A-Za-z_][A-Za-z0-9_]*)(?:="((?:[^"\\]|\\.)*)")?$', re.M | re.S)


def parse_exports(text: str) -> dict[str, str]:
    """Exported variables from ``export -p`` output, less the ignored ones."""
    return {
        name: value or "" for name, value in _EXPORT.findall(text) if name not in IGNORED_VARIABLES
    }


def parse_measure(text: str, workdir: str, baseline: Mapping[str, str] | None = None) -> Effect:
    """The :class:`Effect` (files and shell state) from the output of :data:`MEASURE`.

    Before the first command no shell state is saved yet: the shell then stands in the
    workdir with the sandbox's environment, ``baseline``.
    """
    tokens = text.split("\0")
    if tokens[:1] != ["cwd"] or tokens[2:3] != ["env"] or tokens[4:5] != ["tree"]:
        raise InfraError(f"unreadable effect listing: {text[:200]!r}")
    cwd = tokens[1].strip() or workdir
    env = parse_exports(tokens[3]) if tokens[3].strip() else dict(baseline or {})
    files: dict[str, str] = {}
    i = 5
    while i < len(tokens) and tokens[i] != "hash":
        kind, mode, path = tokens[i].split(" ", 2)
        target = tokens[i + 1] if i + 1 < len(tokens) else ""
        files[path] = f"{kind} {mode}" + (f" -> {target}" if kind == "l" else "")
        i += 2
    i += 1
    while i < len(tokens) and tokens[i] != "gitindex":
        digest, _, path = tokens[i].partition("  ")
        path = path.removeprefix("./")
        if path in files:
            files[path] += " " + digest
        i += 1
    # A git index caches stat data (times, inodes) that differ between identical runs:
    # what it stages is compared instead. A zip archive records its members' access
    # times, which reading them moves: its members (names, sizes, CRCs) are compared.
    i += 1
    for section, tag in (("zip", "staged:"), ("end", "members:")):
        while i + 1 < len(tokens) and tokens[i] != section:
            path, digest = tokens[i], tokens[i + 1].split(" ", 1)[0]
            if path in files:
                files[path] = files[path].rsplit(" ", 1)[0] + " " + tag + digest
            i += 2
        i += 1
    excluded = [_relative(p, workdir) for p in (STATE_DIR, EFFECT_FILE)]
    for prefix in filter(None, excluded):
        for path in [p for p in files if p == prefix or p.startswith(prefix + "/")]:
            del files[path]
    return Effect(files=files, cwd=cwd, env=env)


def _relative(path: str, workdir: str) -> str | None:
    base = workdir.rstrip("/") + "/"
    return path[len(base) :] if path.startswith(base) else None
