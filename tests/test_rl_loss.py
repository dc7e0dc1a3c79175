"""The policy loss against hand-computed values, and its pieces one at a time."""

from __future__ import annotations

import pytest
import torch

from pivotgym.rl.loss import AGGREGATIONS, aggregate, policy_loss, sft_loss


def batch(seed: int = 0, n: int = 5, slots: int = 7):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, slots, generator=g) * 3
    new = old + torch.randn(n, slots, generator=g) * 0.3
    adv = torch.randn(n, generator=g)
    lengths = torch.randint(1, slots + 1, (n,), generator=g)
    mask = (torch.arange(slots)[None, :] < lengths[:, None]).float()
    return new.requires_grad_(), old, adv, mask


def totals(mask):
    return {"total_tokens": int(mask.sum()), "total_sequences": mask.shape[0]}


def test_on_policy_loss_is_the_advantage_weighted_policy_gradient():
    new, _, adv, mask = batch()
    old = new.detach().clone()
    loss, stats = policy_loss(new, old, adv, mask, **totals(mask))
    loss.backward()
    # ratio = 1: loss = -sum A m / T, gradient d/dlogp = -A m / T, nothing clipped
    assert loss.item() == pytest.approx(-(adv[:, None] * mask).sum().item() / mask.sum().item())
    torch.testing.assert_close(new.grad, -adv[:, None] * mask / mask.sum())
    assert stats["clipped"] == 0 and stats["mismatch_kl"] == 0


def test_clip_low_and_clip_high_bound_the_ratio_on_their_own_side():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]])).requires_grad_()
    old = torch.zeros(1, 4)
    mask = torch.ones(1, 4)
    for adv, expected_ratio in ((1.0, [1.28, 0.5, 1.28, 0.5]), (-1.0, [1.5, 0.9, 1.5, 0.9])):
        loss, stats = policy_loss(
            logp,
            old,
            torch.tensor([adv]),
            mask,
            total_tokens=4,
            total_sequences=1,
            clip_low=0.1,
            clip_high=0.28,
        )
        # min(rho A, clip(rho) A): A > 0 caps the gain at 1 + clip_high and keeps low
        # ratios; A < 0 floors at 1 - clip_low and keeps high ratios (pessimistic bound)
        assert loss.item() == pytest.approx(-adv * sum(expected_ratio) / 4)
        assert stats["clipped"] == 2


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_aggregations_match_their_formulas_and_split_across_micro_batches(aggregation):
    terms, _, _, mask = batch(1)
    terms = terms.detach()
    m = mask
    formula = {
        "token-mean": (terms * m).sum() / m.sum(),
        "seq-mean-token-sum": (terms * m).sum() / m.shape[0],
        "seq-mean-token-mean": ((terms * m).sum(1) / m.sum(1)).mean(),
    }[aggregation]
    whole = aggregate(terms, m, aggregation, int(m.sum()), m.shape[0])
    parts = sum(
        aggregate(terms[i : i + 2], m[i : i + 2], aggregation, int(m.sum()), m.shape[0])
        for i in range(0, m.shape[0], 2)
    )
    torch.testing.assert_close(whole, formula)
    torch.testing.assert_close(parts, formula)


def test_unknown_aggregation_is_refused():
    new, old, adv, mask = batch()
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(new, old, adv, mask, aggregation="sum", **totals(mask))


def test_kl_adds_k3_with_the_k2_gradient_and_needs_no_reference_at_beta_zero():
    new, old, adv, mask = batch(2)
    ref = old - 0.2
    base, _ = policy_loss(new, old, adv, mask, **totals(mask))
    (g_base,) = torch.autograd.grad(base, new)
    with_kl, stats = policy_loss(new, old, adv, mask, ref_logprobs=ref, beta=0.5, **totals(mask))
    (g_kl,) = torch.autograd.grad(with_kl, new)
    q = (ref - new).detach()
    k3 = torch.exp(q) - q - 1
    n = mask.sum()
    assert (with_kl - base).item() == pytest.approx(
        0.5 * (k3 * mask).sum().item() / n.item(), rel=1e-5
    )
    torch.testing.assert_close(g_kl - g_base, 0.5 * (-q) * mask / n)  # d/dlogp of q^2/2
    assert stats["ref_kl"].item() == pytest.approx((k3 * mask).sum().item())
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(new, old, adv, mask, beta=0.1, **totals(mask))


def test_decoupled_correction_clips_around_the_learner_and_caps_the_sampler_weight():
    new, old, adv, mask = batch(3)
    bypass, _ = policy_loss(new, old, adv, mask, **totals(mask))
    same, _ = policy_loss(new, old, adv, mask, proximal_logprobs=old, **totals(mask))
    torch.testing.assert_close(bypass, same)

    prox = new.detach().clone()  # learner's pre-update logprobs: ratio 1, no clipping
    prox[0, 0] = old[0, 0] + 5.0  # a token the sampler found far less likely
    loss, stats = policy_loss(
        new, old, adv, mask, proximal_logprobs=prox, is_cap=2.0, **totals(mask)
    )
    w = torch.exp(prox - old).clamp(max=2.0)
    ratio = torch.exp(new - prox).detach()
    a = adv[:, None]
    surrogate = torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a)
    expected = -(w * surrogate * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    assert stats["is_capped"] >= 1


def test_sft_loss_is_the_mean_negative_logprob():
    logp, _, _, mask = batch(4)
    loss = sft_loss(logp, mask, total_tokens=int(mask.sum()), total_sequences=mask.shape[0])
    torch.testing.assert_close(loss, -(logp * mask).sum() / mask.sum())
