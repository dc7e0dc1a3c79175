"""The tool-API env's one-turn functional verifier (its default: ``tool_api``).

At a candidate state the expert either called tools or spoke to the user; the sampled
turn must do the same kind of thing.

- **Tool calls** are accepted when they equal the expert's after canonicalisation
  against the tools' schemas (:mod:`pivotgym.verifiers.schema`; the order of calls
  within a turn does not matter), **or** when, executed in a fork of the state's
  database, they leave it exactly as the expert's calls leave it in another fork and
  return the same results (as JSON). So ``find_patient`` with the name in other case
  passes, as does a read of the same record by another key; a write with other
  arguments that has the same effect passes; a call whose result differs does not.
- **A question to the user** that asks for facts of the domain (a date of birth, an
  account number) is accepted when it asks for the same facts, however worded.
- **Another message to the user** is accepted when it is the same kind of act (a
  question where the expert asked, a request to confirm where it asked to confirm, a
  statement where it stated: the scripted user answers each otherwise), no more than
  about twice as long, carries every fact of the expert's and no other (the identifiers,
  numbers, dates, times and amounts in it), and is similar to it
  (difflib ratio of the words, at least ``threshold``) or no shorter than half of it: a
  paraphrase that says the same things. A message that drops a fact, or adds one,
  fails whatever its similarity. (The message rules are the shared ones of
  :mod:`pivotgym.verifiers.dialogue`, with the domain's facts as the vocabulary.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pivotgym.envs.tools.user import asked_facts
from pivotgym.verifiers.base import Call, State, Verdict, failed, infra, passed
from pivotgym.verifiers.conversation import ToolTurn, same_results


class ToolApi(ToolTurn):
    """See the module docstring. ``threshold``: the similarity a message needs."""

    name = "tool_api"

    def asked(self, state: State) -> Callable[[str], list[str]] | None:
        domain = getattr(state.env, "domain", None)
        return None if domain is None else functools.partial(asked_facts, domain)

    async def effect(self, state: State, calls: list[Call], reference: list[Call]) -> Verdict:
        env = state.env
        db = getattr(getattr(env, "world", None), "db", None)
        if db is None:
            return infra("tool_api needs an environment restored at s_t")
        toolkit = env.domain.toolkit
        sample_db, expert_db = db.fork(), db.fork()
        got = [toolkit.call(sample_db, c.name, c.arguments) for c in calls]
        want = [toolkit.call(expert_db, c.name, c.arguments) for c in reference]
        if any(o.error for o in want):
            return infra(
                f"the expert's call failed here: {next(o.content for o in want if o.error)}"
            )
        if not sample_db.same_as(expert_db):
            return failed("changes the database otherwise than the expert's calls",
                          diff=expert_db.diff(sample_db))  # fmt: skip
        if not same_results([o.content for o in got], [o.content for o in want]):
            return failed("returns other results than the expert's calls")
        return passed("same effect and results as the expert's calls")
