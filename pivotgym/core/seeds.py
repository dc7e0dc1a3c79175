"""Seeds derived from identities, so randomness does not depend on scheduling.

A candidate, an episode or a training step draws from ``derive_seed(run seed, what it
is)``: the same run samples the same actions whatever else shares a batch, and an
interrupted run resumed later samples exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed hashed from ``parts`` (their ``str``), stable across processes."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
