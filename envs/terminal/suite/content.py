"""Pools of realistic names and values that families draw from."""

from __future__ import annotations

import random

FIRST_NAMES = (
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Georg",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Zoe",
)
LAST_NAMES = (
    "Smith",
    "Garcia",
    "Müller",
    "Okafor",
    "Tanaka",
    "Rossi",
    "Novak",
    "Silva",
    "Kim",
    "Dubois",
    "Jensen",
    "Kowalski",
    "Haddad",
    "Nguyen",
    "Larsen",
    "Costa",
    "Ibrahim",
    "Moreau",
)
CITIES = (
    "Berlin",
    "Lisbon",
    "Toronto",
    "Osaka",
    "Nairobi",
    "Lyon",
    "Austin",
    "Oslo",
    "Porto",
    "Seoul",
    "Denver",
    "Madrid",
    "Krakow",
    "Dublin",
)
SERVICES = (
    "api",
    "auth",
    "billing",
    "search",
    "worker",
    "gateway",
    "notifier",
    "scheduler",
    "inventory",
    "payments",
    "cache",
    "ingest",
)
PRODUCTS = (
    ("keyboard", 49.90),
    ("monitor", 189.00),
    ("mouse", 19.50),
    ("webcam", 64.99),
    ("headset", 79.00),
    ("usb hub", 24.95),
    ("laptop stand", 34.00),
    ("desk lamp", 29.99),
    ("hdmi cable", 9.99),
    ("ssd 1tb", 89.90),
    ("router", 119.00),
    ("microphone", 99.50),
)
CATEGORIES = ("hardware", "software", "travel", "office", "training", "cloud")
WORDS = (
    "deploy",
    "release",
    "cache",
    "request",
    "timeout",
    "retry",
    "token",
    "session",
    "queue",
    "schema",
    "index",
    "backup",
    "metric",
    "alert",
    "config",
    "cluster",
    "replica",
    "shard",
    "worker",
    "batch",
    "stream",
    "buffer",
    "socket",
    "thread",
)
LOG_MESSAGES = {
    "ERROR": (
        "connection refused by upstream",
        "timeout while reading response",
        "failed to parse payload",
        "database deadlock detected",
        "permission denied on /var/data",
        "unhandled exception in handler",
    ),
    "WARN": (
        "slow query took 1532ms",
        "retrying request (attempt 2)",
        "cache miss ratio above threshold",
        "deprecated endpoint called",
    ),
    "INFO": (
        "request completed",
        "user logged in",
        "job scheduled",
        "health check ok",
        "config reloaded",
        "connection established",
    ),
}
EXTENSIONS = {
    "pdf": ("invoice", "contract", "manual", "report", "statement"),
    "jpg": ("holiday", "portrait", "screenshot", "scan", "team_photo"),
    "png": ("logo", "diagram", "chart", "icon", "mockup"),
    "txt": ("notes", "todo", "readme", "draft", "ideas"),
    "csv": ("export", "contacts", "sales", "inventory", "budget"),
    "mp3": ("podcast", "interview", "voice_memo", "song"),
    "zip": ("backup", "photos", "archive", "bundle"),
}


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def sample_names(rng: random.Random, pool: tuple[str, ...], k: int) -> list[str]:
    """``k`` distinct items of ``pool`` in random order."""
    return rng.sample(list(pool), k)


def paragraph(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))
