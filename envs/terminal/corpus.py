"""The pretraining corpus of pivotgym-tiny, rebuilt from a seed.

Two parts, both chat conversations rendered with the project's one chat template:

- **shell work**: episodes of the terminal suite's *training* families, recorded live in
  sandboxes like the bundled data but from the suite's plan generators under a split
  name of their own (``corpus``), so no instance coincides with a bundled train, test
  or OOD task. About a third are imperfect on purpose, because a policy that only ever
  saw flawless demonstrations has no idea what to do after a mistake: a mistyped command
  name answered by "command not found" and then retyped, a look at a file name that does
  not exist followed by ``ls`` and the right one, or a skipped final check. Every
  recorded episode, imperfect or not, still has to pass its task's test.
- **questions**: the arithmetic and spelling skill of :mod:`pivotgym.policy.models.ood`, drawn
  from its training pool only.

The held-out families (``HELD_OUT_FAMILIES``) never appear.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiometer

from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.suite.build import expert_message, inline_spec, instance_rng
from pivotgym.envs.terminal.suite.families import FAMILIES, HELD_OUT_FAMILIES
from pivotgym.envs.terminal.suite.plan import ExpertTurn, TaskPlan
from pivotgym.errors import PivotgymError
from pivotgym.harbor.task import materialize_inline
from pivotgym.policy.models import ood

SPLIT = "corpus"
INDEX_OFFSET = 300_000  # the suite uses 0, 100_000 and 200_000 for train, test and ood
TRAIN_FAMILIES = tuple(f for f in sorted(FAMILIES) if f not in HELD_OUT_FAMILIES)
_READ_ONLY = ("cat ", "head ", "tail ", "ls", "wc ", "grep ", "diff ", "git log", "git status")

Conversation = dict[str, Any]  # {"kind", "family", "messages", "tools"}


def corpus_plans(seed: int, count: int) -> list[TaskPlan]:
    """``count`` task instances of the training families, dealt round-robin."""
    plans = []
    for i in range(count):
        family = TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)]
        index = INDEX_OFFSET + i // len(TRAIN_FAMILIES)
        plans.append(FAMILIES[family].generate(instance_rng(seed, SPLIT, family, index), index))
    return plans


# ------------------------------------------------------------------ imperfect demos


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word
    if len(word) >= 3 and rng.random() < 0.5:
        i = rng.randrange(len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = rng.randrange(len(word))
    return word[:i] + word[i + 1 :] if len(word) > 2 else word + word[-1]


def _command_turns(turns: list[ExpertTurn]) -> list[int]:
    return [i for i, t in enumerate(turns) if t.command is not None]


def mistyped_command(turns: list[ExpertTurn], rng: random.Random) -> list[ExpertTurn] | None:
    """Mistype the command name of one turn, then retype it correctly the next turn."""
    choices = [i for i in _command_turns(turns) if turns[i].command.split()[0].isalpha()]
    if not choices:
        return None
    i = rng.choice(choices)
    name, _, rest = turns[i].command.partition(" ")
    wrong = _typo(name, rng)
    if wrong == name:
        return None
    bad = ExpertTurn(turns[i].thought, f"{wrong} {rest}".rstrip())
    fix = rng.choice(
        [
            f"Typo: `{wrong}` is not a command. Running it as `{name}`.",
            f"I mistyped `{name}`. Again, correctly.",
            "That command name was misspelled; retrying.",
        ]
    )
    return [*turns[:i], bad, ExpertTurn(fix, turns[i].command), *turns[i + 1 :]]


def wrong_file(turns: list[ExpertTurn], rng: random.Random) -> list[ExpertTurn] | None:
    """Look at a misspelled file name first, list the directory, then look at the right one."""
    for i in _command_turns(turns):
        words = turns[i].command.split()
        if words[0] in ("cat", "head", "tail", "wc") and len(words) >= 2:
            target = words[-1]
            if "/" in target or "." not in target or any(c in target for c in "*?$'\"|><"):
                continue
            stem, _, ext = target.rpartition(".")
            if len(stem) < 2:
                continue
            wrong = f"{_typo(stem, rng)}.{ext}"
            if wrong == target:
                continue
            bad = ExpertTurn(turns[i].thought, " ".join([*words[:-1], wrong]))
            look = ExpertTurn(f"There is no {wrong}. Let me list the directory.", "ls")
            fix = ExpertTurn(f"The file is {target}.", turns[i].command)
            return [*turns[:i], bad, look, fix, *turns[i + 1 :]]
    return None


def skipped_check(turns: list[ExpertTurn], rng: random.Random) -> list[ExpertTurn] | None:
    """Drop the read-only verification just before the final report."""
    if len(turns) < 4 or turns[-1].command is not None:
        return None
    check = turns[-2].command or ""
    if not check.startswith(_READ_ONLY) or ">" in check:
        return None
    return [*turns[:-2], turns[-1]]


IMPERFECTIONS = {
    "typo": mistyped_command,
    "wrong-file": wrong_file,
    "no-check": skipped_check,
}


def demonstration(plan: TaskPlan, rng: random.Random, p_imperfect: float) -> tuple[str, list]:
    """The turns to record for ``plan``: the expert's, or an imperfect variant of them."""
    turns = list(plan.expert)
    if rng.random() < p_imperfect:
        kind = rng.choice(sorted(IMPERFECTIONS))
        varied = IMPERFECTIONS[kind](turns, rng)
        if varied is not None:
            return kind, varied
    return "clean", turns


async def record_turns(plan: TaskPlan, turns: Sequence[ExpertTurn]) -> list[dict[str, Any]]:
    """Play ``turns`` in a fresh sandbox; failing commands are allowed, the test must pass."""
    task = materialize_inline(inline_spec(plan, SPLIT))
    env = TerminalEnv(tasks=[task], max_turns=len(turns) + 1)
    try:
        obs, _ = await env.areset(options={"task": task})
        reward, info = 0.0, {}
        for turn, step in enumerate(turns):
            obs, reward, _, _, info = await env.astep(
                expert_message(turn, step.thought, step.command)
            )
            if info.get("infra_error"):
                raise PivotgymError(f"{plan.name}: infrastructure error: {info['infra_error']}")
        if reward != 1.0:
            raise PivotgymError(f"{plan.name}: demonstration scored {reward}")
        return obs
    finally:
        await env.aclose()


async def _record_one(plan: TaskPlan, seed: int, p_imperfect: float) -> Conversation:
    rng = random.Random(f"{seed}:{plan.name}:imperfect")
    kind, turns = demonstration(plan, rng, p_imperfect)
    try:
        messages = await record_turns(plan, turns)
    except PivotgymError:
        if kind == "clean":
            raise
        kind, messages = "clean", await record_turns(plan, list(plan.expert))
    return {"kind": f"shell/{kind}", "family": plan.family, "messages": messages}


async def record_shell(
    seed: int, count: int, p_imperfect: float = 0.35, jobs: int = 8
) -> list[Conversation]:
    """``count`` recorded shell conversations (in plan order, whatever the concurrency)."""
    plans = corpus_plans(seed, count)
    start, done = time.perf_counter(), 0

    async def one(plan: TaskPlan) -> Conversation:
        nonlocal done
        conversation = await _record_one(plan, seed, p_imperfect)
        done += 1
        if done % 200 == 0 or done == len(plans):
            rate = done / (time.perf_counter() - start)
            print(f"  recorded {done}/{len(plans)} ({rate:.1f}/s)", file=sys.stderr)
        return conversation

    return await aiometer.run_all([functools.partial(one, p) for p in plans], max_at_once=jobs)


def question_conversations(seed: int, count: int) -> list[Conversation]:
    return [
        {"kind": f"ood/{q.kind}", "family": None, "messages": q.conversation()}
        for q in ood.train_questions(count, seed)
    ]


def build_corpus(
    seed: int, shell: int, questions: int, p_imperfect: float = 0.35, jobs: int = 8
) -> list[Conversation]:
    """The whole corpus, shuffled with ``seed``; identical for identical arguments."""
    conversations = asyncio.run(record_shell(seed, shell, p_imperfect, jobs))
    tools = [t for t in TerminalEnv.tools]
    for c in conversations:
        c["tools"] = tools
    conversations += question_conversations(seed, questions)
    random.Random(f"{seed}:shuffle").shuffle(conversations)
    return conversations


def save_corpus(conversations: Sequence[Conversation], path: Path) -> None:
    lines = "".join(json.dumps(c, sort_keys=True) + "\n" for c in conversations)
    path.write_bytes(gzip.compress(lines.encode(), 6, mtime=0))


def load_corpus(path: Path) -> list[Conversation]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]
