"""Messages to a user: what act a message is, and when two messages do the same.

In a tool-API conversation, an assistant turn that calls no tool is said to the user,
and a simulated user reacts to the act, not to the wording: it answers a question that
asks for facts it knows, says yes (or no) to a request to confirm, and takes anything
else as a statement. So a sampled message is functionally the expert's when it is
the same act carrying the same facts:

- the same kind: a question where the expert asked, a request to confirm (:data:`CONFIRM`)
  where it asked to confirm, a statement where it stated;
- a question for facts of the domain (``asked(text)``, the env's vocabulary: a date of
  birth, a user id) asks for the same ones, however worded;
- any other message is no more than about twice as long, carries every fact of the
  expert's and no other (identifiers, numbers, dates, times and amounts, found by a
  pattern, :data:`FACT` by default), and is similar to it (difflib ratio of the words,
  at least ``threshold``) or no shorter than half of it: a paraphrase that says the
  same things. A message that drops a fact, or adds one, fails whatever its similarity.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pivotgym.verifiers.base import Verdict, failed, passed
from pivotgym.verifiers.match import ratio

CONFIRM = re.compile(
    r"\b(confirm|shall i|should i|go ahead|proceed|would you like me to|do you want me to"
    r"|is that (ok|okay|right|correct))\b"
)
"""The words of a request to confirm an action (matched on lower-cased text)."""

# Identifiers (P1001, RX3001), dates, times, amounts and other numbers.
FACT = re.compile(r"\b[A-Z]{1,4}-?\d{2,}\b|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b|\d+(?:[.,]\d+)*")


def facts(text: str, pattern: re.Pattern[str] = FACT) -> set[str]:
    """The facts ``text`` carries (thousands separators dropped)."""
    return {m.group(0).replace(",", "") for m in pattern.finditer(text or "")}


def asks_to_confirm(text: str) -> bool:
    return "?" in text and CONFIRM.search(text.lower()) is not None


def same_message(
    text: str,
    expert: str,
    *,
    asked: Callable[[str], list[str]] | None = None,
    threshold: float = 0.5,
    pattern: re.Pattern[str] = FACT,
) -> Verdict:
    """Whether ``text`` does what the expert's message ``expert`` does (module
    docstring); ``asked`` gives the domain facts a question asks for."""
    if ("?" in text) != ("?" in expert) or bool(CONFIRM.search(text.lower())) != bool(
        CONFIRM.search(expert.lower())
    ):
        # A question where the expert stated (or a statement where it asked, or asked
        # to confirm) is another act: the user answers it otherwise.
        return failed("not the same kind of message as the expert's")
    if len(text.split()) > 2 * len(expert.split()) + 10:
        return failed("far longer than the expert's message")
    want = asked(expert) if asked is not None and "?" in expert else []
    if want:
        # The expert asked the user for facts: asking for the same ones is the act.
        got = asked(text) if asked is not None and "?" in text else []
        if got == want:
            return passed("asks for the same facts", asked=want)
        return failed(f"asks for {got or 'nothing'}, the expert for {want}")
    theirs, mine = facts(expert, pattern), facts(text, pattern)
    missing = sorted(theirs - mine)
    if missing:
        return failed(f"does not say {', '.join(missing[:5])}", missing=missing)
    extra = sorted(mine - theirs)
    if extra:  # a message stuffed with numbers must not pass for one that says a few
        return failed(f"says what the expert did not: {', '.join(extra[:5])}", extra=extra)
    similarity = ratio(text, expert)
    if similarity >= threshold:
        return passed(f"similar ({similarity:.2f}) with the expert's facts",
                      similarity=similarity)  # fmt: skip
    if theirs and len(text.split()) * 2 >= len(expert.split()):
        return passed("says the expert's facts", similarity=similarity)
    return failed(f"not like the expert's message ({similarity:.2f})", similarity=similarity)
