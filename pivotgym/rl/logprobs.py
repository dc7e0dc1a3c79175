"""Logprobs of the trained tokens, without vocabulary-wide logits over the prefix.

A pivot's prompt is the whole conversation so far (thousands of tokens) while its action
is a few dozen, so a causal LM's usual forward, which projects every position onto the
vocabulary, spends most of its time and memory on logits nobody reads. Here the
transformer body runs over the full ids, the hidden states that predict trained tokens
are gathered, and only those go through the LM head::

    h        = body(input_ids)[row, pos - 1]           for each trained token at pos
    logp_t   = log_softmax(lm_head(h) / T)[target]      T = the sampling temperature

which is exactly what the engine reports for a sampled token (logits divided by the
temperature, full distribution, no top-k/top-p), so the ratio of the two is 1 at
identical weights.

A batch with shared context (``prefix_ids``, see :mod:`pivotgym.rl.batch`) runs the
body over it once, keeping its keys and values, and every row continues from them: a
PivotRL group of G actions costs one pass over the state instead of G.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from pivotgym.policy.engines.torch import cache_kwarg
from pivotgym.rl.batch import Collated

_UNSUPPORTED_HEAD = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def token_logprobs(
    model: Any,
    batch: Collated,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[N, A]`` logprobs of ``batch``'s trained tokens at ``temperature`` (0 on padding
    slots), and their entropies (detached) when ``with_entropy``.

    ``model`` is a Hugging Face causal LM whose logits are ``lm_head(hidden)``; models
    that post-process logits (soft-capping, logit scales) are refused rather than
    silently scored wrong.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    config = getattr(model, "config", None)
    for name in _UNSUPPORTED_HEAD:
        if getattr(config, name, None) not in (None, 1.0):
            raise NotImplementedError(f"models with {name} are not supported")
    batch = batch.to(next(model.parameters()).device)
    hidden = _hidden_states(model.base_model, batch)
    picked = hidden[batch.rows, batch.cols]
    logits = model.get_output_embeddings()(picked).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = batch.targets.flatten()[batch.slots]
    flat = logp_all.gather(1, targets[:, None]).squeeze(1)
    logprobs = _unflatten(flat, batch)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = _unflatten(-(logp_all.exp() * logp_all).sum(-1), batch)
    return logprobs, entropy


def _unflatten(flat: torch.Tensor, batch: Collated) -> torch.Tensor:
    """Per-token values in row-major order laid out ``[N, A]``, 0 on padding slots."""
    out = flat.new_zeros(batch.mask.numel()).index_copy(0, batch.slots, flat)
    return out.view(batch.mask.shape)


def _hidden_states(body: Any, batch: Collated) -> torch.Tensor:
    """``[N, L]`` last hidden states of ``batch.input_ids``, each row continuing
    ``batch.prefix_ids``."""
    ids, attention, prefix = batch.input_ids, batch.attention_mask, batch.prefix_ids
    shared = len(prefix)
    if not shared:
        return _body(body, ids, attention, 0)
    # The prefix's keys and values keep their graph, so gradients reach it. (A sliding
    # window layer keeps only the window's last keys, which is all a later row sees.)
    cache = DynamicCache(config=body.config)
    _body(body, prefix[None], torch.ones_like(prefix[None]), 0, cache)
    for layer in cache.layers:
        layer.keys = layer.keys.expand(len(ids), -1, -1, -1)
        layer.values = layer.values.expand(len(ids), -1, -1, -1)
    attention = torch.cat([attention.new_ones(len(ids), shared), attention], 1)
    return _body(body, ids, attention, shared, cache)


def _body(
    body: Any, ids: torch.Tensor, attention: torch.Tensor, start: int, cache: Any = None
) -> torch.Tensor:
    positions = torch.arange(start, start + ids.shape[1], device=ids.device).expand_as(ids)
    kwargs = {cache_kwarg(body): cache} if cache is not None else {}
    return body(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=cache is not None,
        **kwargs,
    ).last_hidden_state
