"""The τ² expert: SFT trajectories that solve τ² tasks from their gold actions.

The expert plays a task through the real env, against the scripted user of its
scenario (:mod:`pivotgym.envs.tau2.user`), so every tool result and user reply in its
trajectory is what τ² and the simulator produce, and strict replay holds by
construction. It knows the task's gold actions, and it may use an identifier only once
the conversation has shown it (:mod:`pivotgym.envs.tau2.grounding`):

1. it asks the user, in one message or one fact a turn, for what identifies them as
   the domain's policy requires (a user id in airline; an email, or a name and zip
   code, in retail) and for the facts its calls need that the user's scenario holds
   (a reservation number);
2. it makes the gold look-ups in their order, each after the look-ups that reveal its
   arguments (a user's orders before an order, an order's items before a product's
   variants, a flight search before a flight number), one call a turn as τ²'s policies
   require; a gold look-up whose arguments nothing reveals (a mistyped id the scenario
   has the user try) changes nothing and is left out, as ``skipped_lookups`` records;
3. with writes to make, it lists them and asks the user to confirm; after the yes it
   makes them, each after the look-ups its arguments need;
4. it tells the user every piece of information the task wants communicated, after
   the look-ups that show it (or, with nothing to do or say, that the policy does not
   allow the request), or transfers the user to a human agent where the gold actions
   do.

Wording and how facts are asked for are drawn from a seeded generator, so a trajectory
is rebuilt bit for bit from its seed. A task the expert cannot solve to reward 1 under
τ²'s evaluator is an :class:`ExpertError` naming why: a value no look-up reveals and
the user does not know, a gold action of the user's (τ²'s telecom), or the evaluator's
verdict.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tau2.env import Tau2Env
from pivotgym.envs.tau2.grounding import Knowledge, Lookup, leaves, must_ground, reveal
from pivotgym.envs.tau2.grounding import schema_options as options_of
from pivotgym.envs.tau2.tasks import Tau2Task
from pivotgym.envs.tau2.user import FACTS, Scenario
from pivotgym.errors import DataError, InfraError

TRANSFER_TOOL = "transfer_to_human_agents"
TRANSFER_MESSAGE = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."

# How each domain's policy has the agent identify the user: the first way whose facts
# the user's scenario holds.
IDENTIFY = {"airline": (("user_id",),), "retail": (("email",), ("name", "zip"))}
DEFAULT_IDENTIFY = (("user_id",), ("email",), ("name", "zip"))

_ASK = (
    "Could you please provide your {facts}?",
    "I can help with that. First, could you tell me your {facts}?",
    "Sure. To look up your records, may I have your {facts}?",
    "Happy to help. What is your {facts}?",
)
_CONFIRM = (
    "Here is what I will do: {what}. Shall I proceed?",
    "To confirm, I will {what}. Do you want me to go ahead?",
    "I can {what}. Would you like me to proceed?",
)
_DONE = ("All done. ", "That's taken care of. ", "Everything is processed. ", "")
_INFO = ("Here is what you asked about: {info}.", "For your information: {info}.", "{info}.")
_REFUSE = (
    "I'm sorry, but under our policy I can't make that change.",
    "Unfortunately, our policy does not allow me to do that.",
    "I'm sorry, I'm not able to help with that request under our policy.",
)
_CLOSE = (" Is there anything else I can help you with?", " Anything else I can do for you?")


class ExpertError(DataError):
    """A task the expert could not solve to reward 1; the message says why."""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _describe(name: str, arguments: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, list):
            return _and([show(v) for v in value]) if value else "none"
        if isinstance(value, dict):
            shown = ", ".join(f"{k.replace('_', ' ')} {show(v)}" for k, v in value.items())
            return f"({shown})"
        return str(value)

    said = ", ".join(f"{k.replace('_', ' ')} {show(v)}" for k, v in arguments.items())
    return f"{name.replace('_', ' ')} with {said}" if said else name.replace("_", " ")


class _Play:
    """One demonstration in progress: the env, what it has shown, the calls made."""

    def __init__(self, env: Tau2Env, task: Tau2Task) -> None:
        self.env = env
        self.task = task
        self.know = Knowledge()
        self.made: set[Lookup] = set()
        self.calls = 0
        self.skipped: list[str] = []
        self.done = False
        self.reward = 0.0
        self.info: dict[str, Any] = {}
        schemas = {t["function"]["name"]: t["function"] for t in env.tools}
        self.schemas = schemas
        self.reads = {
            n: f.get("parameters", {}) for n, f in schemas.items()
            if env.domain.tool_type(n) == "read"
        }  # fmt: skip

    def learn(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            if m.get("role") == "user":
                self.know.hear(m.get("content") or "")
            elif m.get("role") == "tool":
                self.know.read(m.get("content") or "")

    async def say(self, message: dict[str, Any]) -> None:
        if self.done:
            raise ExpertError("the user ended the conversation early", file=self.task.name)
        seen = len(self.env.messages)
        _, self.reward, terminated, truncated, self.info = await self.env.astep(message)
        if self.info.get("infra_error"):  # the harness's failure, not the task's
            raise InfraError(f"{self.task.name}: {self.info['infra_error']}")
        self.done = terminated or truncated
        self.learn(self.env.messages[seen:])

    async def call(self, name: str, arguments: dict[str, Any]) -> None:
        self.calls += 1
        function = {"name": name, "arguments": json.dumps(arguments)}
        call = {"id": f"call_{self.calls}", "type": "function", "function": function}
        await self.say({"role": "assistant", "content": None, "tool_calls": [call]})
        if self.env.domain.tool_type(name) == "read":
            self.made.add(Lookup.of(name, arguments))

    def missing(self, name: str, arguments: dict[str, Any]) -> list[Any]:
        """The values of a call that the conversation has not shown yet."""
        options = options_of(self.schemas.get(name, {}).get("parameters", {}))
        out = []
        for value in leaves(arguments):
            if must_ground(value, options) and not self.know.grounded(value) and value not in out:
                out.append(value)
        return out

    async def ground(self, name: str, arguments: dict[str, Any]) -> None:
        """Make the look-ups that reveal the call's arguments (module docstring)."""
        for value in self.missing(name, arguments):
            if not await self.look_up(value):
                raise ExpertError(
                    f"{name}: {value!r} is not grounded: the user's scenario does not give "
                    "it and no look-up reveals it",
                    file=self.task.name,
                )

    async def look_up(self, value: Any) -> bool:
        """Make the look-ups after which ``value`` is grounded; ``False`` if none does."""
        if self.know.grounded(value):
            return True
        world = (await self.env.world.fork(1))[0]  # look-ups may not touch the episode
        try:

            def run(lookup: Lookup) -> str:
                from tau2.data_model.message import ToolCall

                call = ToolCall(id="x", name=lookup.name, arguments=lookup.kwargs)
                writes = self.env.mutates(lookup.name, None)
                reply = world.run(lambda: world.environment.get_response(call), writes=writes)
                return reply.content

            chain = reveal(value, self.know, self.reads, run, self.made)
        finally:
            await world.close()
        for lookup in chain or ():
            if lookup not in self.made:
                await self.call(lookup.name, lookup.kwargs)
        return chain is not None


async def demonstrate(env: Tau2Env, task: Tau2Task, seed: int) -> Trajectory:
    """The expert's trajectory of ``task`` in ``env`` (module docstring)."""
    rng = random.Random(f"tau2-expert-{task.key}-{seed}")
    criteria = task.model.evaluation_criteria
    gold = list(criteria.actions or []) if criteria is not None else []
    if any(a.requestor != "assistant" for a in gold):
        raise ExpertError("a gold action is the user's (τ²'s user tools)", file=task.name)
    await env.areset(options={"task": task})
    play = _Play(env, task)
    play.learn(env.messages)

    # 1. The facts the scenario holds, asked for before anything else.
    scenario = Scenario.of(task)
    ways = IDENTIFY.get(task.domain, DEFAULT_IDENTIFY)
    asked = list(next((w for w in ways if all(scenario.answer(f) for f in w)), ()))
    for action in gold:
        for value in play.missing(action.name, action.arguments):
            for fact in FACTS:
                said = " ".join(scenario.answer(fact))
                if said and Knowledge(said.lower()).grounded(value):
                    if fact not in asked:
                        asked.append(fact)
                    break
    labels = [FACTS[f].label for f in asked]
    questions = [[label] for label in labels] if rng.random() < 0.3 else [labels] * bool(labels)
    for facts in questions:
        await play.say({"role": "assistant", "content": rng.choice(_ASK).format(facts=_and(facts))})

    # 2. Look-ups, each after what reveals its arguments; 3. writes, after a yes.
    transfer = next((a for a in gold if a.name == TRANSFER_TOOL), None)
    reads = [a for a in gold if env.domain.tool_type(a.name) != "write" and a is not transfer]
    writes = [a for a in gold if env.domain.tool_type(a.name) == "write"]
    for action in reads:
        if Lookup.of(action.name, action.arguments) in play.made:
            continue
        try:
            await play.ground(action.name, action.arguments)
        except ExpertError as exc:
            # A look-up changes nothing: one that uses what the agent cannot know (τ²'s
            # gold actions try a mistyped id, or a product that does not exist) is left
            # out, and the trajectory says so.
            play.skipped.append(f"{action.name}({json.dumps(action.arguments)}): {exc.problem}")
            continue
        await play.call(action.name, action.arguments)
    if writes:
        for action in writes:
            await play.ground(action.name, action.arguments)
        what = "; ".join(_describe(a.name, a.arguments) for a in writes)
        await play.say({"role": "assistant", "content": rng.choice(_CONFIRM).format(what=what)})
        for action in writes:
            await play.ground(action.name, action.arguments)
            await play.call(action.name, action.arguments)

    # 4. The outcome, or the transfer.
    if transfer is not None:
        await play.call(transfer.name, transfer.arguments)
        await play.say({"role": "assistant", "content": TRANSFER_MESSAGE})
    else:
        info = list(criteria.communicate_info or []) if criteria is not None else []
        for value in info:
            # What the user is told is looked up first, where a look-up shows it (a sum
            # the policy has the agent compute shows nowhere, and is said as computed).
            await play.look_up(value)
        if info:
            text = rng.choice(_DONE) * bool(writes) + rng.choice(_INFO).format(info=_and(info))
        elif writes:
            text = f"{rng.choice(_DONE).strip() or 'All done.'} I have done this: {what}."
        else:
            text = rng.choice(_REFUSE)
        await play.say({"role": "assistant", "content": text + rng.choice(_CLOSE)})
    if not play.done:
        raise ExpertError("the user did not end the conversation", file=task.name)
    if play.reward != 1.0:
        raise ExpertError(
            f"τ²'s evaluator scored the episode {play.reward}: {play.info.get('test')}",
            file=task.name,
        )
    return Trajectory(
        id=f"{task.name}/{seed}",
        env="tau2",
        task=task.to_json(),
        messages=env.messages,
        tools=env.tools,
        metadata={
            "domain": task.domain,
            "task_id": task.model.id,
            "seed": seed,
            "skipped_lookups": play.skipped,
        },
    )
