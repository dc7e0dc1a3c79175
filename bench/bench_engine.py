"""The torch engine against ``transformers``' ``generate`` on the same model and prompts.

Prompts are real: conversations of the bundled terminal trajectories cut at random
turns and rendered by the chat layer. Each side samples ``G`` continuations of every
prompt at temperature 1 with no top-k/top-p:

- ``hf generate``: one ``model.generate`` call over all prompts, left-padded,
  ``num_return_sequences=G, do_sample=True`` (the baseline);
- ``engine``: one ``TorchEngine.generate_batch`` call (each prompt prefilled once);
- ``engine, per prompt``: one ``generate(prompt, G)`` call per prompt (a quarter of
  the prompts, to keep the run short): one prefill, G rows decoded together;
- ``engine, G singles``: the same prompts, one sample per call, ``G`` calls per prompt
  (each call prefills its prompt again and decodes one row);
- ``engine, episodes`` and ``engine, episodes, no prefix cache``: whole trajectories
  turn by turn, as evaluation and E2E RL sample them: one ``generate_batch`` per turn
  over every trajectory still running, each prompt the previous one extended by the
  recorded action and tool output. With the prefix cache a turn prefills only what is
  new; without it (``prefix_cache_bytes=0``) every turn prefills its whole prompt.

Generated tokens count up to and including a stop token. Speed is generated tokens
per second; the target is engine >= 3x hf generate. The prefix-once gain is the
ratio of ``engine, per prompt`` to ``engine, G singles``, the prefix cache's that of the
two episode sides. The cache is emptied before each side.

On a GPU (``--device cuda``) both sides run the model there, in ``--dtype`` (float32 by
default; bfloat16 is what a GPU run serves).

    python bench/bench_engine.py [--prompts 32] [--group 8] [--max-new 64]
                                 [--device cpu|cuda] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from report import print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import SamplingParams
from pivotgym.policy.engines.torch import TorchEngine, row_seeds

TARGET = 3.0
# The pivotgym-tiny size class, used with random weights when no checkpoint is bundled.
FALLBACK_CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "initializer_range": 0.02,
}


def load_model(tmp: Path) -> tuple[Any, Any, str]:
    from pivotgym.errors import DataError

    try:
        from pivotgym.policy.models import load

        model, tokenizer = load("pivotgym-tiny")
        return model.float(), tokenizer, "pivotgym-tiny"
    except (ImportError, DataError):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tests.tiny_models import build_checkpoint

        path = build_checkpoint(tmp / "model", vocab_size=4096, **FALLBACK_CONFIG)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        return model, AutoTokenizer.from_pretrained(path), "random Qwen2 (pivotgym-tiny size)"


def sample_prompts(fmt: ChatFormat, count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    prompts = []
    for traj in rng.sample(trajectories, count):
        turn = rng.randrange(traj.num_turns)
        prompts.append(fmt.prompt_ids(traj.prefix(turn), TerminalEnv.tools))
    return prompts


def episode_turns(fmt: ChatFormat, count: int, seed: int) -> list[list[list[int]]]:
    """For each turn, the prompts of the trajectories that reach it (at most ``count``
    trajectories with two turns or more)."""
    rng = random.Random(seed)
    trajectories = [t for t in pivotgym.load_trajectories("terminal", "train") if t.num_turns > 1]
    chosen = rng.sample(trajectories, min(count, len(trajectories)))
    longest = max(t.num_turns for t in chosen)
    return [
        [fmt.prompt_ids(t.prefix(turn), TerminalEnv.tools) for t in chosen if turn < t.num_turns]
        for turn in range(longest)
    ]


def generated_tokens(rows: list[list[int]], stops: set[int]) -> int:
    total = 0
    for row in rows:
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        total += cut
    return total


def run_hf(model: Any, prompts: list[list[int]], group: int, max_new: int, stops, pad) -> int:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor(
        [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device
    )
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            num_return_sequences=group,
            max_new_tokens=max_new,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            eos_token_id=list(stops),
            pad_token_id=pad,
        )
    return generated_tokens(out[:, width:].tolist(), stops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, model_name = load_model(Path(tmp))
    model = model.to(device=args.device, dtype=dtype)
    fmt = ChatFormat(tokenizer)
    prompts = sample_prompts(fmt, args.prompts, args.seed)
    engine = TorchEngine(model, tokenizer, device=args.device, dtype=dtype)
    sampling = SamplingParams(
        temperature=1.0,
        top_p=1.0,
        top_k=-1,
        max_new_tokens=args.max_new,
        stop_token_ids=fmt.stop_ids,
        seed=args.seed,
    )
    stops = set(fmt.stop_ids)

    def engine_group() -> int:
        samples = asyncio.run(engine.generate_batch(prompts, args.group, sampling))
        return sum(len(s.token_ids) for group in samples for s in group)

    subset = prompts[: max(1, args.prompts // 4)]

    def engine_per_prompt() -> int:
        total = 0
        for j, prompt in enumerate(subset):
            one = dataclasses.replace(sampling, seed=args.seed + j)
            total += sum(
                len(s.token_ids) for s in asyncio.run(engine.generate(prompt, args.group, one))
            )
        return total

    def engine_singles() -> int:
        total = 0
        for j, prompt in enumerate(subset):
            for seed in row_seeds(args.seed + j, args.group):
                one = dataclasses.replace(sampling, seed=None)
                total += len(asyncio.run(engine.generate_seeded(prompt, [seed], one))[0].token_ids)
        return total

    turns = episode_turns(fmt, args.prompts, args.seed)
    no_cache = TorchEngine(model, tokenizer, device=args.device, dtype=dtype, prefix_cache_bytes=0)

    def episodes(which: TorchEngine) -> Callable[[], int]:
        def run() -> int:
            total = 0
            for t, batch in enumerate(turns):
                one = dataclasses.replace(sampling, seed=args.seed + t)
                samples = asyncio.run(which.generate_batch(batch, 1, one))
                total += sum(len(g[0].token_ids) for g in samples)
            return total

        return run

    sides = {
        "hf generate": lambda: run_hf(
            model, prompts, args.group, args.max_new, stops, tokenizer.pad_token_id
        ),
        "engine": engine_group,
        "engine, per prompt": engine_per_prompt,
        "engine, G singles": engine_singles,
        "engine, episodes": episodes(engine),
        "engine, episodes, no prefix cache": episodes(no_cache),
    }
    # A small warm-up of each path, then the measured runs side by side.
    asyncio.run(engine.generate(prompts[0], 2, sampling))
    results: dict[str, dict[str, float]] = {}
    for name, fn in sides.items():
        engine.prefix_cache.clear()
        started = time.perf_counter()
        tokens = fn()  # token counts come back as host lists, so the device is done
        seconds = time.perf_counter() - started
        results[name] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}
        print(f"{name}: {tokens} tokens in {seconds:.1f} s", flush=True)

    base = results["hf generate"]["tokens_per_s"]
    rows = [
        [
            name,
            int(r["tokens"]),
            r["seconds"],
            r["tokens_per_s"],
            f"{r['tokens_per_s'] / base:.2f}x",
        ]
        for name, r in results.items()
    ]
    print_table(["side", "tokens", "seconds", "tokens/s", "vs hf"], rows)
    speedup = results["engine"]["tokens_per_s"] / base
    group_ratio = (
        results["engine, per prompt"]["tokens_per_s"] / results["engine, G singles"]["tokens_per_s"]
    )
    verdict = "meets" if speedup >= TARGET else "misses"
    print(f"engine vs hf generate: {speedup:.2f}x ({verdict} the {TARGET:g}x target)")
    print(f"prefix-once group vs {args.group} single decodes: {group_ratio:.2f}x tokens/s")
    cache_ratio = (
        results["engine, episodes, no prefix cache"]["seconds"]
        / results["engine, episodes"]["seconds"]
    )
    print(f"episodes with the prefix cache: {cache_ratio:.2f}x faster than without")
    lengths = [len(p) for p in prompts]
    write_json(
        "engine" if args.device == "cpu" else "engine-gpu",
        {
            "model": model_name,
            "device": args.device,
            "dtype": args.dtype,
            "parameters": sum(p.numel() for p in model.parameters()),
            "prompts": args.prompts,
            "group": args.group,
            "max_new_tokens": args.max_new,
            "prompt_tokens": {
                "min": min(lengths),
                "max": max(lengths),
                "mean": sum(lengths) / len(lengths),
            },
            "torch_threads": torch.get_num_threads(),
            "sides": results,
            "speedup_vs_hf": speedup,
            "target": TARGET,
            "group_vs_singles": group_ratio,
            "episode_turns": len(turns),
            "episode_prompts": sum(len(b) for b in turns),
            "prefix_cache_speedup": cache_ratio,
        },
    )


if __name__ == "__main__":
    main()
