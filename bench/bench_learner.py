"""One GRPO optimisation step: pivotgym's learner against TRL's GRPO trainer.

Both sides train the same random Qwen2 model (``--size``: pivotgym-tiny's shape, or
Qwen2.5-0.5B's for a GPU) on the same
batch: ``group`` completions of ``A/4..A`` tokens for each of ``prompts`` prompts of
``P/2..P`` tokens (random ids, fixed seed), advantages given, on-policy,
one micro-batch, AdamW and gradient clipping at 1.0, float32 (on the CPU, or on a GPU
with ``--device cuda``, where ``--bf16`` has both sides autocast to bfloat16).
Generation is excluded: a step is forward, backward, clip and optimiser step.

- ``trl``: ``GRPOTrainer.compute_loss`` (``loss_type="dapo"``: token-mean over the
  batch, like ours), ``accelerator.backward``, clip, the trainer's own optimiser step
  (TRL left-pads prompts and right-pads completions, as its generation does);
- ``pivotgym``: ``Learner.step`` on ``TrainSample.turn`` samples (token-mean), which
  runs each prompt once for its whole group (see :mod:`pivotgym.rl.batch`).

Speed is completion (trained) tokens per second, median over ``--repeats`` steps,
sides alternating so that a shared, busy CPU slows both alike. Target: pivotgym >= 1x TRL.

    python bench/bench_learner.py [--prompts 2] [--group 8] [--prompt-len 512] [--action-len 64]
                                  [--device cpu|cuda] [--bf16] [--size tiny|0.5b]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from report import print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pivotgym.policy.engines.base import Sample
from pivotgym.rl.batch import TrainSample
from pivotgym.rl.learner import Learner
from pivotgym.rl.training import OptimConfig

TARGET = 1.0
SIZES = {
    # The bundled pivotgym-tiny's shape.
    "tiny": {
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 704,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
    # Qwen2.5-0.5B's shape: the smallest model a GPU run would train.
    "0.5b": {
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
}
PAD = 0


def make_model(shape: dict[str, Any]) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**shape, pad_token_id=PAD))


def make_batch(
    prompts: int, group: int, prompt_len: int, action_len: int, vocab: int, seed: int = 0
):
    """``group`` completions of each prompt, as GRPO samples them."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(prompts):
        p = int(torch.randint(prompt_len // 2, prompt_len + 1, (1,), generator=g))
        prompt = torch.randint(1, vocab, (p,), generator=g).tolist()
        for i in range(group):
            a = int(torch.randint(max(action_len // 4, 1), action_len + 1, (1,), generator=g))
            action = torch.randint(1, vocab, (a,), generator=g).tolist()
            rows.append((prompt, action, 1.0 - 2 * (i % 2)))
    return rows


def trl_side(rows, shape: dict[str, Any], group: int, device: str, bf16: bool) -> tuple[Any, Any]:
    """A GRPOTrainer and the inputs its loss takes (what its generation step returns)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tests.tiny_models import tiny_tokenizer

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"),
        per_device_train_batch_size=len(rows),
        num_generations=group,
        max_completion_length=max(len(a) for _, a, _ in rows),
        learning_rate=1e-6,
        beta=0.0,
        loss_type="dapo",
        use_cpu=device == "cpu",
        bf16=bf16,
        report_to=[],
        max_grad_norm=1.0,
    )
    trainer = GRPOTrainer(
        model=make_model(shape),
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["x"] * len(rows)}),
        processing_class=tiny_tokenizer(),
    )
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by its train loop
    trainer.model.train()
    p_width = max(len(p) for p, _, _ in rows)
    a_width = max(len(a) for _, a, _ in rows)
    prompt_ids = torch.tensor([[PAD] * (p_width - len(p)) + p for p, _, _ in rows])
    prompt_mask = torch.tensor([[0] * (p_width - len(p)) + [1] * len(p) for p, _, _ in rows])
    completion_ids = torch.tensor([a + [PAD] * (a_width - len(a)) for _, a, _ in rows])
    completion_mask = torch.tensor([[1] * len(a) + [0] * (a_width - len(a)) for _, a, _ in rows])
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([adv for _, _, adv in rows]),
        "num_items_in_batch": completion_mask.sum().float(),
    }
    return trainer, {k: v.to(trainer.accelerator.device) for k, v in inputs.items()}


def trl_step(trainer: Any, inputs: dict[str, Any]) -> None:
    model = trainer.model
    loss = trainer.compute_loss(model, inputs)
    trainer.accelerator.backward(loss)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()


def ours_side(
    rows, shape: dict[str, Any], device: str, bf16: bool
) -> tuple[Learner, list[TrainSample]]:
    learner = Learner(
        make_model(shape),
        optim=OptimConfig(lr=1e-6, max_grad_norm=1.0, micro_batch_size=len(rows), bf16=bf16),
        device=device,
    )
    samples = []
    for prompt, action, adv in rows:
        sample = Sample(tuple(action), (0.0,) * len(action), "", "stop", "0")
        samples.append(TrainSample.turn(prompt, sample, advantage=adv))
    return learner, samples


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--action-len", type=int, default=64)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    warnings.filterwarnings("ignore")

    shape = SIZES[opts.size]
    rows = make_batch(
        opts.prompts, opts.group, opts.prompt_len, opts.action_len, shape["vocab_size"]
    )
    trained = sum(len(a) for _, a, _ in rows)
    total = sum(len(p) + len(a) for p, a, _ in rows)
    learner, samples = ours_side(rows, shape, opts.device, opts.bf16)
    sides: dict[str, Any] = {"pivotgym": lambda: learner.step(samples)}
    error = None
    try:
        trainer, inputs = trl_side(rows, shape, opts.group, opts.device, opts.bf16)
        sides["trl"] = lambda: trl_step(trainer, inputs)
    except Exception as exc:  # report why TRL could not run, still measure ours
        error = f"{type(exc).__name__}: {exc}"
        print(f"TRL could not run: {error}")

    for fn in sides.values():  # warm-up
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(opts.repeats):
        for name, fn in sides.items():
            seconds[name].append(timed(fn))

    rows_out = []
    for name, times in seconds.items():
        med = statistics.median(times)
        rows_out.append([name, med, min(times), trained / med, total / med])
    if "trl" in seconds:
        speedup = statistics.median(seconds["trl"]) / statistics.median(seconds["pivotgym"])
        for row in rows_out:
            row.append(f"{statistics.median(seconds['trl']) / row[1]:.2f}x")
    headers = ["side", "median s", "min s", "trained tok/s", "all tok/s"]
    if "trl" in seconds:
        headers.append("vs trl")
    print(
        f"batch {len(rows)} sequences, {trained} trained tokens, {total} tokens; "
        f"model {shape['num_hidden_layers']}x{shape['hidden_size']}, "
        f"vocab {shape['vocab_size']}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print_table(headers, rows_out)
    report: dict[str, Any] = {
        "config": {**vars(opts), "model": shape},
        "trained_tokens": trained,
        "total_tokens": total,
        "seconds": seconds,
        "trained_tokens_per_s": {k: trained / statistics.median(v) for k, v in seconds.items()},
        "versions": _versions(),
        "target": TARGET,
    }
    if "trl" in seconds:
        verdict = "meets" if speedup >= TARGET else "misses"
        print(f"pivotgym / trl speed {speedup:.2f}x ({verdict} the {TARGET:g}x target)")
        report["speedup_vs_trl"] = speedup
    else:
        report["trl_error"] = error
    name = "learner" if opts.device == "cpu" else f"learner-gpu-{opts.size}"
    name += "-bf16" if opts.bf16 else ""
    write_json(name, report)


def _versions() -> dict[str, str]:
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import trl

        out["trl"] = trl.__version__
    except ImportError:
        out["trl"] = "not installed"
    return out


if __name__ == "__main__":
    main()
