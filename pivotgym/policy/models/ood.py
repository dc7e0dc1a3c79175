"""A non-agentic skill for measuring what RL on terminal work does to everything else.

Short arithmetic and spelling questions, answered in plain text with no tools: the
answer shows brief working and ends with a line ``Answer: ...``. Scoring is exact on
that line. Questions are drawn from a seed; a fixed hash of the question text deals
each possible question to either the training pool or the evaluation pool, so the
evaluation questions never appear in the corpus, whatever seeds are used.

Spelling answers are letters separated by spaces (the question asks for that), which
keeps the skill about the letters rather than about how a tokenizer merges them.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = (
    "You are a careful assistant. Answer in plain text without tools: show brief "
    "working, then give the final line as 'Answer: ...'."
)

WORDS = (
    "apple", "river", "stone", "cloud", "table", "light", "green", "house", "music",
    "paper", "chair", "bread", "plant", "water", "night", "smile", "train", "sugar",
    "tiger", "ocean", "dream", "flame", "glass", "honey", "juice", "knife", "lemon",
    "mouse", "north", "olive", "piano", "queen", "radio", "sheep", "tower", "uncle",
    "voice", "whale", "youth", "zebra", "anchor", "bridge", "candle", "dragon",
    "engine", "forest", "garden", "hammer", "island", "jacket", "kitten", "ladder",
    "market", "needle", "orange", "pencil", "rabbit", "silver", "tunnel", "violin",
    "window", "yellow", "bottle", "castle", "desert", "finger", "guitar", "helmet",
    "jungle", "kettle", "lizard", "magnet", "napkin", "oyster", "parrot", "rocket",
    "saddle", "ticket", "valley", "walnut", "basket", "cactus", "falcon", "ginger",
    "cat", "dog", "sun", "map", "cup", "pen", "box", "egg", "hat", "key", "owl",
    "bee", "fox", "ink", "jar", "log", "net", "pig", "rug", "toy", "van", "web",
    "deploy", "release", "cache", "request", "timeout", "retry", "token", "session",
    "queue", "schema", "index", "backup", "metric", "alert", "config", "cluster",
    "replica", "shard", "worker", "batch", "shell", "kernel", "socket", "folder",
)  # fmt: skip

KINDS = ("add", "multiply", "count", "reverse", "upper", "sort")


@dataclass(frozen=True)
class Question:
    kind: str
    question: str
    answer: str  # the exact text expected after "Answer: "
    working: str  # the reference solution's text, ending with the answer line

    def messages(self) -> list[dict[str, Any]]:
        """The conversation up to the question (what a model is prompted with)."""
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.question},
        ]

    def conversation(self) -> list[dict[str, Any]]:
        """The full demonstration, for the corpus."""
        return [*self.messages(), {"role": "assistant", "content": self.working}]


def _add(rng: random.Random) -> Question:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    q = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} + {b}."])
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        terms = f"{x}+{y}" + (f"+{carry}" if carry else "")
        carry = s // 10
        steps.append(f"{terms}={s}" + (" carry 1" if carry else ""))
    working = "; ".join(steps) + f".\n{a} + {b} = {a + b}\nAnswer: {a + b}"
    return Question("add", q.format(a=a, b=b), str(a + b), working)


def _multiply(rng: random.Random) -> Question:
    a, b = rng.randint(10, 99), rng.randint(2, 9)
    q = rng.choice(["What is {a} * {b}?", "Multiply {a} by {b}.", "Compute {a} * {b}."])
    ones, tens = a % 10, a // 10
    low = ones * b
    high = tens * b + low // 10
    working = (
        f"{ones}*{b}={low}" + (f" carry {low // 10}" if low >= 10 else "")
        + f"; {tens}*{b}" + (f"+{low // 10}" if low >= 10 else "") + f"={high}."
        + f"\n{a} * {b} = {a * b}\nAnswer: {a * b}"
    )  # fmt: skip
    return Question("multiply", q.format(a=a, b=b), str(a * b), working)


def _spelled(word: str) -> str:
    return " ".join(word)


def _count(rng: random.Random) -> Question:
    word = rng.choice(WORDS)
    q = rng.choice(["How many letters are in the word '{w}'?", "Count the letters of '{w}'."])
    numbered = " ".join(f"{c}({i})" for i, c in enumerate(word, 1))
    working = f"Letters: {numbered}.\nAnswer: {len(word)}"
    return Question("count", q.format(w=word), str(len(word)), working)


def _reverse(rng: random.Random) -> Question:
    word = rng.choice(WORDS)
    q = "Write the letters of '{w}' in reverse order, separated by spaces."
    answer = _spelled(word[::-1])
    working = f"Letters: {_spelled(word)}.\nReversed: {answer}.\nAnswer: {answer}"
    return Question("reverse", q.format(w=word), answer, working)


def _upper(rng: random.Random) -> Question:
    word = rng.choice(WORDS)
    q = "Write '{w}' in capital letters, separated by spaces."
    answer = _spelled(word.upper())
    working = f"Letters: {_spelled(word)}.\nAnswer: {answer}"
    return Question("upper", q.format(w=word), answer, working)


def _sort(rng: random.Random) -> Question:
    word = rng.choice(WORDS)
    q = "Sort the letters of '{w}' alphabetically, separated by spaces."
    answer = _spelled("".join(sorted(word)))
    working = f"Letters: {_spelled(word)}.\nSorted: {answer}.\nAnswer: {answer}"
    return Question("sort", q.format(w=word), answer, working)


_MAKERS: dict[str, Callable[[random.Random], Question]] = {
    "add": _add,
    "multiply": _multiply,
    "count": _count,
    "reverse": _reverse,
    "upper": _upper,
    "sort": _sort,
}


def is_eval(question: Question) -> bool:
    """Whether ``question`` belongs to the evaluation pool (about a fifth of all)."""
    digest = hashlib.sha256(question.question.encode()).digest()
    return digest[0] % 5 == 0


def _draw(seed: int, n: int, want_eval: bool, salt: str) -> list[Question]:
    rng = random.Random(f"{salt}:{seed}")
    out: list[Question] = []
    while len(out) < n:
        question = _MAKERS[KINDS[len(out) % len(KINDS)]](rng)
        if is_eval(question) == want_eval:
            out.append(question)
    return out


def eval_questions(n: int, seed: int = 0) -> list[Question]:
    """``n`` evaluation questions, kinds in rotation; the same for the same seed."""
    return _draw(seed, n, True, "eval")


def train_questions(n: int, seed: int = 0) -> list[Question]:
    """``n`` demonstrations for the corpus, disjoint from every evaluation question."""
    return _draw(seed, n, False, "train")


_ANSWER = re.compile(r"Answer:\s*(.+?)\s*$", re.MULTILINE)


def extract_answer(text: str) -> str | None:
    """The text of the last ``Answer:`` line, whitespace-normalised; None if absent."""
    found = _ANSWER.findall(text or "")
    return " ".join(found[-1].split()).rstrip(".") if found else None


def score(question: Question, text: str) -> bool:
    """True iff the reply's final ``Answer:`` line is exactly the expected answer."""
    return extract_answer(text) == question.answer
