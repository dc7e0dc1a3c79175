"""The SFT baseline: the loss mask is exactly the assistant turns, and the loss falls."""

from __future__ import annotations

import pytest
import torch

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.policy.chat import ChatFormat
from pivotgym.rl.sft import SFTTrainer, sft_sample
from pivotgym.rl.training import OptimConfig
from tests.rl_data import CONVERSATION
from tests.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def fmt() -> ChatFormat:
    return ChatFormat(tiny_tokenizer())


def trained_spans(sample) -> list[list[int]]:
    spans, current = [], []
    for token, trained in zip(sample.input_ids, sample.loss_mask, strict=True):
        if trained:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_mask_covers_exactly_each_assistant_turn_through_im_end(fmt):
    sample = sft_sample(fmt, CONVERSATION)
    assistant = [m for m in CONVERSATION if m["role"] == "assistant"]
    assert sample.input_ids == tuple(fmt.conversation_ids(CONVERSATION))
    spans = trained_spans(sample)
    assert spans == [fmt.action_ids(m) for m in assistant]
    im_end = tiny_tokenizer().convert_tokens_to_ids("<|im_end|>")
    assert all(span[-1] == im_end for span in spans)
    # everything else (system, user, tool turns and the assistant headers) is masked
    untrained = fmt.tokenizer.decode(
        [t for t, m in zip(sample.input_ids, sample.loss_mask, strict=True) if not m]
    )
    for message in CONVERSATION:
        if message["role"] != "assistant":
            assert message["content"] in untrained


def test_mask_on_bundled_trajectories_with_tools(fmt):
    for traj in pivotgym.load_trajectories("terminal", split="train")[:3]:
        sample = sft_sample(fmt, traj.messages, TerminalEnv.tools)
        expected = [fmt.action_ids(traj.action(t)) for t in range(traj.num_turns)]
        assert trained_spans(sample) == expected


def test_a_conversation_is_cut_at_the_models_context(fmt):
    whole = sft_sample(fmt, CONVERSATION)
    cut = sft_sample(fmt, CONVERSATION, max_tokens=len(whole.input_ids) // 2)
    assert cut.input_ids == whole.input_ids[: len(cut.input_ids)]
    assert cut.loss_mask == whole.loss_mask[: len(cut.input_ids)]
    assert 0 < cut.num_trained < whole.num_trained
    first_turn = whole.loss_mask.index(True)
    assert sft_sample(fmt, CONVERSATION, max_tokens=first_turn).num_trained == 0


def test_sft_loss_decreases_and_resumes_exactly(fmt, tmp_path):
    examples = [sft_sample(fmt, CONVERSATION[: k + 1]) for k in (2, 4, 6)]
    optim = OptimConfig(lr=3e-3, warmup_steps=1, micro_batch_size=2)
    trainer = SFTTrainer(tiny_model(), examples, optim=optim, batch_size=2, seed=1)
    losses = [m["loss"] for m in trainer.train(8)]
    assert losses[-1] < 0.7 * losses[0]

    first = SFTTrainer(tiny_model(), examples, optim=optim, batch_size=2, seed=1)
    first.train(4)
    first.save(tmp_path / "sft")
    second = SFTTrainer(tiny_model(), examples, optim=optim, batch_size=2, seed=1)
    second.load(tmp_path / "sft")
    second.train(4)
    assert [m["loss"] for m in second.history] == losses
    for a, b in zip(trainer.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
