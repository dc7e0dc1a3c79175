"""The policy loss of GRPO-family methods, and the SFT loss, over action tokens.

Tensors are ``[N, A]``: ``N`` sequences, ``A`` slots for the trained tokens of each
(right-padded; ``mask`` is 1 on real slots). Both losses are *sums* divided by a
normaliser counted over the whole optimiser batch, never over the micro-batch, so the
losses of the micro-batches add up to the loss of the batch and accumulated gradients
equal one big batch's.
"""

from __future__ import annotations

from typing import Literal

import torch

Aggregation = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]
AGGREGATIONS: tuple[Aggregation, ...] = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: Aggregation,
    total_tokens: int,
    total_sequences: int,
) -> torch.Tensor:
    """Reduce ``[N, A]`` per-token terms to this micro-batch's share of the batch loss.

    ``total_tokens`` and ``total_sequences`` count the trained tokens and sequences of
    the whole optimiser batch::

        token-mean           sum_i sum_t l_it / total_tokens                 (DAPO)
        seq-mean-token-sum   sum_i sum_t l_it / total_sequences
        seq-mean-token-mean  sum_i (sum_t l_it / |o_i|) / total_sequences    (GRPO)
    """
    summed = per_token * mask
    if aggregation == "token-mean":
        return summed.sum() / max(total_tokens, 1)
    if aggregation == "seq-mean-token-sum":
        return summed.sum() / max(total_sequences, 1)
    if aggregation == "seq-mean-token-mean":
        per_seq = summed.sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / max(total_sequences, 1)
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    total_tokens: int,
    total_sequences: int,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: Aggregation = "token-mean",
    proximal_logprobs: torch.Tensor | None = None,
    is_cap: float = 2.0,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate with behaviour correction and an optional KL to the reference.

    ``logprobs`` are the learner's (with gradient) for the sampled tokens,
    ``old_logprobs`` the sampler's (the behaviour policy mu, recorded with each sample),
    ``advantages`` ``[N]``, one per sequence. For each trained token::

        rho_t = pi_theta / pi_prox                       pi_prox = mu unless given
        w_t   = min(pi_prox / mu, is_cap), no gradient   1 when pi_prox = mu
        l_t   = -w_t * min(rho_t A, clip(rho_t, 1 - clip_low, 1 + clip_high) A)
              + beta * k3_t,   k3_t = exp(q_t) - q_t - 1,  q_t = log pi_ref - log pi_theta

    then :func:`aggregate` over the batch.

    **Off-policy samples.** By default the trust region is taken around the sampler's
    own policy (pi_prox = mu): the ratio against the recorded logprobs both corrects
    for samples drawn by older weights and bounds the step. When the learner's
    pre-update logprobs (``proximal_logprobs``) differ from the sampler's (a different
    engine or precision, or stale weights), passing them decouples the two jobs: the
    clip bounds the step around the learner's current policy, and the truncated
    importance weight ``w_t`` (TIS, capped at ``is_cap``) corrects for the sampler.

    **KL.** With ``beta > 0``, ``ref_logprobs`` (the frozen initial policy pi0) are
    needed; with ``beta == 0`` they are never looked at, so callers skip the reference
    forward. The value added is k3 (unbiased, >= 0), but its gradient is k2's,
    ``(log pi_theta - log pi_ref) grad log pi_theta``, whose expectation is the gradient
    of KL(pi_theta || pi_ref); k3's own gradient would be that of the reverse direction.

    Returns the loss and token *sums* over this micro-batch for the caller to average
    over the batch: ``clipped`` (tokens where the clip was active), ``mismatch_kl``
    (k3 between mu and pi_theta: sampler/learner drift), ``ref_kl`` and ``is_capped``.
    """
    mask = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype)[:, None]
    behaviour = old_logprobs if proximal_logprobs is None else proximal_logprobs

    ratio = torch.exp(logprobs - behaviour)
    clipped_ratio = ratio.clamp(1 - clip_low, 1 + clip_high)
    surrogate = torch.min(ratio * adv, clipped_ratio * adv)
    per_token = -surrogate

    stats: dict[str, torch.Tensor] = {}
    if proximal_logprobs is not None:
        is_weight = torch.exp(proximal_logprobs - old_logprobs).clamp(max=is_cap).detach()
        per_token = is_weight * per_token
        stats["is_capped"] = ((is_weight >= is_cap).to(mask.dtype) * mask).sum().detach()

    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs")
        q = ref_logprobs - logprobs
        k3 = torch.exp(q) - q - 1
        k2 = 0.5 * q**2
        per_token = per_token + beta * (k3.detach() + k2 - k2.detach())
        stats["ref_kl"] = (k3 * mask).sum().detach()

    loss = aggregate(per_token, mask, aggregation, total_tokens, total_sequences)

    with torch.no_grad():
        stats["clipped"] = ((surrogate != ratio * adv).to(mask.dtype) * mask).sum()
        drift = old_logprobs - logprobs
        stats["mismatch_kl"] = ((torch.exp(drift) - drift - 1) * mask).sum()
    return loss, stats


def sft_loss(
    logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    total_tokens: int,
    total_sequences: int,
    aggregation: Aggregation = "token-mean",
) -> torch.Tensor:
    """Cross-entropy of the demonstrated tokens: ``l_t = -log pi_theta(a*_t | s, a*_<t)``,
    aggregated over the batch like the policy loss."""
    return aggregate(-logprobs, mask.to(logprobs.dtype), aggregation, total_tokens, total_sequences)
