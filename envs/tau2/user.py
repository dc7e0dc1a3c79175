"""The user of a τ² conversation, played from the task's ``user_scenario``.

τ²'s scenarios are prose written for a language model playing the customer, in the
second person: the reason for the call, what the user knows and does not know, and
instructions on how to behave. A simulator is ``async reply(task, messages) -> (text,
stop)``: given the conversation so far (ending with τ²'s greeting, or with an assistant
message that calls no tool) it says the user's next message, and ``stop`` ends the
episode, as τ²'s user ends it with ``###STOP###``, ``###TRANSFER###`` or
``###OUT-OF-SCOPE###``.

:class:`ScriptedUser` plays the scenario with no model:

- it opens with the reason for the call, turned into the first person: the sentences
  that say what the user wants, without those that tell the simulator how to behave
  ("If the agent asks ...", "Do not mention ...");
- a question that asks for facts (:data:`FACTS`: a user id, a name, a zip code, an
  email, an order or reservation id, ...), other than a request to confirm, is answered
  with the scenario's sentences that give them, in the first person, or, where the
  scenario has one, with its own answer to that question ("If the agent asks for the
  reservation number, say ...");
  a fact the scenario says the user does not know is answered with that sentence ("I
  do not remember my email address.");
- a request to confirm gets a yes; being transferred to a human agent ends the call
  with ``###TRANSFER###``;
- a report, a refusal or a closing question ends it with thanks and ``###STOP###``.
  A message with nothing of the kind, before the agent has done anything, gets the
  request again, twice at most, and then the user gives up (``###STOP###``).

Its words are drawn from a few variants by a hash of the task and the turn: it is a
function of the task and the conversation, so a conversation restored to any turn
goes on exactly as it went. What it cannot do is what needs a model: change its mind,
insist, or follow the scenario's behavioural instructions. :class:`EngineUser` is a
language model playing the scenario through any pivotgym engine, prompted as τ²'s own
user simulator is (τ²'s simulation guidelines, read from its package, then the
scenario).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pivotgym.envs.tau2.tasks import Tau2Task
from pivotgym.policy.roleplay import user_reply
from pivotgym.verifiers.dialogue import asks_to_confirm

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
ENDINGS = (STOP, TRANSFER, OUT_OF_SCOPE)


class UserSimulator(Protocol):
    async def reply(
        self, task: Tau2Task, messages: Sequence[dict[str, Any]]
    ) -> tuple[str, bool]: ...


@dataclass(frozen=True)
class Fact:
    """Something an agent asks a τ² user for: how it is called, the words of a question
    for it (lower case), and what marks a scenario sentence as giving it."""

    label: str
    asked_as: tuple[str, ...]
    given_by: re.Pattern[str]


FACTS = {
    "user_id": Fact(
        "user ID",
        ("user id", "userid", "user-id", "username", "account id"),
        re.compile(r"(?i:user ?id)|\b[a-z]+_[a-z]+_\d+\b"),
    ),
    "name": Fact(
        "name",
        ("name",),
        re.compile(
            r"(?i:\bname is\b|\bcalled\b)|\b(?i:you are|you're)\s+[A-Z][a-z]+\s+[A-Z][a-z]+"
        ),
    ),
    "zip": Fact("zip code", ("zip", "postal code", "postcode"), re.compile(r"(?i:zip)|\b\d{5}\b")),
    "email": Fact(
        "email address",
        ("email address", "e-mail address", "email", "e-mail"),
        re.compile(r"@|(?i:\be-?mail)"),
    ),
    "order_id": Fact(
        "order ID",
        ("order id", "order number", "order #"),
        re.compile(r"#?\bW\d{7}\b|(?i:order (?:id|number))"),
    ),
    "reservation_id": Fact(
        "reservation ID",
        (
            "reservation id",
            "reservation number",
            "reservation code",
            "confirmation number",
            "confirmation code",
            "booking reference",
            "booking number",
        ),
        re.compile(r"(?i:reservation|confirmation)"),
    ),
    "phone": Fact(
        "phone number", ("phone number",), re.compile(r"\b\d{3}-\d{3}-\d{4}\b|(?i:phone number)")
    ),
    "address": Fact("address", ("address",), re.compile(r"(?i:address|\blives? in\b|\bliving in)")),
}


def asked_facts(text: str) -> list[str]:
    """The facts of :data:`FACTS` that ``text`` asks for, in that table's order. Words
    taken by one fact are not read again for a later one ("email address" asks for the
    email, not for an address)."""
    lowered = text.lower()
    asked = []
    for name, fact in FACTS.items():
        for words in fact.asked_as:
            if words in lowered:
                asked.append(name)
                lowered = lowered.replace(words, " ")
                break
    return asked


# --------------------------------------------------------------------- the scenario

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(#\"'])|\n+")
_ASIDE = re.compile(r"\s*\([^)]*\b(?:agent|reveal|mention)\b[^)]*\)", re.IGNORECASE)
# Sentences that tell the simulator how to act, not what the user wants.
_DIRECTIVE = re.compile(
    r"^(?:if|when|whenever|once|do not|don't|never|make sure|mention|be|try|ask|say|tell"
    r"|insist|only|then|lastly|finally|note|remember|halfway)\b|\b(?:mention|pretend|reveal"
    r"|agent)\b",
    re.IGNORECASE,
)
# A simulator's "try to do X" is the user's "I want to do X".
_TRY = re.compile(r"^(?:first,?\s*)?(?:try|you try) to\b", re.IGNORECASE)
_CONDITIONAL_ANSWER = re.compile(
    r"^(?:if (?:the )?(?:service |customer service )?agent asks|when asked|if asked)"
    r" (?P<what>.+?),\s*(?:say|tell (?:them|the agent|him|her)|answer|reply|respond|provide|give)"
    r"(?: that)? (?P<say>.+)$",
    re.IGNORECASE | re.DOTALL,
)


def sentences(text: str | None) -> list[str]:
    """``text`` split into sentences, without blanks."""
    if not text:
        return []
    text = re.sub(r"\.\s*\.", ".", _ASIDE.sub("", text))
    return [s.strip() for s in _SENTENCE.split(text) if s.strip(" .")]


_SWAPS = (
    (r"you are", "I am"), (r"you're", "I'm"), (r"you were", "I was"), (r"you've", "I've"),
    (r"you'd", "I'd"), (r"you'll", "I'll"), (r"are you", "am I"), (r"yourself", "myself"),
    (r"yours", "mine"), (r"your", "my"),
)  # fmt: skip
# "you" after these words, or before "to" or a clause's end, is an object ("told you",
# "allows you to"); elsewhere the subject.
_OBJECT_AFTER = frozenset(
    {
        *("to", "for", "with", "at", "from", "by", "about", "of", "on", "than"),
        *("told", "tell", "tells", "help", "helps", "give", "gives", "gave", "asked", "ask"),
        *("let", "lets", "call", "called", "contact", "contacted", "sent", "send", "sends"),
        *("show", "shows", "offer", "offered", "allow", "allows", "allowed"),
        *("want", "wants", "need", "needs"),
    }
)
_SWAP = re.compile(r"\b(" + "|".join(p for p, _ in _SWAPS) + r"|you)\b", re.IGNORECASE)


def first_person(text: str) -> str:
    """A scenario sentence in the user's own voice: "You want to cancel your trip" is
    "I want to cancel my trip"."""
    text = text.replace("’", "'")
    table = dict(_SWAPS)

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        lowered = word.lower()
        if lowered == "you":
            before = text[: match.start()].split()
            previous = before[-1].lower().strip(",;:") if before else ""
            after = text[match.end() :]
            ends = not after.strip() or after[0] in ".,;:!?)" or after.startswith(" to ")
            new = "me" if previous in _OBJECT_AFTER or ends else "I"
        else:
            new = table[lowered]
        return new[0].upper() + new[1:] if word[0].isupper() or new.startswith("I") else new

    return _SWAP.sub(swap, text)


@dataclass(frozen=True)
class Scenario:
    """A task's user scenario, read into sentences."""

    reason: list[str]
    known: list[str]
    unknown: list[str]
    instructions: list[str]

    @classmethod
    def of(cls, task: Tau2Task) -> Scenario:
        given = task.model.user_scenario.instructions
        if isinstance(given, str):
            return cls(sentences(given), [], [], [])
        return cls(
            sentences(given.reason_for_call),
            sentences(given.known_info),
            sentences(given.unknown_info),
            sentences(given.task_instructions),
        )

    @property
    def request(self) -> list[str]:
        """What the user wants, in their own voice: the reason for the call without the
        simulator's directions (all of it, where every sentence is one)."""
        reason = [_TRY.sub("I want to", s) for s in self.reason]
        wants = [s for s in reason if not _DIRECTIVE.search(s)]
        return [first_person(s) for s in wants or reason[:1]]

    def answer(self, fact: str) -> list[str]:
        """The scenario's sentences that answer a question for ``fact`` (its own answer
        to that question first), in the user's voice; ``[]`` when it has none."""
        spec = FACTS[fact]
        for s in (*self.reason, *self.instructions):
            rule = _CONDITIONAL_ANSWER.match(s)
            if rule and any(w in rule.group("what").lower() for w in spec.asked_as):
                said = first_person(rule.group("say").strip().rstrip("."))
                return [said[0].upper() + said[1:] + "."]
        for group in (self.known, self.reason, self.instructions):
            found = [first_person(s) for s in group
                     if spec.given_by.search(s) and not _DIRECTIVE.search(s)]  # fmt: skip
            if found:
                return found
        return []

    def unknown_answer(self, fact: str) -> list[str]:
        spec = FACTS[fact]
        words = (*spec.asked_as, spec.label.lower())
        return [first_person(s) for s in self.unknown if any(w in s.lower() for w in words)]


# -------------------------------------------------------------------- the simulator

_HELLO = ("Hi! ", "Hello. ", "Hi there. ", "")
_YES = ("Yes, please go ahead.", "Yes, that's right, please proceed.", "Yes, go ahead.")
_DONE = ("Thank you, that's all I needed.", "Great, thanks for your help.", "OK, thanks. Bye.")
_AGAIN = ("Could you help me with that? {request}", "As I said: {request}")
_NOT_KNOWN = "Sorry, I don't have my {label} at hand."
_ANYTHING_ELSE = re.compile(r"\banything else\b", re.IGNORECASE)
_TRANSFERRED = re.compile(r"\btransferr(?:ed|ing)\b|\bhuman agent\b", re.IGNORECASE)
_CLOSING = re.compile(
    r"\b(?:anything else|sorry|unfortunately|cannot|can't|unable|not able|not possible"
    r"|not allowed|done|completed|has been|have been|is now|successfully)\b",
    re.IGNORECASE,
)


def _variant(options: Sequence[str], *keys: Any) -> str:
    digest = hashlib.sha256("\0".join(map(str, keys)).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


class ScriptedUser:
    """The scenario's user, without a model (module docstring)."""

    MAX_NUDGES = 2

    async def reply(self, task: Tau2Task, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        return self.answer(task, messages)

    def answer(self, task: Tau2Task, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        scenario = Scenario.of(task)
        turn = sum(m.get("role") == "assistant" for m in messages)
        request = " ".join(scenario.request)
        if not any(m.get("role") == "user" for m in messages):
            return _variant(_HELLO, task.key, "hello") + request, False
        said = messages[-1].get("content") or ""
        if _TRANSFERRED.search(said):
            return TRANSFER, True
        parts: list[str] = []
        confirming = asks_to_confirm(said)
        # A request to confirm names the ids it acts on, and a closing question the
        # outcome's: neither asks for them.
        asking = "?" in said and not confirming and not _ANYTHING_ELSE.search(said)
        for fact in asked_facts(said) if asking else ():
            for sentence in (
                scenario.answer(fact)
                or scenario.unknown_answer(fact)
                or [_NOT_KNOWN.format(label=FACTS[fact].label)]
            ):
                if sentence not in parts:
                    parts.append(sentence)
        if confirming:
            parts.append(_variant(_YES, task.key, turn))
        if parts:
            return " ".join(parts), False
        acted = any(m.get("tool_calls") for m in messages if m.get("role") == "assistant")
        nudges = sum(m.get("role") == "user" and request in (m.get("content") or "")
                     for m in messages) - 1  # fmt: skip
        if not acted and not _CLOSING.search(said) and nudges < self.MAX_NUDGES:
            return _variant(_AGAIN, task.key, turn).format(request=request), False
        return f"{_variant(_DONE, task.key, turn)} {STOP}", True


class EngineUser:
    """A language model as the user (:mod:`pivotgym.policy.roleplay`), prompted as τ²'s
    user simulator is: τ²'s simulation guidelines and the scenario as system prompt, the
    conversation with the roles swapped (the agent's messages as the user's, tool calls
    and results left out)."""

    def __init__(self, engine: Any, chat: Any, *, max_new_tokens: int = 200) -> None:
        self.engine = engine
        self.chat = chat
        self.max_new_tokens = max_new_tokens

    @staticmethod
    def guidelines() -> str:
        from tau2.utils import DATA_DIR

        return (DATA_DIR / "tau2" / "user_simulator" / "simulation_guidelines.md").read_text()

    def system(self, task: Tau2Task) -> str:
        instructions = task.model.user_scenario.instructions
        return f"{self.guidelines()}\n\n<scenario>\n{instructions}\n</scenario>"

    async def reply(self, task: Tau2Task, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
        text = await user_reply(self.engine, self.chat, self.system(task), messages,
                                self.max_new_tokens)  # fmt: skip
        return text, any(end in text for end in ENDINGS)
