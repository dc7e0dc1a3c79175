"""User simulators: the other side of a tool-API conversation.

An assistant message that calls no tool is said to the user, and the user answers. A
simulator is ``async reply(task, messages) -> (text, stop)``; ``stop`` ends the episode
(τ²-bench's user stop: the user says :data:`STOP` when done).

:class:`ScriptedUser` plays the task's scenario with no model: it answers what the
agent asks for (in a message with a question mark) from the facts it knows (the
domain's :class:`~pivotgym.envs.tools.domain.Fact` phrases find them in the agent's
words), says yes (or no, as the scenario has it)
when asked to confirm, and stops once the agent says something it has no answer to: a
result, a refusal or a closing question. Its wording is drawn from a few variants by a
hash of the task and the turn, so it is deterministic without any state of its own, and
a conversation restored to turn ``t`` goes on exactly as it went.

:class:`EngineUser` is a language model playing the scenario through any pivotgym
engine, for a real LLM user where one is served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from pivotgym.envs.tools.domain import Domain, ToolTask, get_domain
from pivotgym.policy.roleplay import user_reply
from pivotgym.verifiers.dialogue import CONFIRM

STOP = "###STOP###"
_FACT_ANSWERS = ("My {label} is {value}.", "It's {value}.", "Sure: my {label} is {value}.")
_YES = ("Yes, please go ahead.", "Yes, that's right, please do.", "Yes, go ahead.")
_NO = ("No, please don't; I've changed my mind.", "No, leave it as it is, thanks.")
_UNKNOWN = "Sorry, I don't know my {label}."
_DONE = ("Thank you, that's all I needed.", "Great, thanks for your help.", "OK, thanks. Bye.")


class UserSimulator(Protocol):
    async def reply(
        self, task: ToolTask, messages: Sequence[dict[str, Any]]
    ) -> tuple[str, bool]: ...


def _variant(options: Sequence[str], *keys: Any) -> str:
    digest = hashlib.sha256("\0".join(map(str, keys)).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def asked_facts(domain: Domain, text: str) -> list[str]:
    """The facts of ``domain`` that ``text`` asks for, in the domain's order."""
    lowered = text.lower()
    return [name for name, fact in domain.facts.items()
            if any(phrase in lowered for phrase in fact.asked_as)]  # fmt: skip


class ScriptedUser:
    """The scenario's user, without a model (module docstring)."""

    async def reply(self, task: ToolTask, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        return self.answer(task, messages)

    def answer(self, task: ToolTask, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        domain = get_domain(task.domain)
        said = messages[-1].get("content") or ""
        turn = sum(m.get("role") == "assistant" for m in messages)
        known = task.scenario.known
        parts: list[str] = []
        # Only a question asks: a result ("your phone number is now ...") names facts too.
        asking = "?" in said
        for name in asked_facts(domain, said) if asking else ():
            label = domain.facts[name].label
            if name in known:
                template = _variant(_FACT_ANSWERS, task.name, turn, name)
                parts.append(template.format(label=label, value=known[name]))
            else:
                parts.append(_UNKNOWN.format(label=label))
        if asking and CONFIRM.search(said.lower()):
            parts.append(_variant(_YES if task.scenario.accepts else _NO, task.name, turn))
        if parts:
            return " ".join(parts), False
        return f"{_variant(_DONE, task.name, turn)} {STOP}", True


class EngineUser:
    """A language model as the user (:mod:`pivotgym.policy.roleplay`): it is told the
    scenario, sees the conversation with the roles swapped, and stops by saying
    :data:`STOP`."""

    def __init__(self, engine: Any, chat: Any, *, max_new_tokens: int = 128) -> None:
        self.engine = engine
        self.chat = chat
        self.max_new_tokens = max_new_tokens

    def system(self, task: ToolTask) -> str:
        scenario = task.scenario
        facts = "\n".join(f"- {k}: {v}" for k, v in scenario.known.items())
        return (
            f"You are {scenario.persona} You are talking to a customer service agent. "
            f"Your goal: {scenario.goal}. Facts you know:\n{facts}\n"
            "Answer the agent's questions briefly from these facts only; say yes when "
            f"asked to confirm what you want. When you are done, say {STOP}."
        )

    async def reply(self, task: ToolTask, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        text = await user_reply(self.engine, self.chat, self.system(task), messages,
                                self.max_new_tokens)  # fmt: skip
        return text, STOP in text
