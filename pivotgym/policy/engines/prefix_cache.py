"""Keys and values of prompt prefixes, kept between requests of the torch engine.

Agent prompts repeat themselves: every prompt opens with the same system prompt and tool
schemas, and each turn of an episode extends the previous turn's prompt by the action
and the tool's output. Prefilling every prompt from scratch made sampling quadratic in
the episode's length; with this cache a turn prefills only what is new.

**Blocks.** Prompts are cut into blocks of ``block`` tokens from their start; only full
blocks are kept. A block's keys and values depend only on the tokens up to its end, so
a prompt that opens with a kept block continues from it: the engine prefills only the
rest, attending to the cached keys and values. What it computes equals a prefill from
scratch up to floating-point rounding (the matrix shapes differ), as with any
prefix-caching server.

**Addressing.** A block is found by a chain: its key is the hash of its parent's key
and its own token ids, and the entry keeps both, so a lookup compares ids rather than
trusting the hash.

**Eviction** is least-recently-used within ``max_bytes``. A use refreshes the blocks of
its path from the leaf up, so a block is never older than its descendants and eviction
never strands a live suffix behind a missing parent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

ROOT = 0
# One block's keys and values: a ``(keys, values)`` pair per layer, each
# ``[heads, block, head_dim]``.
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class _Block:
    parent: int
    ids: tuple[int, ...]
    kv: tuple[LayerKV, ...]
    nbytes: int


class PrefixCache:
    """Full ``block``-token blocks of prompts already prefilled, at most ``max_bytes``."""

    def __init__(self, block: int, max_bytes: int) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.block = block
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0  # tokens served from the cache
        self._blocks: OrderedDict[int, _Block] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def key(self, parent: int, ids: Sequence[int]) -> int:
        return hash((parent, tuple(ids)))

    def lookup(self, ids: Sequence[int]) -> tuple[list[int], list[tuple[LayerKV, ...]]]:
        """The keys and contents of the longest run of cached blocks opening ``ids``,
        leaving at least one token of ``ids`` to compute (its logits are needed)."""
        keys: list[int] = []
        found: list[tuple[LayerKV, ...]] = []
        parent = ROOT
        for start in range(0, len(ids) - self.block, self.block):
            chunk = tuple(ids[start : start + self.block])
            key = self.key(parent, chunk)
            entry = self._blocks.get(key)
            if entry is None or entry.parent != parent or entry.ids != chunk:
                break
            keys.append(key)
            found.append(entry.kv)
            parent = key
        self.hits += len(keys) * self.block
        return keys, found

    def insert(self, parent: int, ids: Sequence[int], kv: Sequence[LayerKV]) -> int:
        """Keep one block (``ids`` after the block ``parent``); returns its key."""
        ids = tuple(ids)
        if len(ids) != self.block:
            raise ValueError(f"a block holds {self.block} tokens, got {len(ids)}")
        key = self.key(parent, ids)
        if key not in self._blocks:
            nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
            self._blocks[key] = _Block(parent, ids, tuple(kv), nbytes)
            self.nbytes += nbytes
        return key

    def touch(self, path: Sequence[int]) -> None:
        """Mark the blocks of ``path`` (root first) as just used, then evict down to
        ``max_bytes``."""
        for key in reversed(path):
            if key in self._blocks:
                self._blocks.move_to_end(key)
        while self.nbytes > self.max_bytes and self._blocks:
            _, old = self._blocks.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        """Forget every block: keys and values belong to the weights that made them."""
        self._blocks.clear()
        self.nbytes = 0
