"""The environment API: async first, with a ``gymnasium.Env`` facade.

An environment is a conversation with a sandboxed world. Observations are the chat
messages so far (OpenAI format); an action is one assistant message, whose tool calls
the environment executes. Subclasses implement the coroutines ``areset``, ``astep``,
``afork`` and ``aclose``; the synchronous ``reset``, ``step``, ``fork`` and ``close`` that
Gymnasium expects run those coroutines on one background event loop shared by all
environments, so they work from plain scripts, notebooks and running loops alike.

``reset(options=...)`` understands:

- ``{"task": task_or_name}``: start that task fresh (default: a task drawn with the
  seeded ``np_random`` from the environment's task set);
- ``{"trajectory": traj, "turn": t}``: the state just before assistant turn ``t`` of a
  recorded trajectory, sandbox included (see :mod:`pivotgym.core.replay`).
"""

from __future__ import annotations

import abc
import asyncio
import json
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, TypeVar

import gymnasium
import numpy as np
from gymnasium import spaces

from pivotgym.core.trajectory import ROLES

T = TypeVar("T")
Message = dict[str, Any]
Observation = list[Message]

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on pivotgym's background event loop and return its result."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="pivotgym-loop", daemon=True).start()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is _loop:
        coro.close()
        raise RuntimeError(
            "a synchronous env method was called from inside pivotgym's own loop; "
            "await the async twin (areset/astep/afork/aclose) instead"
        )
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()


class Conversation(spaces.Space[Observation]):
    """The space of chat transcripts: lists of valid OpenAI-format messages."""

    def __init__(self, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, list) and all(
            isinstance(m, dict)
            and m.get("role") in ROLES
            and isinstance(m.get("content"), str | None)
            for m in x
        )

    def sample(self, mask: Any = None, probability: Any = None) -> Observation:
        words = ["list", "the", "files", "count", "lines", "in", "logs", "please"]
        n = int(self.np_random.integers(2, 6))
        return [{"role": "user", "content": " ".join(self.np_random.choice(words, n))}]

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conversation)


class ToolCall(spaces.Space[Message]):
    """The space of assistant messages that call one of the given tools.

    ``sample()`` draws a call with arguments filled from each tool's JSON schema
    (random short identifiers for strings), which makes harmless but real actions.
    """

    def __init__(self, tools: Sequence[dict[str, Any]], seed: Any = None) -> None:
        super().__init__(shape=None, dtype=None, seed=seed)
        self.tools = list(tools)
        self.names = [t["function"]["name"] for t in self.tools]

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or x.get("role") != "assistant":
            return False
        calls = x.get("tool_calls") or []
        return isinstance(calls, list) and all(
            isinstance(c, dict)
            and isinstance(c.get("function"), dict)
            and c["function"].get("name") in self.names
            for c in calls
        )

    def sample(self, mask: Any = None, probability: Any = None) -> Message:
        tool = self.tools[int(self.np_random.integers(len(self.tools)))]["function"]
        arguments = {}
        properties = tool.get("parameters", {}).get("properties", {})
        for name, schema in properties.items():
            if schema.get("type") == "string":
                letters = self.np_random.choice(list("abcdefghijklmnopqrstuvwxyz"), 8)
                arguments[name] = "echo " + "".join(letters)
            elif schema.get("type") in ("integer", "number"):
                arguments[name] = int(self.np_random.integers(0, 100))
            elif schema.get("type") == "boolean":
                arguments[name] = bool(self.np_random.integers(2))
        call_id = f"call_{int(self.np_random.integers(1 << 30)):08x}"
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps(arguments)},
                }
            ],
        }

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolCall) and other.names == self.names


class AsyncEnv(gymnasium.Env[Observation, Message], abc.ABC):
    """Base class of pivotgym environments.

    ``areset`` returns ``(observation, info)``; ``astep`` returns ``(observation, reward,
    terminated, truncated, info)`` with Gymnasium's meanings: ``terminated`` when the
    episode reached its natural end (the agent finished), ``truncated`` when a limit cut it
    (turn limit, infrastructure failure). ``afork(n)`` returns ``n`` independent
    environments in this one's exact state; they share nothing mutable with it.
    ``aevaluate()`` scores the episode as it stands with the env's grader. ``admits(task)``
    says whether this env, as its options made it, runs ``task`` (an env of one domain
    does not run another's): a run keeps only the data its env admits.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    tools: list[dict[str, Any]]

    @abc.abstractmethod
    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]: ...

    @abc.abstractmethod
    async def astep(
        self, action: Message
    ) -> tuple[Observation, float, bool, bool, dict[str, Any]]: ...

    @abc.abstractmethod
    async def afork(self, n: int) -> list[AsyncEnv]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    @abc.abstractmethod
    async def aevaluate(self, *, terminated: bool = True) -> tuple[float, dict[str, Any]]:
        """The episode's reward as it stands, in [0, 1], and the grader's info;
        ``terminated`` says whether it reached its natural end or was cut by a limit."""

    def admits(self, task: Any) -> bool:
        """Whether this env runs ``task`` (default: every task of its format)."""
        return True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        return run_sync(self.areset(seed=seed, options=options))

    def step(self, action: Message) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        return run_sync(self.astep(action))

    def fork(self, n: int) -> list[AsyncEnv]:
        return run_sync(self.afork(n))

    def close(self) -> None:
        run_sync(self.aclose())

    def evaluate(self, *, terminated: bool = True) -> tuple[float, dict[str, Any]]:
        return run_sync(self.aevaluate(terminated=terminated))

    def _seed(self, seed: int | None) -> None:
        """Seed ``np_random`` as ``gymnasium.Env.reset`` does."""
        gymnasium.Env.reset(self, seed=seed)
