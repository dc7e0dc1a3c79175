"""Sampling over HTTP (the SGLang-compatible server) against the torch engine in-process.

One workload, both sides: ``--prompts`` prompts x ``--group`` samples each, the same
model, sampling parameters and seed. The in-process side calls
``TorchEngine.generate_batch``; the HTTP side runs ``pivotgym serve --engine torch`` in a
subprocess and drives it with ``SGLangEngine.generate_batch`` (one request per prompt,
sent concurrently), the code path that drives a real SGLang server. Rounds alternate
between the sides; the samples of both sides are checked to be the same.

    python bench/bench_server.py [--model pivotgym-tiny|PATH] [--rounds 5]

Without ``--model`` it uses the bundled ``pivotgym-tiny`` when present, else a random
small Qwen2 checkpoint built for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import print_table, ratio_line, timing_rows, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pivotgym.policy.engines.base import SamplingParams  # noqa: E402
from pivotgym.policy.engines.sglang import SGLangEngine  # noqa: E402
from pivotgym.policy.engines.torch import TorchEngine  # noqa: E402
from pivotgym.server.launch import eos_token_ids, load_model, wait_healthy  # noqa: E402
from tests.server_fixture import free_port  # noqa: E402

TARGET = 1.15
# A larger random model than the unit tests' when no trained one is bundled.
BENCH_CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def pick_model(name: str | None, scratch: Path) -> str:
    if name:
        return name
    from pivotgym.policy import models

    try:
        models.resolve("pivotgym-tiny")
        return "pivotgym-tiny"
    except Exception:
        from tests.tiny_models import build_checkpoint

        return str(build_checkpoint(scratch / "bench-model", **BENCH_CONFIG))


def make_prompts(count: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(96, 320))] for _ in range(count)]


async def in_process(engine: TorchEngine, prompts: Any, group: int, sp: SamplingParams) -> Any:
    return await engine.generate_batch(prompts, group, sp)


async def over_http(url: str, prompts: Any, group: int, sp: SamplingParams) -> Any:
    engine = await SGLangEngine.connect(url)
    try:
        return await engine.generate_batch(prompts, group, sp)
    finally:
        await engine.aclose()


def timed(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = asyncio.run(coro)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-server-"))
    model_name = pick_model(args.model, scratch)
    model, tokenizer, _ = load_model(model_name, "float32")
    stop = eos_token_ids(model, tokenizer)
    engine = TorchEngine(model, tokenizer, version="default")
    prompts = make_prompts(args.prompts, len(tokenizer), args.seed)
    sp = SamplingParams(1.0, 1.0, -1, args.max_new_tokens, stop, args.seed)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable, "-c", "import sys; from pivotgym.cli import main; sys.exit(main())",
            "serve", "--engine", "torch", "--model", model_name, "--port", str(port),
            "--dtype", "float32",
        ],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        wait_healthy(url, server, timeout=120)
        # Warm both sides (allocator, first-call paths) before timing.
        timed(in_process(engine, prompts[:2], 2, sp))
        timed(over_http(url, prompts[:2], 2, sp))
        seconds: dict[str, list[float]] = {"in-process": [], "http server": []}
        same = True
        for _ in range(args.rounds):
            t_local, local = timed(in_process(engine, prompts, args.group, sp))
            t_http, remote = timed(over_http(url, prompts, args.group, sp))
            seconds["in-process"].append(t_local)
            seconds["http server"].append(t_http)
            same &= [[s.token_ids for s in g] for g in local] == [
                [s.token_ids for s in g] for g in remote
            ]
    finally:
        server.terminate()
        server.wait(timeout=60)

    tokens = sum(len(s.token_ids) for g in local for s in g)
    headers, rows = timing_rows(seconds, baseline="in-process")
    print(
        f"{args.prompts} prompts x G={args.group}, max_new_tokens={args.max_new_tokens}, "
        f"model {model_name}, {tokens} tokens per round, {args.rounds} rounds"
    )
    print_table(headers, rows)
    # The CPU is shared with other jobs, so single rounds swing widely: the headline is
    # each side's best round (the least disturbed), with the ratio of adjacent rounds too.
    ratio = min(seconds["http server"]) / min(seconds["in-process"])
    paired = statistics.median(
        h / b for h, b in zip(seconds["http server"], seconds["in-process"], strict=True)
    )
    median_ratio = rows[1][1] / rows[0][1]
    print(ratio_line("http / in-process (best rounds)", ratio, TARGET))
    print(
        f"median of per-round ratios {paired:.2f}; ratio of medians {median_ratio:.2f}; "
        f"samples identical on both sides: {same}"
    )
    write_json(
        "server",
        {
            "workload": {
                "prompts": args.prompts,
                "group": args.group,
                "max_new_tokens": args.max_new_tokens,
                "model": model_name,
                "tokens_per_round": tokens,
                "seed": args.seed,
            },
            "seconds": seconds,
            "best_round_ratio": ratio,
            "paired_median_ratio": paired,
            "median_ratio": median_ratio,
            "target": TARGET,
            "samples_identical": same,
        },
    )


if __name__ == "__main__":
    main()
