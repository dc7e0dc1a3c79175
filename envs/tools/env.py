"""The tool-API environment: an agent serving a user under a policy, over a domain database.

``pivotgym.make("tools", domain="clinic")``. The world is the domain's database
(:mod:`pivotgym.envs.tools.world`); the tools are the domain's, with their JSON schemas;
the system prompt is the domain's policy. An assistant message that calls no tool is
said to the user, whose simulator answers (:mod:`pivotgym.envs.tools.user`; the scripted
one by default) and ends the episode when satisfied. A failed call answers ``Error:
...`` and changes nothing; a call with arguments of the wrong type answers naming the
argument. Replay re-executes only the write tools, and compares each replayed result with
the recorded one as JSON. The episode's reward is τ²-bench's (:mod:`pivotgym.envs.tools
.grader`).

A task is a :class:`~pivotgym.envs.tools.domain.ToolTask`; trajectories carry it inline
as JSON, so any trajectory restores anywhere the domain is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pivotgym.core.env import ToolCall
from pivotgym.core.replay import json_divergence
from pivotgym.core.tool_env import ToolEnv, ToolEnvOptions
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tools.db import Database
from pivotgym.envs.tools.domain import Domain, ToolTask, get_domain, task_from_json
from pivotgym.envs.tools.grader import DatabaseGrader
from pivotgym.envs.tools.tasks import initial_state
from pivotgym.envs.tools.user import ScriptedUser, UserSimulator
from pivotgym.envs.tools.world import DomainSnapshot, DomainWorld
from pivotgym.errors import DataError, InfraError

DEFAULT_DOMAIN = "clinic"
SYSTEM_PROMPT = (
    "You are a customer service agent. Help the user with their request using the tools, "
    "following the policy below exactly. Talk to the user in plain messages; each message "
    "either calls tools or speaks to the user.\n\n{policy}"
)


@dataclass(frozen=True)
class ToolsOptions(ToolEnvOptions):
    """Options of the tool-API env, beside :class:`ToolEnvOptions`'.

    ``domain``: a registered domain's name (``pivotgym.envs.tools.domain.domain_names``):
    only its tasks are taken. ``None`` (the default) follows each task's own domain, so
    one env serves trajectories of several domains; its tools are the current
    episode's domain's (``clinic``'s before the first reset).
    """

    domain: str | None = None


class ToolsEnv(ToolEnv):
    """A tool-API domain as an environment (module docstring).

    ``user`` is the user simulator (default: :class:`ScriptedUser` of the domain); an
    :class:`~pivotgym.envs.tools.user.EngineUser` puts a language model there.
    """

    name = "tools"
    Options: ClassVar[type[ToolEnvOptions]] = ToolsOptions
    options: ToolsOptions
    world: DomainWorld | None  # type: ignore[assignment]

    def __init__(self, *args: Any, user: UserSimulator | None = None, **kwargs: Any) -> None:
        # The domain is needed before the base class asks for the tools.
        options = kwargs.get("options") or (args[1] if len(args) > 1 else None)
        name = options.domain if options is not None else kwargs.get("domain")
        self.domain: Domain = get_domain(name or DEFAULT_DOMAIN)
        self.user: UserSimulator = user or ScriptedUser()
        super().__init__(*args, **kwargs)
        if self.options.domain is not None:
            self.tasks = [t for t in self.tasks if self.admits(t)]
        self._grader = DatabaseGrader()

    def admits(self, task: Any) -> bool:
        return self.options.domain is None or task.domain == self.options.domain

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.domain.tools

    @property
    def grader(self) -> DatabaseGrader:
        return self._grader

    @property
    def db(self) -> Database | None:
        return self.world.db if self.world is not None else None

    def fork_state(self, child: ToolEnv) -> None:
        assert isinstance(child, ToolsEnv)
        child.domain = self.domain  # a domain-following env is on its task's domain
        child.action_space = ToolCall(child.tools)

    def spawn(self) -> ToolsEnv:
        return ToolsEnv(self.tasks, self.options, cache=self.cache, ledger=self.ledger,
                        render_mode=self.render_mode, user=self.user)  # fmt: skip

    async def create_world(
        self, task: ToolTask, snapshot: DomainSnapshot | None = None
    ) -> DomainWorld:
        self._check_domain(task)
        if snapshot is not None:
            return DomainWorld.from_snapshot(self.domain, snapshot)
        return DomainWorld(self.domain, initial_state(task, self.domain))

    def _check_domain(self, task: ToolTask) -> None:
        if self.options.domain is None:
            self.domain = get_domain(task.domain)
        elif task.domain != self.domain.name:
            raise DataError(f"task {task.name!r} is of domain {task.domain!r}, this env is "
                            f"{self.domain.name!r}", field="task.domain")  # fmt: skip

    def _pick_task(self, choice: Any) -> Any:
        task = super()._pick_task(choice)
        self._check_domain(task)
        return task

    def resolve_task(self, trajectory: Trajectory) -> ToolTask:
        return task_from_json(trajectory.task, f"{trajectory.id}: task")

    async def initial_messages(self, task: ToolTask) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(policy=self.domain.policy)},
            {"role": "user", "content": task.scenario.opening},
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.world is not None
        try:
            outcome = self.domain.toolkit.call(self.world.db, name, arguments)
        except Exception as exc:  # a bug of the domain's tool, not the agent's doing
            raise InfraError(f"tool {name!r} of domain {self.domain.name!r} failed: "
                             f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
        return outcome.content, {"error": outcome.error}

    def mutates(self, name: Any, call: Any) -> bool:
        return not isinstance(name, str) or self.domain.toolkit.writes(name)

    def divergence(
        self, task: Any, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        return json_divergence(recorded, replayed)

    async def respond(self, action: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        text, stop = await self.user.reply(self.task, self.messages)
        return {"role": "user", "content": text}, stop
