"""τ²-bench's domains as a pivotgym environment: ``pivotgym.make("tau2", domain="airline")``.

A conversation opens as τ²'s does: the system prompt with the domain's policy, τ²'s
greeting, and the user's first message; an assistant message that calls no tool is said
to the user, whose simulator answers and ends the episode when done
(:mod:`pivotgym.envs.tau2.user`; the scripted one by default, a language model where
one is given). The agent sees τ²'s tool schemas and the domain's policy; a tool call
runs τ²'s own tool through τ²'s ``Environment.get_response``, so results and errors
(``Error: ...``) read exactly as τ² returns them. The world is the domain's databases,
forked copy-on-write (:mod:`pivotgym.envs.tau2.world`); its digest is τ²'s own database
hash. Replay re-executes only the calls of τ²'s ``write`` tools (upstream τ²'s rule; the
packaged ``set_state`` replays every call) and compares each result with the recorded
one as JSON, as upstream's ``set_state`` does, under pivotgym's strict / lenient / off
policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pivotgym.core.replay import json_divergence
from pivotgym.core.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tau2.domain import GREETING, Tau2Domain, get_domain
from pivotgym.envs.tau2.grader import Tau2Grader
from pivotgym.envs.tau2.messages import history_messages
from pivotgym.envs.tau2.tasks import Tau2Task, task_from_json
from pivotgym.envs.tau2.user import ScriptedUser, UserSimulator
from pivotgym.envs.tau2.world import Tau2Snapshot, Tau2World
from pivotgym.errors import DataError, InfraError

SYSTEM_PROMPT = (
    "You are a customer service agent. Help the user under the policy below. Each turn, "
    "either send the user a message or call tools, not both.\n\n<policy>\n{policy}\n</policy>"
)


@dataclass(frozen=True)
class Tau2Options(ToolEnvOptions):
    """Options of the τ² env, beside :class:`ToolEnvOptions`': ``domain``, one of τ²'s
    (``airline``, ``retail``, ``telecom``)."""

    domain: str = "airline"


class Tau2Env(ToolEnv):
    """One τ² domain as an environment (module docstring).

    ``user`` is the user simulator (default: :class:`~pivotgym.envs.tau2.user.ScriptedUser`);
    an :class:`~pivotgym.envs.tau2.user.EngineUser` puts a language model there. Fresh
    episodes draw only from the tasks of the env's domain.
    """

    name = "tau2"
    Options: ClassVar[type[ToolEnvOptions]] = Tau2Options
    options: Tau2Options
    world: Tau2World | None  # type: ignore[assignment]

    def __init__(self, *args: Any, user: UserSimulator | None = None, **kwargs: Any) -> None:
        # The domain is needed before the base class asks for the tools.
        options = kwargs.get("options") or (args[1] if len(args) > 1 else None)
        name = options.domain if options is not None else kwargs.get("domain", "airline")
        self.domain: Tau2Domain = get_domain(name)
        self.user: UserSimulator = user or ScriptedUser()
        super().__init__(*args, **kwargs)
        self.tasks = [t for t in self.tasks if self.admits(t)]

    def admits(self, task: Any) -> bool:
        return isinstance(task, Tau2Task) and task.domain == self.domain.name

    def spawn(self) -> Tau2Env:
        return Tau2Env(self.tasks, self.options, cache=self.cache, ledger=self.ledger,
                       render_mode=self.render_mode, user=self.user)  # fmt: skip

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.domain.tools

    @property
    def grader(self) -> Tau2Grader:
        return Tau2Grader(self.options.max_calls)

    async def create_world(self, task: Tau2Task, snapshot: Tau2Snapshot | None = None) -> Tau2World:
        self._check_domain(task)
        if snapshot is not None:
            return Tau2World.from_snapshot(self.domain, snapshot)
        world = Tau2World.initial(self.domain)
        state = task.model.initial_state
        if state is not None and (state.initialization_data or state.initialization_actions):
            environment = world.environment
            world.run(
                lambda: environment.set_state(
                    state.initialization_data, state.initialization_actions, []
                ),
                writes=True,
            )
        return world

    def _check_domain(self, task: Tau2Task) -> None:
        if task.domain != self.domain.name:
            raise DataError(
                f"task {task.name!r} is of τ² domain {task.domain!r}, this env is "
                f"{self.domain.name!r}",
                field="task.domain",
            )

    def resolve_task(self, trajectory: Trajectory) -> Tau2Task:
        return task_from_json(trajectory.task, f"{trajectory.id}: task")

    async def initial_messages(self, task: Tau2Task) -> list[dict[str, Any]]:
        """τ²'s opening: the greeting and the user's request; or, for a task that starts
        mid-conversation (``initial_state.message_history``), that history, its calls
        applied to the world by τ²'s own ``set_state`` (a recorded result that differs is
        an error), and the user's reply where the history ends with the agent speaking,
        as τ²'s orchestrator starts such a task."""
        system = {"role": "system", "content": SYSTEM_PROMPT.format(policy=self.domain.policy)}
        history = history_messages(task)
        if history:
            self._apply_history(task)
            messages = [system, *history]
            last = history[-1]
            if last["role"] != "assistant" or last.get("tool_calls"):
                return messages
        else:
            messages = [system, {"role": "assistant", "content": GREETING}]
        text, _ = await self.user.reply(task, messages)
        return [*messages, {"role": "user", "content": text}]

    def _apply_history(self, task: Tau2Task) -> None:
        world = self.world
        assert world is not None
        history = task.model.initial_state.message_history
        try:
            world.run(lambda: world.environment.set_state(None, None, history), writes=True)
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0]
            raise DataError(
                f"the message history does not replay on τ²'s tools: {first}",
                field=f"{task.name}: initial_state.message_history",
            ) from None

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from tau2.data_model.message import ToolCall

        world = self.world
        assert world is not None
        call = ToolCall(id="call", name=name, arguments=arguments, requestor="assistant")
        try:
            reply = world.run(
                lambda: world.environment.get_response(call),
                writes=self.mutates(name, None),
            )
        except Exception as exc:  # get_response answers the tool's own failures itself
            raise InfraError(
                f"τ² {self.domain.name} tool {name!r} failed outside the tool: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return reply.content, {"error": "tool_error" if reply.error else None}

    async def respond(self, action: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        text, stop = await self.user.reply(self.task, self.messages)
        return {"role": "user", "content": text}, stop

    def mutates(self, name: Any, call: Any) -> bool:
        if not isinstance(name, str):
            return True
        return not self.domain.pure_reads or self.domain.tool_type(name) == "write"

    def divergence(
        self, task: Any, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        return json_divergence(recorded, replayed)


def agent_turns(trajectory: Trajectory, turn: int) -> bool:
    """Candidate turns: every assistant turn but τ²'s greeting, which the orchestrator
    writes before the user speaks."""
    return not (turn == 0 and trajectory.action(0).get("content") == GREETING)
