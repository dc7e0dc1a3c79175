"""The prefix cache's bookkeeping: longest cached opening, byte budget, eviction order."""

from __future__ import annotations

import torch

from pivotgym.policy.engines.prefix_cache import ROOT, PrefixCache

BLOCK = 4


def kv(tag: float, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One block's keys and values, filled with ``tag`` so a test can tell blocks apart."""
    return [(torch.full((1, BLOCK, 2), tag), torch.full((1, BLOCK, 2), -tag))] * layers


def fill(cache: PrefixCache, ids: list[int]) -> list[int]:
    """Keep every full block of ``ids``, as the engine does after a prefill."""
    path: list[int] = []
    for start in range(0, len(ids) - BLOCK + 1, BLOCK):
        parent = path[-1] if path else ROOT
        path.append(cache.insert(parent, ids[start : start + BLOCK], kv(float(start))))
    cache.touch(path)
    return path


def test_lookup_gives_the_longest_cached_opening_and_leaves_a_token_to_compute():
    cache = PrefixCache(BLOCK, max_bytes=1 << 20)
    fill(cache, list(range(12)))
    keys, blocks = cache.lookup([*list(range(12)), 99, 98])
    assert len(keys) == 3 and [b[0][0][0, 0, 0].item() for b in blocks] == [0.0, 4.0, 8.0]
    # The whole prompt is cached: its last block is computed again for its logits.
    assert len(cache.lookup(list(range(12)))[0]) == 2
    # Diverging inside the second block keeps only the first.
    assert len(cache.lookup([0, 1, 2, 3, 4, 5, 77, 7, 8, 9])[0]) == 1
    assert cache.lookup([5, 1, 2, 3, 4, 5])[0] == []
    assert cache.hits == (3 + 2 + 1) * BLOCK


def test_a_block_is_found_only_after_its_own_parent():
    cache = PrefixCache(BLOCK, max_bytes=1 << 20)
    fill(cache, [1, 2, 3, 4, 5, 6, 7, 8])
    # The same second block after another first block is another block.
    assert len(cache.lookup([9, 9, 9, 9, 5, 6, 7, 8, 0])[0]) == 0
    fill(cache, [9, 9, 9, 9, 5, 6, 7, 8])
    assert len(cache) == 4
    assert len(cache.lookup([9, 9, 9, 9, 5, 6, 7, 8, 0])[0]) == 2


def test_a_hash_collision_is_no_hit():
    class Colliding(PrefixCache):
        def key(self, parent, ids):
            return 7

    cache = Colliding(BLOCK, max_bytes=1 << 20)
    fill(cache, [1, 2, 3, 4])
    assert cache.lookup([5, 6, 7, 8, 9])[0] == []
    assert len(cache.lookup([1, 2, 3, 4, 9])[0]) == 1


def test_the_budget_evicts_least_recently_used_suffixes_before_their_openings():
    block_bytes = sum(k.nbytes + v.nbytes for k, v in kv(0.0))
    cache = PrefixCache(BLOCK, max_bytes=5 * block_bytes)
    shared = [0, 0, 0, 0]
    fill(cache, [*shared, 1, 1, 1, 1, 1, 1, 1, 1])  # 3 blocks
    fill(cache, [*shared, 2, 2, 2, 2, 2, 2, 2, 2])  # 2 new blocks, 5 in all
    assert len(cache) == 5 and cache.nbytes == 5 * block_bytes
    fill(cache, [*shared, 3, 3, 3, 3])  # one more: the oldest suffix block goes
    assert len(cache) == 5 and cache.nbytes <= cache.max_bytes
    # The shared opening was used last of all blocks, so it stays.
    assert len(cache.lookup([*shared, 3, 3, 3, 3, 0])[0]) == 2
    assert len(cache.lookup([*shared, 2, 2, 2, 2, 2, 2, 2, 2, 0])[0]) == 3
    assert len(cache.lookup([*shared, 1, 1, 1, 1, 1, 1, 1, 1, 0])[0]) == 2
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.lookup([*shared, 3])[0] == []
