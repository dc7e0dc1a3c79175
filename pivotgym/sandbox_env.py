"""Tool-calling environments over a sandbox: the mechanism every sandboxed env shares.

A subclass declares its ``tools`` (OpenAI function schemas) and implements
:meth:`SandboxEnv.call_tool`; this class does the rest: task selection, sandbox
lifecycle, reset to any turn of a trajectory (replay with divergence checks and the
snapshot cache of :mod:`pivotgym.replay`), fork, malformed actions, turn limits, and the
task's test at the end of an episode.
"""

from __future__ import annotations

import abc
import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotgym.env import AsyncEnv, Conversation, Message, Observation, ToolCall
from pivotgym.errors import DataError, DivergenceError, InfraError
from pivotgym.grading import grade
from pivotgym.ledger import Ledger
from pivotgym.replay import (
    POLICIES,
    CacheEntry,
    Divergence,
    Normalizer,
    SnapshotCache,
    compare_outputs,
    prefix_hashes,
)
from pivotgym.sandbox import Sandbox, SandboxSpec, get_backend
from pivotgym.tasks import Task, resolve_task
from pivotgym.trajectory import Trajectory, parse_trajectory

RESET_OPTIONS = {"task", "trajectory", "turn", "divergence"}


@dataclass
class EnvStats:
    """Wall-clock and counts of what an environment did.

    Kept out of ``info`` on purpose: ``info`` is a function of the state and the action
    (Gymnasium's determinism check compares it across identical steps), while seconds
    vary from run to run. ``last_step_s`` and ``last_call_s`` give the latest step's
    timing; the totals feed cost accounting.
    """

    resets: int = 0
    reset_s: float = 0.0
    replayed_steps: int = 0
    steps: int = 0
    step_s: float = 0.0
    tool_calls: int = 0
    exec_s: float = 0.0
    last_step_s: float = 0.0
    last_call_s: list[float] = field(default_factory=list)


class SandboxEnv(AsyncEnv):
    """An episode is one task in one sandbox; the agent acts through tool calls.

    Keyword options of the constructor (``pivotgym.make(name, **options)``):

    - ``tasks``: the tasks fresh episodes draw from (a list of :class:`Task`);
    - ``sandbox``: ``"bwrap"`` or ``"docker"`` (default: bwrap where it runs);
    - ``timeout_s``, ``memory_mb``, ``max_processes``, ``max_output_bytes``, ``disk_mb``,
      ``max_files``, ``cpus``: sandbox limits, defaulting to each task's ``task.toml``;
    - ``max_turns``: assistant turns before the episode is truncated (default: the task's);
      it is truncated too once its steps took the task's ``[agent] timeout_sec``;
    - ``max_calls``: tool calls one turn may make (default 16); the rest are answered
      with an error and not run, so that one turn's time stays bounded;
    - ``divergence``: replay policy, ``"strict"`` (default), ``"lenient"`` or ``"off"``;
    - ``cache``: a :class:`SnapshotCache` to share between environments;
    - ``ledger``: a :class:`~pivotgym.ledger.Ledger` that steps (replayed ones included)
      and their seconds are charged to; forks share it.
    """

    name: str = "sandbox"
    system_prompt: str = "You are an agent working in a sandbox. Use the tools to act."

    def __init__(
        self,
        tasks: Sequence[Task] = (),
        *,
        sandbox: str | None = None,
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        max_processes: int | None = None,
        max_output_bytes: int | None = None,
        disk_mb: int | None = None,
        max_files: int | None = None,
        cpus: float | None = None,
        max_turns: int | None = None,
        max_calls: int = 16,
        divergence: Divergence = "strict",
        cache: SnapshotCache | None = None,
        ledger: Ledger | None = None,
        render_mode: str | None = None,
    ) -> None:
        if divergence not in POLICIES:
            raise DataError(f"must be one of {', '.join(POLICIES)}", field="divergence")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise DataError(f"unsupported render mode {render_mode!r}", field="render_mode")
        # Kept as given: a lazy sequence (InlineTasks) materializes only the tasks used.
        self.tasks = tasks if isinstance(tasks, Sequence) else list(tasks)
        self.backend = get_backend(sandbox)
        self.limit_overrides = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_processes": max_processes,
            "max_output_bytes": max_output_bytes,
            "disk_mb": disk_mb,
            "max_files": max_files,
            "cpus": cpus,
        }
        self.max_turns_override = max_turns
        if max_calls < 1:
            raise DataError("must be at least 1", field="max_calls")
        self.max_calls = max_calls
        self.episode_s = 0.0
        self.divergence = divergence
        self.cache = (cache or SnapshotCache()).acquire()
        self.ledger = ledger
        self.render_mode = render_mode
        self.observation_space = Conversation()
        self.action_space = ToolCall(self.tools)
        self.task: Task | None = None
        self.sandbox: Sandbox | None = None
        self.messages: Observation = []
        self.turn = 0
        self.done = False
        self.stats = EnvStats()
        self._closed = False

    # ------------------------------------------------------------------ subclass hooks

    @abc.abstractmethod
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Execute one tool call in ``self.sandbox``; return the tool message text and info.

        Raise ``ValueError`` for arguments the tool rejects (the agent sees the message).
        """

    finishing_tools: frozenset[str] = frozenset()
    """Tools whose call ends the episode after it runs (e.g. ``submit``)."""

    # ------------------------------------------------------------------------ helpers

    @property
    def max_turns(self) -> int:
        if self.max_turns_override is not None:
            return self.max_turns_override
        return self.task.config.max_turns if self.task is not None else 20

    def spec_for(self, task: Task) -> SandboxSpec:
        env_dir = task.environment_dir
        return SandboxSpec(
            workdir=task.config.workdir,
            files=env_dir if env_dir.is_dir() else None,
            dockerfile=task.dockerfile,
            limits=task.config.limits(**self.limit_overrides),
            labels={"task": task.name, "env": self.name},
        )

    def initial_messages(self, task: Task) -> Observation:
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": task.instruction},
        ]

    async def _replace_sandbox(self, sandbox: Sandbox | None) -> None:
        old, self.sandbox = self.sandbox, sandbox
        if old is not None:
            await old.close()

    # -------------------------------------------------------------------------- reset

    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        self._seed(seed)
        options = dict(options or {})
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise DataError(
                f"unknown reset option(s): {', '.join(sorted(unknown))}", field="options"
            )
        policy = options.get("divergence", self.divergence)
        if policy not in POLICIES:
            raise DataError(f"must be one of {', '.join(POLICIES)}", field="options.divergence")
        self.done = False
        if "trajectory" in options:
            return await self._reset_to_turn(options["trajectory"], options.get("turn", 0), policy)
        task = self._pick_task(options.get("task"))
        start = time.perf_counter()
        await self._replace_sandbox(None)
        self.task = task
        self.sandbox = await self.backend.create(self.spec_for(task))
        self.messages = self.initial_messages(task)
        self.turn = 0
        self.episode_s = 0.0
        info = {
            "task": task.name,
            "turn": 0,
            "replayed_steps": 0,
            "restored_from_turn": 0,
            "divergences": [],
        }
        self._count_reset(start, 0)
        return copy.deepcopy(self.messages), info

    def _count_reset(self, start: float, replayed: int) -> None:
        seconds = time.perf_counter() - start
        self.stats.resets += 1
        self.stats.reset_s += seconds
        self.stats.replayed_steps += replayed
        if self.ledger is not None:
            self.ledger.count(env_steps=replayed)
            self.ledger.seconds["environment"] += seconds

    def _pick_task(self, choice: Task | str | None) -> Task:
        if isinstance(choice, Task):
            return choice
        if not self.tasks:
            raise DataError(f"{self.name}: no tasks to start from; pass tasks= or options['task']")
        if choice is None:
            return self.tasks[int(self.np_random.integers(len(self.tasks)))]
        names = getattr(self.tasks, "names", None) or [t.name for t in self.tasks]
        if choice in names:
            return self.tasks[names.index(choice)]
        raise DataError(f"no task named {choice!r} in this environment", field="options.task")

    async def _reset_to_turn(
        self, trajectory: Trajectory | dict[str, Any], turn: int, policy: Divergence
    ) -> tuple[Observation, dict[str, Any]]:
        if isinstance(trajectory, dict):
            trajectory = parse_trajectory(trajectory)
        if not isinstance(turn, int) or not 0 <= turn <= trajectory.num_turns:
            raise DataError(
                f"turn {turn!r} out of range 0..{trajectory.num_turns} for "
                f"trajectory {trajectory.id!r}",
                field="options.turn",
            )
        start = time.perf_counter()
        task = resolve_task(trajectory.task, trajectory.base_dir, source=trajectory.id)
        self.task = task
        normalize = Normalizer(task.config.normalize)
        actions = [trajectory.action(i) for i in range(turn)]
        hashes = prefix_hashes(actions)
        spec = self.spec_for(task)
        cache = self.cache
        depth, entry = cache.deepest(task.key, hashes)
        await self._replace_sandbox(None)
        if entry is not None:
            cache.hits += 1
            self.sandbox = await self.backend.create(spec, snapshot=entry.snapshot)
            divergences = list(entry.divergences)
        else:
            cache.misses += 1
            self.sandbox = await self.backend.create(spec)
            divergences = []
            await cache.put(task.key, hashes[0], CacheEntry(await self.sandbox.snapshot()))
        for i in range(depth, turn):
            self.turn = i
            replayed, _, _ = await self._execute(trajectory.action(i))
            cache.replayed_steps += 1
            if policy != "off":
                diff = compare_outputs(trajectory.tool_results(i), replayed, normalize)
                if diff is not None:
                    if policy == "strict":
                        await self._replace_sandbox(None)
                        raise DivergenceError(trajectory.id, i, *diff)
                    divergences.append({"turn": i, "recorded": diff[0], "replayed": diff[1]})
            snap = await self.sandbox.snapshot()
            await cache.put(task.key, hashes[i + 1], CacheEntry(snap, list(divergences)))
        self.messages = copy.deepcopy(trajectory.prefix(turn))
        self.turn = turn
        self.episode_s = 0.0
        info = {
            "task": task.name,
            "trajectory": trajectory.id,
            "turn": turn,
            "restored_from_turn": depth,
            "replayed_steps": turn - depth,
            "divergences": divergences,
        }
        self._count_reset(start, turn - depth)
        return copy.deepcopy(self.messages), info

    # --------------------------------------------------------------------------- step

    async def _execute(self, action: Message) -> tuple[list[Message], list[dict[str, Any]], bool]:
        """Run an assistant message's tool calls; return tool messages, per-call info, finish.

        Each call gets one tool message, in order, and one info whose ``error`` is None
        or why the call did not run: ``"malformed_call"`` (not an object with a
        ``function`` object whose ``name`` is a string), ``"unknown_tool"``,
        ``"invalid_arguments"`` (not a JSON object, nested too deeply to parse, or
        rejected by the tool), or ``"too_many_calls"`` (past ``max_calls`` in one turn).
        A reply's ``tool_call_id`` is the call's ``id`` when that is a non-empty string,
        else None.

        ``tool_calls`` absent, null or empty makes no call. Any other value that is not
        a list (a string, an object) holds no valid call: it gets one
        ``"malformed_call"`` reply, and the episode goes on as after any bad call.
        """
        raw_calls = action.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            # Iterating it would invent calls (a string, one per character).
            content = (
                "Error: tool_calls must be a list of tool calls, "
                f"not {type(raw_calls).__name__}; no tool was called."
            )
            reply = {"role": "tool", "tool_call_id": None, "content": content}
            return [reply], [{"tool": None, "error": "malformed_call"}], False
        known = [t["function"]["name"] for t in self.tools]
        tool_messages: list[Message] = []
        infos: list[dict[str, Any]] = []
        finished = False
        for index, call in enumerate(raw_calls):
            call_id = call.get("id") if isinstance(call, dict) else None
            call_id = call_id if isinstance(call_id, str) and call_id else None
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            info: dict[str, Any] = {"tool": name if isinstance(name, str) else None, "error": None}
            if index >= self.max_calls:
                content = f"Error: at most {self.max_calls} calls a turn; this one did not run."
                info["error"] = "too_many_calls"
            elif not isinstance(call, dict):
                content = f"Error: the tool call is not an object (got {type(call).__name__})."
                info["error"] = "malformed_call"
            elif not isinstance(name, str):
                content = 'Error: a tool call needs a "function" object with a string "name".'
                info["error"] = "malformed_call"
            elif name not in known:
                content = f"Error: unknown tool {name!r}. Available tools: {', '.join(known)}."
                info["error"] = "unknown_tool"
            else:
                raw = function.get("arguments")
                try:
                    arguments = json.loads("{}" if raw is None or raw == "" else raw)
                    if not isinstance(arguments, dict):
                        raise ValueError("arguments must be a JSON object")
                # json.loads raises RecursionError on input nested ~1,000 levels deep.
                except (ValueError, TypeError, RecursionError) as exc:
                    content = f"Error: tool arguments are not a valid JSON object ({exc})."
                    info["error"] = "invalid_arguments"
                else:
                    try:
                        content, detail = await self.call_tool(name, arguments)
                        info.update(detail)
                    except ValueError as exc:
                        content = f"Error: {exc}"
                        info["error"] = "invalid_arguments"
                    finished |= name in self.finishing_tools
            tool_messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
            infos.append(info)
        return tool_messages, infos, finished

    async def astep(self, action: Message) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self.sandbox is None or self.task is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("the episode is over; call reset()")
        if not isinstance(action, dict) or action.get("role") != "assistant":
            raise DataError(
                "an action is one assistant message (a dict with role 'assistant')", field="action"
            )
        start = time.perf_counter()
        info: dict[str, Any] = {"turn": self.turn, "calls": [], "infra_error": None}
        self.messages.append(copy.deepcopy(action))
        if action.get("parse_error"):
            info["malformed"] = action["parse_error"]
        try:
            tool_messages, calls, finished = await self._execute(action)
        except InfraError as exc:
            info["infra_error"] = str(exc)
            self.done = True
            return copy.deepcopy(self.messages), 0.0, False, True, info
        self.messages.extend(tool_messages)
        self.stats.last_call_s = [c.pop("duration_s", 0.0) for c in calls]
        self.stats.tool_calls += len(calls)
        self.stats.exec_s += sum(self.stats.last_call_s)
        info["calls"] = calls
        info["tool_errors"] = [c["error"] for c in calls if c.get("error")]
        self.turn += 1
        terminated = finished or not action.get("tool_calls")
        # Harbor's [agent] timeout_sec bounds the episode's own time (grading aside).
        self.episode_s += time.perf_counter() - start
        out_of_time = self.episode_s >= self.task.config.agent_timeout_s
        truncated = not terminated and (self.turn >= self.max_turns or out_of_time)
        if truncated and out_of_time:
            info["agent_timeout"] = True
        reward = 0.0
        if terminated or truncated:
            self.done = True
            try:
                reward, test_info = await self.evaluate()
                info["test"] = test_info
            except InfraError as exc:
                info["infra_error"] = str(exc)
        self.stats.steps += 1
        self.stats.last_step_s = time.perf_counter() - start
        self.stats.step_s += self.stats.last_step_s
        if self.ledger is not None:
            self.ledger.count(env_steps=1)
            self.ledger.seconds["environment"] += self.stats.last_step_s
        return copy.deepcopy(self.messages), reward, terminated, truncated, info

    async def evaluate(self) -> tuple[float, dict[str, Any]]:
        """Score the episode's end state with the task's ``tests/test.sh``; reward in [0, 1].

        The test runs apart from the agent's sandbox, on a copy of its working
        directory only (see :mod:`pivotgym.grading`), so nothing else the agent left
        behind reaches the grader; ``info["tampering"]`` lists what was aimed at it.
        """
        assert self.sandbox is not None and self.task is not None
        return await grade(self.sandbox, self.task)

    # --------------------------------------------------------------------- fork/close

    async def afork(self, n: int) -> list[SandboxEnv]:
        if self.sandbox is None:
            raise RuntimeError("call reset() before fork()")
        if n < 1:
            raise ValueError("fork(n) needs n >= 1")
        sandboxes = await self.sandbox.fork(n)
        children = []
        for sandbox in sandboxes:
            child = copy.copy(self)
            child.__dict__ = dict(self.__dict__)
            child.sandbox = sandbox
            child.messages = copy.deepcopy(self.messages)
            child.cache = self.cache.acquire()
            child._np_random = copy.deepcopy(self._np_random)
            child._closed = False
            child.stats = EnvStats()
            children.append(child)
        return children

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._replace_sandbox(None)
        await self.cache.release()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for m in self.messages:
            text = m.get("content") or ""
            for call in m.get("tool_calls") or []:
                text += f"\n-> {call['function']['name']}({call['function']['arguments']})"
            lines.append(f"[{m['role']}] {text}")
        return "\n".join(lines)
