"""The in-process torch engine against teacher-forced forwards of the same model."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import SamplingParams
from pivotgym.policy.engines.torch import TorchEngine, row_seeds
from tests.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def fmt() -> ChatFormat:
    return ChatFormat(tiny_tokenizer())


@pytest.fixture(scope="module")
def prompts(fmt) -> list[list[int]]:
    """Three real prompts of different lengths."""
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    cuts = [(trajectories[0], 0), (trajectories[1], 2), (trajectories[2], 1)]
    return [fmt.prompt_ids(traj.prefix(t), TerminalEnv.tools) for traj, t in cuts]


@pytest.fixture(scope="module")
def engine() -> TorchEngine:
    return TorchEngine(tiny_model(), tiny_tokenizer())


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    return tiny_model()


def params(fmt: ChatFormat, **overrides) -> SamplingParams:
    base = SamplingParams(
        temperature=1.0,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=16,
        stop_token_ids=fmt.stop_ids,
        seed=7,
    )
    return dataclasses.replace(base, **overrides)


def teacher_forced(model, prompt: list[int], ids: tuple[int, ...], temperature: float):
    """Logprobs of ``ids`` after ``prompt`` from one full forward pass, at ``temperature``."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + list(ids)])).logits[0, len(prompt) - 1 : -1]
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logprobs.gather(1, torch.tensor(ids)[:, None]).squeeze(1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_teacher_forced_forward(engine, reference, fmt, prompts, temperature):
    groups = asyncio.run(engine.generate_batch(prompts, 3, params(fmt, temperature=temperature)))
    assert [len(g) for g in groups] == [3, 3, 3]
    for prompt, group in zip(prompts, groups, strict=True):
        for sample in group:
            expected = teacher_forced(reference, prompt, sample.token_ids, temperature)
            got = torch.tensor(sample.logprobs)
            assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_rows_that_stop_early_keep_exact_logprobs(engine, reference, fmt, prompts):
    # Half the vocabulary stops a row, so rows end at different steps and finished rows
    # are dropped from the batch mid-decode.
    stops = tuple(range(0, len(fmt.tokenizer), 2))
    sampling = params(fmt, stop_token_ids=stops, max_new_tokens=12, seed=3)
    groups = asyncio.run(engine.generate_batch(prompts, 6, sampling))
    lengths = {len(s.token_ids) for g in groups for s in g}
    assert len(lengths) > 2
    for prompt, group in zip(prompts, groups, strict=True):
        for s in group:
            assert all(t not in stops for t in s.token_ids[:-1])
            assert s.finish_reason == ("stop" if s.token_ids[-1] in stops else "length")
            expected = teacher_forced(reference, prompt, s.token_ids, 1.0)
            assert torch.allclose(torch.tensor(s.logprobs), expected, atol=1e-4)


def test_greedy_is_argmax_decoding(engine, reference, fmt, prompts):
    samples = asyncio.run(engine.generate(prompts[1], 2, params(fmt, temperature=0.0, seed=None)))
    ids = list(prompts[1])
    with torch.inference_mode():
        for _ in range(16):
            ids.append(int(reference(torch.tensor([ids])).logits[0, -1].argmax()))
    expected = tuple(ids[len(prompts[1]) :])
    stop = next((i + 1 for i, t in enumerate(expected) if t in fmt.stop_ids), len(expected))
    assert samples[0].token_ids == samples[1].token_ids == expected[:stop]
    forced = teacher_forced(reference, prompts[1], samples[0].token_ids, 1.0)
    assert torch.allclose(torch.tensor(samples[0].logprobs), forced, atol=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(engine, fmt, prompts):
    first = asyncio.run(engine.generate(prompts[0], 4, params(fmt)))
    again = asyncio.run(engine.generate(prompts[0], 4, params(fmt)))
    other = asyncio.run(engine.generate(prompts[0], 4, params(fmt, seed=8)))
    assert first == again
    assert [s.token_ids for s in first] != [s.token_ids for s in other]
    assert len({s.token_ids for s in first}) > 1  # the rows of a group differ


def test_a_group_equals_independent_single_decodes(engine, fmt, prompts):
    sampling = params(fmt)
    seeds = row_seeds(sampling.seed, 5)
    group = asyncio.run(engine.generate(prompts[2], 5, sampling))
    assert group == asyncio.run(engine.generate_seeded(prompts[2], seeds, sampling))
    singles = [asyncio.run(engine.generate_seeded(prompts[2], [s], sampling))[0] for s in seeds]
    assert [s.token_ids for s in group] == [s.token_ids for s in singles]
    assert torch.allclose(
        torch.tensor([s.logprobs for s in group]),
        torch.tensor([s.logprobs for s in singles]),
        atol=1e-5,
    )


def test_a_prompt_samples_alike_whatever_else_is_in_the_batch(engine, fmt, prompts):
    sampling = params(fmt)
    batch = asyncio.run(engine.generate_batch(prompts, 3, sampling))
    for j, prompt in enumerate(prompts):
        alone = asyncio.run(engine.generate(prompt, 3, params(fmt, seed=sampling.seed + j)))
        assert [s.token_ids for s in batch[j]] == [s.token_ids for s in alone]


def test_a_next_turn_prefills_only_its_new_tokens_and_samples_as_a_cold_engine(fmt, prompts):
    warm = TorchEngine(tiny_model(), tiny_tokenizer())
    sampling = params(fmt)
    first = asyncio.run(warm.generate(prompts[0], 2, sampling))
    # The next turn's prompt: this one, the action, a tool output.
    turn = list(prompts[0]) + list(first[0].token_ids) + list(prompts[1][:40])
    before = warm.prefix_cache.hits
    again = asyncio.run(warm.generate(turn, 4, sampling))
    block = warm.prefix_cache.block
    assert warm.prefix_cache.hits - before == len(prompts[0]) // block * block
    cold = asyncio.run(TorchEngine(tiny_model(), tiny_tokenizer()).generate(turn, 4, sampling))
    assert [s.token_ids for s in again] == [s.token_ids for s in cold]
    for a, c in zip(again, cold, strict=True):
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(c.logprobs), atol=1e-5)


def test_a_cache_too_small_for_one_prompt_evicts_and_still_samples_right(fmt, prompts):
    model = tiny_model()
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    block_bytes = 2 * c.num_hidden_layers * c.num_key_value_heads * 16 * head_dim * 4
    # Room for three blocks: every prompt overflows it, and the opening blocks (the
    # system prompt, shared by all) are what stays.
    small = TorchEngine(
        model, tiny_tokenizer(), prefix_block=16, prefix_cache_bytes=3 * block_bytes
    )
    cold = TorchEngine(tiny_model(), tiny_tokenizer(), prefix_cache_bytes=0)
    sampling = params(fmt)
    for prompt in [*prompts, prompts[0], prompts[1]]:
        got = asyncio.run(small.generate(prompt, 2, sampling))
        assert len(small.prefix_cache) == 3 and small.prefix_cache.nbytes == 3 * block_bytes
        want = asyncio.run(cold.generate(prompt, 2, sampling))
        assert [s.token_ids for s in got] == [s.token_ids for s in want]
    assert len(cold.prefix_cache) == 0
    assert small.prefix_cache.hits == 3 * 16 * (len(prompts) + 1)


def test_stop_token_is_kept_and_length_is_reported(engine, fmt, prompts):
    greedy = params(fmt, temperature=0.0, max_new_tokens=10, stop_token_ids=())
    free = asyncio.run(engine.generate(prompts[0], 1, greedy))[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 10
    stop = free.token_ids[3]
    cut = free.token_ids.index(stop) + 1
    stopped = asyncio.run(
        engine.generate(
            prompts[0], 1, params(fmt, temperature=0.0, max_new_tokens=10, stop_token_ids=(stop,))
        )
    )[0]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[:cut] and stopped.token_ids[-1] == stop
    assert stopped.logprobs == pytest.approx(free.logprobs[:cut], abs=1e-5)
    assert stopped.text == fmt.decode(stopped.token_ids)


def test_top_k_and_top_p_restrict_samples_but_report_full_logprobs(engine, reference, fmt, prompts):
    greedy = asyncio.run(engine.generate(prompts[0], 1, params(fmt, temperature=0.0)))[0]
    top1 = asyncio.run(engine.generate(prompts[0], 3, params(fmt, top_k=1)))
    tiny_p = asyncio.run(engine.generate(prompts[0], 3, params(fmt, top_p=1e-6)))
    for s in [*top1, *tiny_p]:
        assert s.token_ids == greedy.token_ids
        forced = teacher_forced(reference, prompts[0], s.token_ids, 1.0)
        assert torch.allclose(torch.tensor(s.logprobs), forced, atol=1e-4)
    top5 = asyncio.run(engine.generate(prompts[0], 8, params(fmt, top_k=5, max_new_tokens=1)))
    with torch.inference_mode():
        allowed = set(reference(torch.tensor([prompts[0]])).logits[0, -1].topk(5).indices.tolist())
    assert {s.token_ids[0] for s in top5} <= allowed


def test_update_weights_changes_samples_and_version(fmt, prompts, tmp_path):
    engine = TorchEngine(tiny_model(), tiny_tokenizer(), version="v1")
    greedy = params(fmt, temperature=0.0)
    before = asyncio.run(engine.generate(prompts[0], 1, greedy))[0]
    assert before.weight_version == "v1"

    torch.manual_seed(1)
    other = tiny_model()
    for p in other.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    other.save_pretrained(tmp_path / "ckpt")  # tied embeddings: lm_head is not stored
    asyncio.run(engine.update_weights(str(tmp_path / "ckpt"), "v2"))
    after = asyncio.run(engine.generate(prompts[0], 1, greedy))[0]
    assert engine.weight_version == after.weight_version == "v2"
    assert after.token_ids != before.token_ids
    assert after == dataclasses.replace(
        asyncio.run(TorchEngine(other, None).generate(prompts[0], 1, greedy))[0],
        text=after.text,
        weight_version="v2",
    )

    asyncio.run(engine.load_state_dict(tiny_model().state_dict(), "v3"))
    restored = asyncio.run(engine.generate(prompts[0], 1, greedy))[0]
    assert restored.token_ids == before.token_ids and restored.weight_version == "v3"

    partial = dict(tiny_model().state_dict())
    partial.pop("model.norm.weight")
    with pytest.raises(KeyError, match="missing"):
        asyncio.run(engine.load_state_dict(partial, "v4"))
    with pytest.raises(KeyError, match="unknown"):
        asyncio.run(engine.load_state_dict({**partial, "nope": torch.zeros(1)}, "v4"))
    assert engine.weight_version == "v3"


def test_the_event_loop_stays_responsive_during_generation(engine, fmt, prompts):
    async def main() -> tuple[int, list]:
        ticks = 0
        task = asyncio.ensure_future(
            asyncio.gather(
                engine.generate_batch(prompts, 4, params(fmt, max_new_tokens=48)),
                engine.generate(prompts[0], 2, params(fmt)),
            )
        )
        while not task.done():
            await asyncio.sleep(0.005)
            ticks += 1
        return ticks, await task

    ticks, (batch, single) = asyncio.run(main())
    assert ticks > 3
    assert len(batch) == 3 and len(single) == 2


def test_bad_requests_are_refused(engine, fmt):
    with pytest.raises(ValueError, match="at least one token"):
        asyncio.run(engine.generate([], 1, params(fmt)))
    assert asyncio.run(engine.generate([1, 2, 3], 0, params(fmt))) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_gpu_samples_close_to_float32(fmt, prompts, reference):
    torch.backends.cuda.enable_cudnn_sdp(True)  # an earlier engine may have turned it off
    engine = TorchEngine(tiny_model(), tiny_tokenizer(), device="cuda", dtype=torch.bfloat16)
    groups = asyncio.run(engine.generate_batch(prompts, 4, params(fmt)))
    for prompt, group in zip(prompts, groups, strict=True):
        for s in group:
            assert len(s.token_ids) == len(s.logprobs) > 0
            expected = teacher_forced(reference, prompt, s.token_ids, 1.0)
            assert (torch.tensor(s.logprobs) - expected).abs().mean() < 0.1
    # cuDNN's attention made bfloat16 decoding about 9x slower on an H100.
    assert not torch.backends.cuda.cudnn_sdp_enabled()
