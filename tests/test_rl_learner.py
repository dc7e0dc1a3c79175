"""The GRPO learner: accumulation, masking, weight pushes, schedules and exact resume."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.torch import TorchEngine
from pivotgym.rl.batch import TrainSample, collate
from pivotgym.rl.learner import Learner, RLConfig
from pivotgym.rl.loss import AGGREGATIONS
from pivotgym.rl.training import BatchCursor, OptimConfig
from tests.rl_data import CONVERSATION, sampled_batch
from tests.tiny_models import tiny_model, tiny_tokenizer

TIMING = {"time_s", "tokens_per_s"}


@pytest.fixture(scope="module")
def fmt() -> ChatFormat:
    return ChatFormat(tiny_tokenizer())


@pytest.fixture(scope="module")
def engine() -> TorchEngine:
    return TorchEngine(tiny_model(), tiny_tokenizer())


@pytest.fixture(scope="module")
def batch(engine, fmt) -> list[TrainSample]:
    np.random.seed(0)
    return sampled_batch(engine, fmt, seed=3)


def multi_turn(fmt: ChatFormat, advantage: float) -> TrainSample:
    """An E2E episode: both tool-calling turns trained, tool outputs and prompts masked."""
    a1, a2 = (fmt.action_ids(CONVERSATION[i]) for i in (2, 4))
    p1 = fmt.prompt_ids(CONVERSATION[:2])
    between = fmt.prompt_ids(CONVERSATION[:4])[len(p1) + len(a1) :]
    return TrainSample.segments(
        [(p1, None), (a1, [-1.0] * len(a1)), (between, None), (a2, [-2.0] * len(a2))],
        advantage=advantage,
    )


def grads(learner: Learner, samples, micro: int) -> list[torch.Tensor]:
    learner.state.config = dataclasses.replace(learner.state.config, micro_batch_size=micro)
    learner.model.zero_grad()
    kept, _ = learner.prepare(samples)
    learner.accumulate(kept)
    return [p.grad.clone() for p in learner.model.parameters()]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_accumulated_micro_batches_give_the_big_batch_gradient(batch, fmt, aggregation):
    samples = [*batch, multi_turn(fmt, 0.7)]
    samples = [dataclasses.replace(s, advantage=1.0 - i / 6) for i, s in enumerate(samples)]
    learner = Learner(tiny_model(), rl=RLConfig(aggregation=aggregation, decoupled=True))
    whole = grads(learner, samples, micro=len(samples))
    for micro in (1, 3):
        for a, b in zip(whole, grads(learner, samples, micro), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_each_group_is_a_micro_batch_of_its_own_so_its_state_runs_once(batch, fmt):
    learner = Learner(tiny_model(), optim=OptimConfig(micro_batch_size=16))
    # The episode starts from the first pivot's state, so it joins that group.
    episode = multi_turn(fmt, 1.0)
    single = TrainSample(tuple(range(5, 25)), (False,) * 15 + (True,) * 5, advantage=1.0)
    micros = list(learner.state.micro_batches([*batch, episode, single]))
    assert sorted(len(m) for m in micros) == [1, 4, 4, 5]
    for micro in micros:
        assert len({s.context for s in micro}) == 1
        if len(micro) > 1:
            assert len(collate(micro).prefix_ids) == len(micro[0].context) - 1


def test_multi_turn_sample_trains_both_assistant_segments_only(fmt):
    sample = multi_turn(fmt, 1.0)
    a1, a2 = (fmt.action_ids(CONVERSATION[i]) for i in (2, 4))
    trained = [t for t, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m]
    assert trained == a1 + a2
    assert sample.input_ids == tuple(fmt.prompt_ids(CONVERSATION[:4])) + tuple(a2)
    collated = collate([sample])
    assert collated.targets[0, : len(trained)].tolist() == trained
    assert collated.old_logprobs[0, : len(a1) + 1].tolist() == [-1.0] * len(a1) + [-2.0]


def test_step_pushes_weights_and_versions_to_the_engine(batch):
    engine = TorchEngine(tiny_model())
    learner = Learner(tiny_model(), optim=OptimConfig(lr=1e-2), engine=engine)
    before = [p.clone() for p in learner.model.parameters()]
    for expected in (1, 2):
        metrics = learner.step(batch)
        assert metrics["updated"] == 1 and metrics["weight_version"] == expected
        assert engine.weight_version == str(expected) and learner.version == expected
    for mine, theirs in zip(learner.model.parameters(), engine.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, learner.model.parameters(), strict=True)
    )
    assert metrics["staleness_max"] == 1  # the batch was sampled at version 0
    for key in ("loss", "clip_frac", "mismatch_kl", "grad_norm", "entropy", "tokens", "lr"):
        assert math.isfinite(metrics[key]), key
    assert metrics["clip_frac"] > 0  # the second step's samples are off-policy


def test_a_bfloat16_checkpoint_trains_in_float32_so_small_steps_are_kept(batch):
    # One AdamW step of 1e-5 moves every weight that has a gradient by about 1e-5: far
    # below bfloat16's spacing near 0.05 (2.4e-4), so bfloat16 weights would not move.
    learner = Learner(tiny_model(torch.bfloat16), optim=OptimConfig(lr=1e-5, warmup_steps=0))
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())
    layers = {n: p.detach().clone() for n, p in learner.model.named_parameters() if ".layers." in n}
    learner.step(batch)
    after = dict(learner.model.named_parameters())
    changed = sum(int((after[n] != p).sum()) for n, p in layers.items())
    assert changed > 0.9 * sum(p.numel() for p in layers.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_gradient_is_the_cpu_gradient_and_weights_reach_a_bf16_engine(batch, fmt):
    samples = [*batch, multi_turn(fmt, 0.7)]
    samples = [dataclasses.replace(s, advantage=1.0 - i / 6) for i, s in enumerate(samples)]
    exact = OptimConfig(bf16=False)
    on_cpu = grads(Learner(tiny_model(), optim=exact), samples, micro=4)
    on_gpu = grads(Learner(tiny_model(), optim=exact, device="cuda"), samples, micro=4)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-3)

    # The default on a GPU: bf16 autocast over float32 master weights.
    engine = TorchEngine(tiny_model(), tiny_tokenizer(), device="cuda", dtype=torch.bfloat16)
    learner = Learner(tiny_model(), device="cuda", engine=engine)
    mixed = torch.cat([g.flatten().cpu() for g in grads(learner, samples, micro=4)])
    reference = torch.cat([g.flatten() for g in on_cpu])
    assert torch.nn.functional.cosine_similarity(mixed, reference, dim=0) > 0.99
    metrics = learner.step(samples)
    assert metrics["updated"] == 1 and engine.weight_version == "1"
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())
    for mine, theirs in zip(learner.model.parameters(), engine.model.parameters(), strict=True):
        assert theirs.dtype == torch.bfloat16
        torch.testing.assert_close(theirs.float(), mine, atol=0, rtol=2**-8)


def test_zero_variance_groups_and_infra_failures_get_no_loss(batch):
    learner = Learner(tiny_model())
    flat = [dataclasses.replace(s, reward=0.0) if s.group == 0 else s for s in batch]
    flat[4] = dataclasses.replace(flat[4], infra_failed=True, reward=None)
    kept, info = learner.prepare(flat)
    assert all(s.group != 0 for s in kept) and flat[4] not in kept
    assert info["zero_variance_groups"] >= 1 and info["infra_failed"] == 1
    everything_flat = [dataclasses.replace(s, reward=1.0) for s in batch]
    before = [p.clone() for p in learner.model.parameters()]
    metrics = learner.step(everything_flat)
    assert metrics["updated"] == 0 and metrics["zero_variance_groups"] == 3
    assert learner.version == 0
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters(), strict=True))


def test_reference_model_is_run_only_with_a_kl_term(batch):
    class Refuses(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the reference ran with beta = 0")

    Learner(tiny_model(), reference=Refuses()).step(batch)
    with pytest.raises(ValueError, match="reference"):
        Learner(tiny_model(), rl=RLConfig(beta=0.1))
    metrics = Learner(tiny_model(), rl=RLConfig(beta=0.1), reference=tiny_model()).step(batch)
    assert metrics["ref_kl"] == pytest.approx(0.0, abs=1e-6)  # same weights as the reference


def test_warmup_then_cosine_schedule():
    cfg = OptimConfig(lr=1.0, warmup_steps=3, schedule="cosine", total_steps=13, min_lr_ratio=0.1)
    lrs = [cfg.lr_factor(s) for s in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[8] == pytest.approx(0.55) and lrs[13] == pytest.approx(0.1)
    assert OptimConfig(warmup_steps=1).lr_factor(5) == 1.0


def run(steps: int, fmt, checkpoint=None, save_at=None, resume=None):
    """A PivotRL loop: the cursor picks pivots, the engine samples, the learner trains."""
    engine = TorchEngine(tiny_model())
    learner = Learner(
        tiny_model(),
        optim=OptimConfig(
            lr=2e-2, warmup_steps=1, schedule="cosine", total_steps=4, micro_batch_size=3
        ),
        rl=RLConfig(clip_high=0.28),
        engine=engine,
        cursor=BatchCursor(3, 2, seed=7),
    )
    if resume is not None:
        random.seed(12345), np.random.seed(999)  # a fresh process's own randomness
        learner.load(resume)
    for _ in range(steps):
        if learner.state.step == save_at:
            learner.save(checkpoint)
            return learner
        pivots = learner.state.cursor.next()
        learner.step(sampled_batch(engine, fmt, pivots=pivots))
    return learner


def test_resume_gives_the_same_metrics_and_weights_as_an_uninterrupted_run(fmt, tmp_path):
    random.seed(0), np.random.seed(0)
    straight = run(4, fmt)
    random.seed(0), np.random.seed(0)
    run(4, fmt, checkpoint=tmp_path / "ckpt", save_at=2)
    resumed = run(2, fmt, resume=tmp_path / "ckpt")

    assert resumed.version == straight.version == 4
    assert len(resumed.history) == 4
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.engine.weight_version == "4"
