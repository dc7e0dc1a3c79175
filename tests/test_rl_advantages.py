"""Group advantages: normalisation, leave-one-out, shift invariance, failure masking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pivotgym.rl.advantages import group_advantages

reward = st.floats(0.0, 1.0, allow_nan=False)
group = st.lists(reward, min_size=2, max_size=16)


def spread(values) -> bool:
    return max(values) - min(values) > 1e-2


@given(st.lists(group, min_size=1, max_size=5))
def test_normalised_advantages_have_zero_mean_and_unit_population_std(groups):
    assume(all(spread(g) for g in groups))
    rewards = [r for g in groups for r in g]
    ids = [k for k, g in enumerate(groups) for _ in g]
    out = group_advantages(rewards, ids, eps=0.0)
    for k in range(len(groups)):
        adv = out.advantages[np.asarray(ids) == k]
        assert abs(adv.mean()) < 1e-9
        assert adv.std(ddof=0) == pytest.approx(1.0, abs=1e-9)
    assert out.trained.all() and out.zero_variance_groups == 0


@given(group)
def test_default_eps_keeps_std_within_eps_of_one(values):
    assume(spread(values))
    adv = group_advantages(values, [0] * len(values)).advantages
    sigma = np.std(values)
    assert adv.std() == pytest.approx(sigma / (sigma + 1e-6), rel=1e-9)


@given(group)
def test_leave_one_out_subtracts_the_mean_of_the_others(values):
    assume(spread(values))
    out = group_advantages(values, ["p"] * len(values), scale_std=False, leave_one_out=True)
    r = np.asarray(values)
    expected = [r[i] - np.delete(r, i).mean() for i in range(len(r))]
    np.testing.assert_allclose(out.advantages, expected, atol=1e-12)
    n = len(r)
    np.testing.assert_allclose(out.advantages, n / (n - 1) * (r - r.mean()), atol=1e-12)


@given(group)
def test_dr_grpo_advantage_is_the_centred_reward(values):
    assume(spread(values))
    out = group_advantages(values, [0] * len(values), scale_std=False)
    np.testing.assert_allclose(out.advantages, np.asarray(values) - np.mean(values), atol=1e-12)


@given(group, st.floats(-100, 100), st.booleans(), st.booleans())
def test_advantages_do_not_change_when_rewards_shift(values, shift, scale_std, loo):
    assume(spread(values))
    ids = [0] * len(values)
    a = group_advantages(values, ids, scale_std=scale_std, leave_one_out=loo).advantages
    b = group_advantages([v + shift for v in values], ids, scale_std=scale_std, leave_one_out=loo)
    np.testing.assert_allclose(a, b.advantages, atol=1e-6)


@given(group, st.lists(st.booleans(), min_size=16, max_size=16), st.floats(-1e6, 1e6))
def test_failed_rewards_are_masked_out_of_statistics_and_loss(values, flags, garbage):
    failed = flags[: len(values)]
    valid = [v for v, f in zip(values, failed, strict=True) if not f]
    assume(len(valid) >= 2 and spread(valid))
    poisoned = [garbage if f else v for v, f in zip(values, failed, strict=True)]
    out = group_advantages(poisoned, [0] * len(values), infra_failed=failed)
    alone = group_advantages(valid, [0] * len(valid))
    mask = ~np.asarray(failed)
    np.testing.assert_allclose(out.advantages[mask], alone.advantages)
    assert (out.advantages[~mask] == 0).all()
    assert not out.trained[~mask].any() and out.trained[mask].all()
    assert out.infra_failed == sum(failed)


def test_zero_variance_groups_are_counted_and_dropped():
    rewards = [1, 1, 1, 0, 1, 0, 0, 0, 0.5, 7.0]
    ids = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "d"]
    failed = [False] * 8 + [False, True]  # group d: one valid sample left
    out = group_advantages(rewards, ids, infra_failed=failed)
    assert out.groups == 4 and out.zero_variance_groups == 3
    assert out.trained.tolist() == [False] * 3 + [True] * 2 + [False] * 5
    assert (out.advantages[out.trained] != 0).all()
    kept = group_advantages(rewards, ids, infra_failed=failed, drop_zero_variance=False)
    assert kept.trained.tolist() == [True] * 9 + [False]
    assert (kept.advantages[[0, 1, 2, 5, 6, 7, 8]] == 0).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="group ids"):
        group_advantages([1.0, 0.0], [0])
    with pytest.raises(ValueError, match="not finite"):
        group_advantages([float("nan"), 0.0], [0, 0])
    assert group_advantages([float("nan"), 0.0, 1.0], [0] * 3, infra_failed=[1, 0, 0]).trained[1]
