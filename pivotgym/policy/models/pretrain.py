"""Pretrain pivotgym-tiny from a seed: corpus, tokenizer, model, checkpoint.

    python -m pivotgym.policy.models.pretrain --seed 0 --minutes 50 --out runs/tiny

Stages, each reused when its output already exists in ``--out`` (so a stopped run loses
nothing already computed): the corpus (:mod:`pivotgym.envs.terminal.corpus`), a byte-level BPE
tokenizer trained on it, then a Qwen2-architecture causal LM trained for a wall-clock
budget. The checkpoint in ``OUT/checkpoint`` is a normal Hugging Face folder.

Choices, and why:

- **Digits are split one per token** before BPE, so numbers are spelled digit by digit
  and arithmetic is learnable by a small model; every byte stays representable.
- **Loss weights**: 1 on assistant tokens (what the policy samples, including the end
  of turn token), 0.1 on everything else (instructions and tool output). The other
  tokens cost nothing extra to score and teach the model what files and command output
  look like, which helps it copy names and values into its actions; the small weight
  keeps the noise of random file contents from taking a tiny model's capacity.
- **Length-bucketed batches** of whole conversations (no packing), so a sample never
  attends across conversations and positions match what the model sees when it acts.
- **Small batches** (about 2,000 tokens): on two cores a step costs the same per token
  from 2,000 to 8,000 tokens, and four times as many optimizer steps are what let the
  model learn to copy names, digits and letters from its context.
- **Time-based cosine schedule**: the learning rate follows a cosine over the fraction
  of the time budget spent, after a short warmup, so the run ends annealed whatever
  the machine's speed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pivotgym.envs.terminal.corpus import Conversation, build_corpus, load_corpus, save_corpus
from pivotgym.policy.chat import CHAT_TEMPLATE, SPECIAL_TOKENS, ChatFormat

ASSISTANT_OPEN = "<|im_start|>assistant\n"
TURN_END = "<|im_end|>"
OTHER_WEIGHT = 0.1

MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1536,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}


# ----------------------------------------------------------------------- tokenizer


def _texts(conversations: Sequence[Conversation]):
    for c in conversations:
        for m in c["messages"]:
            yield m.get("content") or ""
            for call in m.get("tool_calls") or []:
                yield json.dumps({"name": call["function"]["name"]}) + call["function"]["arguments"]
        if c.get("tools"):
            yield "\n".join(json.dumps(t) for t in c["tools"])


def train_tokenizer(conversations: Sequence[Conversation], vocab_size: int, out: Path):
    """A byte-level BPE tokenizer with the chat template's special tokens, saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_texts(conversations), trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=TURN_END,
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
    )
    wrapped.save_pretrained(out)
    return wrapped


# ------------------------------------------------------------------------ examples


def encode(tokenizer: Any, conversation: Conversation) -> tuple[list[int], list[float]]:
    """Token ids of the rendered conversation and the loss weight of each next-token target."""
    text = ChatFormat(tokenizer).render(conversation["messages"], conversation.get("tools"))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    while (start := text.find(ASSISTANT_OPEN, pos)) >= 0:
        begin = start + len(ASSISTANT_OPEN)
        end = text.index(TURN_END, begin) + len(TURN_END)
        spans.append((begin, end))
        pos = end
    weights = []
    for a, _b in enc["offset_mapping"]:
        inside = any(s <= a < e for s, e in spans)
        weights.append(1.0 if inside else OTHER_WEIGHT)
    return enc["input_ids"], weights


def batches(
    examples: Sequence[tuple[list[int], list[float]]], max_tokens: int, rng: random.Random
) -> list[list[int]]:
    """Indices of examples grouped by similar length, each batch under ``max_tokens`` padded."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), rng.random()))
    out, current, longest = [], [], 0
    for i in order:
        n = len(examples[i][0])
        if current and max(longest, n) * (len(current) + 1) > max_tokens:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def collate(examples, idx: list[int], pad_id: int):
    n = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), n), pad_id, dtype=torch.long)
    weights = torch.zeros((len(idx), n))
    mask = torch.zeros((len(idx), n), dtype=torch.long)
    for row, i in enumerate(idx):
        x, w = examples[i]
        ids[row, : len(x)] = torch.tensor(x)
        weights[row, : len(w)] = torch.tensor(w)
        mask[row, : len(x)] = 1
    return ids, mask, weights


def weighted_loss(model, ids, mask, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted next-token cross-entropy, and the plain mean over assistant targets."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target, w = ids[:, 1:], weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none"
    ).view_as(target)
    loss = (ce * w).sum() / w.sum()
    assistant = w == 1.0
    return loss, (ce * assistant).sum() / assistant.sum().clamp(min=1)


# -------------------------------------------------------------------------- train


def lr_at(fraction: float, step: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction))))


def train(args: argparse.Namespace) -> Path:
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "metrics.jsonl").open("a")

    corpus_path = out / f"corpus-s{args.seed}-{args.shell}-{args.questions}.jsonl.gz"
    if corpus_path.exists():
        conversations = load_corpus(corpus_path)
    else:
        print(f"building the corpus -> {corpus_path}", file=sys.stderr)
        conversations = build_corpus(args.seed, args.shell, args.questions, jobs=args.jobs)
        save_corpus(conversations, corpus_path)

    ckpt = out / "checkpoint"
    tokenizer = train_tokenizer(conversations, args.vocab, ckpt)
    examples = [encode(tokenizer, c) for c in conversations]
    limit = MODEL_CONFIG["max_position_embeddings"]
    examples = [(x[:limit], w[:limit]) for x, w in examples]
    total = sum(len(x) for x, _ in examples)
    print(
        f"corpus: {len(examples)} conversations, {total} tokens, vocab {len(tokenizer)}",
        file=sys.stderr,
    )

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_CONFIG,
    )
    model = Qwen2ForCausalLM(config).to(args.device)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.2f}M parameters", file=sys.stderr)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    rng = random.Random(args.seed)
    budget = args.minutes * 60
    start = time.perf_counter()
    step, epoch, seen, ema = 0, 0, 0, None
    model.train()
    while time.perf_counter() - start < budget:
        for idx in batches(examples, args.batch_tokens, rng):
            fraction = (time.perf_counter() - start) / budget
            if fraction >= 1:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(fraction, step, args.lr, args.warmup)
            batch = collate(examples, idx, tokenizer.pad_token_id)
            ids, mask, weights = (t.to(args.device) for t in batch)
            loss, assistant_loss = weighted_loss(model, ids, mask, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            seen += int(mask.sum())
            value = float(assistant_loss.detach())
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            if step % 20 == 0:
                elapsed = time.perf_counter() - start
                row = {
                    "step": step,
                    "epoch": epoch,
                    "elapsed_s": round(elapsed, 1),
                    "tokens": seen,
                    "tok_per_s": round(seen / elapsed),
                    "lr": optimizer.param_groups[0]["lr"],
                    "loss": round(float(loss), 4),
                    "assistant_loss": round(value, 4),
                    "assistant_loss_ema": round(ema, 4),
                }
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(
                    f"step {step} epoch {epoch} {elapsed / 60:.1f} min {row['tok_per_s']} tok/s "
                    f"lr {row['lr']:.2e} loss {row['loss']:.3f} assistant {ema:.3f}",
                    file=sys.stderr,
                )
        else:
            epoch += 1  # counts complete passes only

    elapsed = time.perf_counter() - start
    model.eval()
    model.to("cpu", torch.bfloat16).save_pretrained(ckpt, safe_serialization=True)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        max_new_tokens=256,
    ).save_pretrained(ckpt)
    summary = {
        "seed": args.seed,
        "steps": step,
        "epochs": epoch,
        "train_s": round(elapsed),
        "tokens_seen": seen,
        "corpus_tokens": total,
        "parameters": params,
        "final_assistant_loss_ema": ema,
        "config": MODEL_CONFIG,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), file=sys.stderr)
    return ckpt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=50.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=Path("runs/tiny"))
    parser.add_argument("--shell", type=int, default=1750, help="recorded shell episodes")
    parser.add_argument("--questions", type=int, default=12000, help="question demonstrations")
    parser.add_argument("--vocab", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch-tokens", type=int, default=2000, help="padded tokens a batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda"
    )
    parser.add_argument("--jobs", type=int, default=8, help="episodes recorded at once")
    args = parser.parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
