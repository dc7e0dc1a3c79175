"""Group-relative advantages: each sample's reward against the other samples of its state.

For the samples ``i`` of one group (the ``G`` actions sampled at one pivot state, grouped
by pivot id, never by text), with ``V`` the group's valid samples (those whose reward is
not an infrastructure failure) and ``n = |V|``::

    baseline   b_i = mean_{j in V} r_j                      (default)
               b_i = mean_{j in V, j != i} r_j              (leave_one_out: RLOO)
    advantage  A_i = (r_i - b_i) / (std_{j in V} r_j + eps) (scale_std, GRPO)
               A_i =  r_i - b_i                             (scale_std=False, Dr. GRPO)

``std`` is the **population** standard deviation (divide by ``n``), the same statistic
as the pivot filter's variance, so the normalised advantages of a group have mean 0 and
population std ``sigma / (sigma + eps)``, i.e. 1 up to ``eps``. With a leave-one-out
baseline ``A_i = n / (n - 1) * (r_i - mean)``: still zero-mean, scaled by ``n / (n-1)``.

A group whose valid rewards are all equal (or that has fewer than two valid samples)
has zero variance: every advantage is 0, so it carries no policy gradient, yet under
token-mean aggregation its tokens would still enlarge the normaliser and shrink every
other group's step. Such groups are reported, and with ``drop_zero_variance`` their
samples get no loss at all (the online counterpart of the pivot filter). Samples whose
reward is an infrastructure failure get no loss either, and never enter a statistic.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupAdvantages:
    """The advantages of a flat batch of samples.

    ``advantages[i]`` is sample ``i``'s advantage (0 where it gets no loss);
    ``trained[i]`` says whether sample ``i`` enters the loss at all: false for an
    infrastructure failure and, with ``drop_zero_variance``, for the samples of
    zero-variance groups. ``groups`` counts the distinct group ids,
    ``zero_variance_groups`` those with zero variance among their valid rewards
    (all-failed groups included), ``infra_failed`` the failed samples.
    """

    advantages: np.ndarray
    trained: np.ndarray
    groups: int
    zero_variance_groups: int
    infra_failed: int


def group_advantages(
    rewards: Sequence[float],
    groups: Sequence[Hashable],
    *,
    infra_failed: Sequence[bool] | None = None,
    scale_std: bool = True,
    leave_one_out: bool = False,
    drop_zero_variance: bool = True,
    eps: float = 1e-6,
) -> GroupAdvantages:
    """Advantages of ``rewards``, sample ``i`` belonging to group ``groups[i]`` (see the
    module docstring for the formulas and flags). ``infra_failed[i]`` marks a reward that
    is an infrastructure failure rather than a score; its value is ignored."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(groups) != len(r):
        raise ValueError(f"{len(r)} rewards but {len(groups)} group ids")
    failed = np.zeros(len(r), bool) if infra_failed is None else np.asarray(infra_failed, bool)
    if failed.shape != r.shape:
        raise ValueError(f"{len(r)} rewards but {len(failed)} infra_failed flags")
    if not np.isfinite(r[~failed]).all():
        raise ValueError("a valid reward is not finite (mark infrastructure failures instead)")

    advantages = np.zeros(len(r))
    trained = ~failed
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    zero_variance = 0
    for rows in members.values():
        idx = np.asarray(rows)
        valid = idx[~failed[idx]]
        values = r[valid]
        if len(values) < 2 or values.max() == values.min():
            zero_variance += 1
            if drop_zero_variance:
                trained[idx] = False
            continue
        n = len(values)
        baseline = (values.sum() - values) / (n - 1) if leave_one_out else values.mean()
        adv = values - baseline
        if scale_std:
            adv = adv / (values.std() + eps)
        advantages[valid] = adv
    return GroupAdvantages(
        advantages=advantages,
        trained=trained,
        groups=len(members),
        zero_variance_groups=zero_variance,
        infra_failed=int(failed.sum()),
    )
