"""Tool-calling environments over any world: the layer every pivotgym env shares.

A :class:`ToolEnv` has no opinion about the world it acts on. A subclass says:

- ``tools`` (an instance property: a domain's tools depend on the domain) and
  :meth:`call_tool`, which runs one call on ``self.world``;
- :meth:`create_world` (a task's fresh world, or one made from a snapshot) and
  :meth:`resolve_task` (a trajectory's task);
- :meth:`mutates` and :meth:`divergence`, the replay rules (:mod:`pivotgym.core.replay`);
- ``grader`` (:mod:`pivotgym.core.grader`), which scores a finished episode;
- optionally :meth:`respond`, what answers an assistant message that calls no tool
  (default: nothing, and the episode ends; the tool-API env's user simulator replies,
  and ends it when the user stops).

This class does the rest: task selection, reset to a fresh task or to any turn of a
trajectory, dispatch with malformed calls answered as tool messages, the calls-per-turn
cap, finishing tools, the turn limit and the episode's time budget, fork, stats and the
ledger. Options are a typed dataclass per env (:class:`ToolEnvOptions` and its
subclasses); keyword options given to the constructor (or to ``pivotgym.make``) are
checked into it, naming any that the env does not take.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import json
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pivotgym.core.env import AsyncEnv, Conversation, Message, Observation, ToolCall
from pivotgym.core.grader import Episode, Grader
from pivotgym.core.ledger import Ledger
from pivotgym.core.replay import POLICIES, Divergence, SnapshotCache, restore
from pivotgym.core.task import Task
from pivotgym.core.trajectory import Trajectory, parse_trajectory
from pivotgym.core.world import World, WorldSnapshot
from pivotgym.errors import DataError, InfraError

RESET_OPTIONS = {"task", "trajectory", "turn", "divergence"}


@dataclass(frozen=True)
class ToolEnvOptions:
    """Options every tool env takes.

    ``max_turns``: assistant turns before the episode is truncated (default: the
    task's); ``max_calls``: tool calls one turn may make (the rest are answered with an
    error and not run, so one turn's time stays bounded); ``divergence``: the replay
    policy, ``strict``, ``lenient`` or ``off``.
    """

    max_turns: int | None = None
    max_calls: int = 16
    divergence: Divergence = "strict"

    def __post_init__(self) -> None:
        if self.divergence not in POLICIES:
            raise DataError(f"must be one of {', '.join(POLICIES)}", field="divergence")
        if self.max_calls < 1:
            raise DataError("must be at least 1", field="max_calls")
        if self.max_turns is not None and self.max_turns < 1:
            raise DataError("must be at least 1", field="max_turns")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ToolEnvOptions:
        """The options from keywords, each checked against its field's type: an unknown
        name or a value of the wrong type is a ``DataError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DataError(
                f"unknown option {unknown[0]!r} (options: {', '.join(sorted(known))})",
                field=unknown[0],
            )
        hints = typing.get_type_hints(cls)
        for name, value in options.items():
            if not _fits(value, hints[name]):
                raise DataError(f"expected {_type_name(hints[name])}, got {value!r}", field=name)
        return cls(**options)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (the scalar types, unions of them and
    ``Literal`` that options use; other types are the env's to check)."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, int | float if hint is float else int) and not isinstance(
            value, bool
        )
    if hint in (str, bool):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


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


class ToolEnv(AsyncEnv):
    """An episode is one task in one world; the agent acts through tool calls.

    Constructor: ``tasks`` (what fresh episodes draw from), ``options`` (the env's
    options dataclass) or the same as keywords, ``cache`` (a :class:`SnapshotCache` to
    share between environments), ``ledger`` (a :class:`~pivotgym.core.ledger.Ledger` that
    steps, replayed ones included, and their seconds are charged to; forks share it).
    """

    name: str = "tools"
    Options: ClassVar[type[ToolEnvOptions]] = ToolEnvOptions
    finishing_tools: frozenset[str] = frozenset()
    """Tools whose call ends the episode after it runs (e.g. ``submit``)."""

    def __init__(
        self,
        tasks: Sequence[Task] = (),
        options: ToolEnvOptions | None = None,
        *,
        cache: SnapshotCache | None = None,
        ledger: Ledger | None = None,
        render_mode: str | None = None,
        **keywords: Any,
    ) -> None:
        if options is None:
            options = self.Options.from_options(keywords)
        elif keywords:
            raise DataError("give options or keywords, not both", field=sorted(keywords)[0])
        if not isinstance(options, self.Options):
            raise DataError(f"must be {self.Options.__name__}", field="options")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise DataError(f"unsupported render mode {render_mode!r}", field="render_mode")
        self.options = options
        # Kept as given: a lazy sequence (InlineTasks) materializes only the tasks used.
        self.tasks = tasks if isinstance(tasks, Sequence) else list(tasks)
        # Not ``cache or ...``: an empty cache is falsy, and would not be shared.
        self.cache = (cache if cache is not None else SnapshotCache()).acquire()
        self.ledger = ledger
        self.render_mode = render_mode
        self.observation_space = Conversation()
        self.action_space = ToolCall(self.tools)
        self.task: Any = None
        self.world: World | None = None
        self.messages: Observation = []
        self.turn = 0
        self.done = False
        self.episode_s = 0.0
        self.stats = EnvStats()
        self._closed = False

    # ------------------------------------------------------------------ subclass hooks

    @property
    @abc.abstractmethod
    def tools(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of this env's tools."""

    @property
    @abc.abstractmethod
    def grader(self) -> Grader:
        """What scores a finished episode."""

    @abc.abstractmethod
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Execute one call on ``self.world``; return the tool message text and info.

        Raise ``ValueError`` for arguments the tool rejects (the agent sees the message).
        A ``duration_s`` in the info is moved to :attr:`stats`; a true ``ends_episode``
        ends the episode after this turn, as a finishing tool would (a web page whose
        task reports itself done).
        """

    @abc.abstractmethod
    async def create_world(self, task: Any, snapshot: WorldSnapshot | None = None) -> World:
        """A fresh world of ``task``, or one in ``snapshot``'s state."""

    @abc.abstractmethod
    def resolve_task(self, trajectory: Trajectory) -> Any:
        """The task object of a recorded trajectory."""

    def mutates(self, name: Any, call: Any) -> bool:
        """Whether a call of tool ``name`` may change the world (default: any may)."""
        return True

    def divergence(
        self, task: Any, recorded: list[Message], replayed: list[Message]
    ) -> tuple[str, str] | None:
        """``None`` when replayed tool results match the recorded ones, else both texts
        (default: equal text)."""
        expected = "\n".join(m.get("content") or "" for m in recorded)
        actual = "\n".join(m.get("content") or "" for m in replayed)
        return None if expected == actual else (expected, actual)

    async def initial_messages(self, task: Any) -> Observation:
        """The conversation a fresh episode of ``task`` starts with (async: a simulated
        user may have to speak first)."""
        return [{"role": "user", "content": task.instruction}]

    async def respond(self, action: Message) -> tuple[Message | None, bool]:
        """The reply to an assistant message that calls no tool (``None``: none), and
        whether the episode ends with it (default: no reply, and it ends)."""
        return None, True

    def fork_state(self, child: ToolEnv) -> None:
        """Copy into a fork what a subclass keeps beside the world (default: nothing)."""

    def task_max_turns(self, task: Any) -> int:
        return task.max_turns

    def task_time_budget_s(self, task: Any) -> float | None:
        """Seconds an episode's steps may take in all (``None``: no limit)."""
        return None

    # ------------------------------------------------------------------------ helpers

    @property
    def max_turns(self) -> int:
        if self.options.max_turns is not None:
            return self.options.max_turns
        return self.task_max_turns(self.task) if self.task is not None else 20

    async def replace_world(self, world: World | None) -> None:
        old, self.world = self.world, world
        if old is not None:
            await old.close()

    def _pick_task(self, choice: Any) -> Any:
        if choice is not None and not isinstance(choice, str):
            return choice
        if not self.tasks:
            raise DataError(f"{self.name}: no tasks to start from; pass tasks= or options['task']")
        if choice is None:
            return self.tasks[int(self.np_random.integers(len(self.tasks)))]
        names = getattr(self.tasks, "names", None) or [t.name for t in self.tasks]
        if choice in names:
            return self.tasks[names.index(choice)]
        raise DataError(f"no task named {choice!r} in this environment", field="options.task")

    def _count_reset(self, start: float, replayed: int) -> None:
        seconds = time.perf_counter() - start
        self.stats.resets += 1
        self.stats.reset_s += seconds
        self.stats.replayed_steps += replayed
        if self.ledger is not None:
            self.ledger.count(env_steps=replayed)
            self.ledger.seconds["environment"] += seconds

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
        policy = options.get("divergence", self.options.divergence)
        if policy not in POLICIES:
            raise DataError(f"must be one of {', '.join(POLICIES)}", field="options.divergence")
        self.done = False
        self.episode_s = 0.0
        start = time.perf_counter()
        if "trajectory" in options:
            return await self._reset_to_turn(options["trajectory"], options.get("turn", 0),
                                             policy, start)  # fmt: skip
        task = self._pick_task(options.get("task"))
        await self.replace_world(None)
        self.task = task
        self.world = await self.create_world(task)
        self.messages = await self.initial_messages(task)
        self.turn = 0
        info = {
            "task": task.name,
            "turn": 0,
            "replayed_steps": 0,
            "restored_from_turn": 0,
            "divergences": [],
        }
        self._count_reset(start, 0)
        return copy.deepcopy(self.messages), info

    async def _reset_to_turn(
        self, trajectory: Trajectory | dict[str, Any], turn: int, policy: Divergence, start: float
    ) -> tuple[Observation, dict[str, Any]]:
        if isinstance(trajectory, dict):
            trajectory = parse_trajectory(trajectory)
        if not isinstance(turn, int) or not 0 <= turn <= trajectory.num_turns:
            raise DataError(
                f"turn {turn!r} out of range 0..{trajectory.num_turns} for "
                f"trajectory {trajectory.id!r}",
                field="options.turn",
            )
        restored = await restore(self, trajectory, turn, policy, self.cache)
        self.task = restored.task
        self.messages = copy.deepcopy(trajectory.prefix(turn))
        info = {
            "task": restored.task.name,
            "trajectory": trajectory.id,
            "turn": turn,
            "restored_from_turn": restored.restored_from_turn,
            "replayed_steps": restored.replayed_steps,
            "divergences": restored.divergences,
        }
        self._count_reset(start, restored.replayed_steps)
        return copy.deepcopy(self.messages), info

    # --------------------------------------------------------------------------- step

    async def execute(self, action: Message) -> tuple[list[Message], list[dict[str, Any]], bool]:
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
        max_calls = self.options.max_calls
        tool_messages: list[Message] = []
        infos: list[dict[str, Any]] = []
        finished = False
        for index, call in enumerate(raw_calls):
            call_id = call.get("id") if isinstance(call, dict) else None
            call_id = call_id if isinstance(call_id, str) and call_id else None
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            info: dict[str, Any] = {"tool": name if isinstance(name, str) else None, "error": None}
            if index >= max_calls:
                content = f"Error: at most {max_calls} calls a turn; this one did not run."
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
                        finished |= bool(detail.pop("ends_episode", False))
                        info.update(detail)
                    except ValueError as exc:
                        content = f"Error: {exc}"
                        info["error"] = "invalid_arguments"
                    finished |= name in self.finishing_tools
            tool_messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
            infos.append(info)
        return tool_messages, infos, finished

    async def astep(self, action: Message) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self.world is None or self.task is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("the episode is over; call reset()")
        if not isinstance(action, dict) or action.get("role") != "assistant":
            raise DataError(
                "an action is one assistant message (a dict with role 'assistant')", field="action"
            )
        if not isinstance(action.get("content"), str | None):
            raise DataError("must be a string or null", field="action.content")
        start = time.perf_counter()
        info: dict[str, Any] = {"turn": self.turn, "calls": [], "infra_error": None}
        self.messages.append(copy.deepcopy(action))
        if action.get("parse_error"):
            info["malformed"] = action["parse_error"]
        try:
            tool_messages, calls, finished = await self.execute(action)
            reply, ends = (None, False) if action.get("tool_calls") else await self.respond(action)
        except InfraError as exc:
            info["infra_error"] = str(exc)
            self.done = True
            return copy.deepcopy(self.messages), 0.0, False, True, info
        self.messages.extend(tool_messages)
        if reply is not None:
            self.messages.append(reply)
        self.stats.last_call_s = [c.pop("duration_s", 0.0) for c in calls]
        self.stats.tool_calls += len(calls)
        self.stats.exec_s += sum(self.stats.last_call_s)
        info["calls"] = calls
        info["tool_errors"] = [c["error"] for c in calls if c.get("error")]
        self.turn += 1
        terminated = finished or ends
        self.episode_s += time.perf_counter() - start
        budget = self.task_time_budget_s(self.task)
        out_of_time = budget is not None and self.episode_s >= budget
        truncated = not terminated and (self.turn >= self.max_turns or out_of_time)
        if truncated and out_of_time:
            info["agent_timeout"] = True
        reward = 0.0
        if terminated or truncated:
            self.done = True
            try:
                reward, test_info = await self.aevaluate(terminated=terminated)
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

    async def aevaluate(self, *, terminated: bool = True) -> tuple[float, dict[str, Any]]:
        """Score the episode as it stands with the env's grader; reward in [0, 1].

        ``terminated`` is whether the episode reached its natural end (a truncated one
        may score 0 by the grader's rules)."""
        if self.world is None or self.task is None:
            raise RuntimeError("call reset() before evaluate()")
        episode = Episode(self.task, self.world, list(self.messages), terminated)
        return await self.grader.grade(episode)

    # --------------------------------------------------------------------- fork/close

    async def afork(self, n: int) -> list[ToolEnv]:
        if self.world is None:
            raise RuntimeError("call reset() before fork()")
        if n < 1:
            raise ValueError("fork(n) needs n >= 1")
        worlds = await self.world.fork(n)
        return [self._child(world) for world in worlds]

    def _child(self, world: World) -> ToolEnv:
        """A new env of this class with this one's options, in this one's episode state."""
        child = self.spawn()
        child.task = self.task
        child.world = world
        child.messages = copy.deepcopy(self.messages)
        child.turn = self.turn
        child.done = self.done
        child.episode_s = self.episode_s
        child._np_random = copy.deepcopy(self._np_random)
        self.fork_state(child)
        return child

    def spawn(self) -> ToolEnv:
        """A fresh env built like this one (same tasks, options, cache and ledger)."""
        return type(self)(self.tasks, self.options, cache=self.cache, ledger=self.ledger,
                          render_mode=self.render_mode)  # fmt: skip

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.replace_world(None)
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
