"""Word lists and small seeded helpers that domain generators share."""

from __future__ import annotations

import datetime
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

FIRST_NAMES = (
    "Ada", "Amir", "Ana", "Ben", "Chen", "Chloe", "Dara", "David", "Elena", "Emeka", "Farah",
    "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Julia", "Kai", "Kofi", "Lara",
    "Leo", "Maya", "Mateo", "Nadia", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Sofia",
    "Tariq", "Uma", "Victor", "Wen", "Yara", "Yusuf", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Bauer", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Patel", "Quintero",
    "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
)  # fmt: skip


def pick(rng: random.Random, options: Sequence[T]) -> T:
    """One of ``options``, drawn with ``rng`` (a seeded choice, named for reading)."""
    return options[rng.randrange(len(options))]


def dates_after(start: str, days: int) -> list[str]:
    """The ``days`` dates from ``start`` on (``start`` included), as YYYY-MM-DD."""
    first = datetime.date.fromisoformat(start)
    return [(first + datetime.timedelta(days=i)).isoformat() for i in range(days)]
