"""Learner logprobs of sampled tokens equal the engine's and a full-logits forward's."""

from __future__ import annotations

import asyncio

import pytest
import torch

from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Sample
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.rl.batch import TrainSample, collate, shared_context
from pivotgym.rl.logprobs import token_logprobs
from tests.rl_data import CONVERSATION, PROMPTS, sampling
from tests.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def fmt() -> ChatFormat:
    return ChatFormat(tiny_tokenizer())


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_learner_logprobs_equal_the_engine_sample_logprobs(fmt, temperature):
    engine = TorchEngine(tiny_model(), tiny_tokenizer())
    prompts = [fmt.prompt_ids(p) for p in PROMPTS]
    groups = asyncio.run(
        engine.generate_batch(prompts, 3, sampling(fmt, 5, temperature, max_new=20))
    )
    samples = [TrainSample.turn(p, s) for p, g in zip(prompts, groups, strict=True) for s in g]
    batch = collate(samples)
    with torch.no_grad():
        ours, _ = token_logprobs(tiny_model(), batch, temperature)
    assert batch.mask.sum() > 20
    torch.testing.assert_close(ours * batch.mask, batch.old_logprobs, atol=1e-4, rtol=0)


def test_learner_logprobs_equal_a_full_logits_forward(fmt):
    model = tiny_model()
    ids = fmt.conversation_ids(CONVERSATION)
    # two assistant segments trained, everything else (and the padding) not
    mask = [False] * len(ids)
    mask[30:45] = [True] * 15
    mask[60:70] = [True] * 10
    long = TrainSample(tuple(ids), tuple(mask))
    short = TrainSample(tuple(ids[:40]), tuple(mask[:40]))
    batch = collate([long, short])
    with torch.no_grad():
        ours, entropy = token_logprobs(model, batch, 0.8, with_entropy=True)
        for row, sample in enumerate([long, short]):
            x = torch.tensor([sample.input_ids])
            full = torch.log_softmax(model(x).logits[0].float() / 0.8, -1)
            pos = torch.tensor(sample.loss_mask).nonzero().squeeze(1)
            expected = full[pos - 1, x[0, pos]]
            k = len(pos)
            torch.testing.assert_close(ours[row, :k], expected, atol=1e-5, rtol=0)
            h = -(full[pos - 1].exp() * full[pos - 1]).sum(-1)
            torch.testing.assert_close(entropy[row, :k], h, atol=1e-4, rtol=0)
            assert (ours[row, k:] == 0).all()


def test_gradient_flows_only_through_trained_positions(fmt):
    model = tiny_model()
    ids = fmt.conversation_ids(CONVERSATION)
    mask = [False] * len(ids)
    mask[-5:] = [True] * 5
    logprobs, _ = token_logprobs(model, collate([TrainSample(tuple(ids), tuple(mask))]))
    logprobs.sum().backward()
    emb = model.get_input_embeddings().weight.grad
    assert emb is not None and emb.abs().sum() > 0


def test_a_group_runs_its_shared_state_once_with_the_full_sequences_results(fmt):
    engine = TorchEngine(tiny_model(), tiny_tokenizer())
    prompt = fmt.prompt_ids(CONVERSATION[:4])
    (group,) = asyncio.run(engine.generate_batch([prompt], 4, sampling(fmt, 9, max_new=16)))
    samples = [TrainSample.turn(prompt, s) for s in group]
    shared, full = collate(samples), collate(samples, share=False)
    # Everything but the prompt's last token, whose hidden state predicts the action.
    assert len(shared.prefix_ids) == len(prompt) - 1 and len(full.prefix_ids) == 0
    assert shared.input_ids.shape[1] == full.input_ids.shape[1] - len(prompt) + 1
    results = []
    for batch in (shared, full):
        model = tiny_model()
        logprobs, _ = token_logprobs(model, batch, 0.9)
        (logprobs * torch.arange(1.0, 1 + logprobs.shape[1])).sum().backward()
        results.append((logprobs.detach(), [p.grad for p in model.parameters()]))
    (ours, our_grads), (theirs, their_grads) = results
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_shared_context_stops_at_the_first_difference_and_before_any_prediction():
    a = TrainSample((1, 2, 3, 4, 5, 6), (False, False, False, False, True, True))
    b = TrainSample((1, 2, 9, 4, 5, 6), (False, False, False, False, True, True))
    c = TrainSample((1, 2, 3, 4, 5, 7), (False, False, True, True, True, True))
    assert shared_context([a, a]) == 3  # token 4 predicts the first trained token
    assert shared_context([a, b]) == 2
    assert shared_context([a, c]) == 1
    assert shared_context([a]) == 0


def test_sliding_window_models_share_context_with_the_same_results(fmt):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.tiny_models import tiny_checkpoint

    config = AutoConfig.from_pretrained(tiny_checkpoint())
    config.use_sliding_window, config.sliding_window, config.max_window_layers = True, 64, 0
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    prompt = fmt.prompt_ids(CONVERSATION[:4])
    action = fmt.action_ids(CONVERSATION[4])
    samples = [TrainSample.turn(prompt, Sample(tuple(action[:k]), (0.0,) * k, "", "stop", "0"))
               for k in (len(action), len(action) - 3)]  # fmt: skip
    shared = collate(samples)
    assert len(shared.prefix_ids) > 64  # longer than the window
    with torch.no_grad():
        ours, _ = token_logprobs(model, shared)
        theirs, _ = token_logprobs(model, collate(samples, share=False))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
