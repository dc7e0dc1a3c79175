"""A tiny random-weight chat model for tests: built once per test session in a temp dir.

``tiny_checkpoint()`` is a Hugging Face checkpoint folder (safetensors) holding a
Qwen2 causal LM with random weights and a byte-level BPE tokenizer trained with
``tokenizers`` on a few bundled trajectories, carrying pivotgym's special tokens and
chat template. It builds in a second or two and nothing is downloaded::

    from tests.tiny_models import tiny_checkpoint, tiny_model, tiny_tokenizer
    model, tokenizer = tiny_model(), tiny_tokenizer()

``tiny_model()`` loads a fresh copy each call, so a test may change its weights.
``SayingEngine(text)`` is an engine that always says ``text``: a stand-in for a served
model (a user simulator's, say) whose words a test needs to know.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pivotgym.errors import DataError
from pivotgym.policy.chat import CHAT_TEMPLATE, SPECIAL_TOKENS, ChatFormat
from pivotgym.policy.engines.base import Engine, Sample

VOCAB_SIZE = 1024
CORPUS_TRAJECTORIES = 48
MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    # Wider than the usual 0.02 so that next-token distributions are far from uniform.
    "initializer_range": 0.2,
}


def corpus_texts(limit: int = CORPUS_TRAJECTORIES) -> list[str]:
    """Message texts and tool-call JSON of the first bundled trajectories.

    Before the bundled data exist (a fresh checkout that has not built the terminal
    suite), the terminal env's system prompt and tool schemas stand in.
    """
    import json

    import pivotgym
    from pivotgym.envs.terminal.env import TerminalEnv

    texts = [TerminalEnv.system_prompt, json.dumps(TerminalEnv.tools)]
    try:
        trajectories = pivotgym.load_trajectories("terminal", split="train")[:limit]
    except DataError:
        return texts
    for traj in trajectories:
        for message in traj.messages:
            texts.append(message.get("content") or "")
            texts.extend(json.dumps(c["function"]) for c in message.get("tool_calls") or [])
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` with pivotgym's specials and template.

    Newlines are split off before the byte-level regex, so a turn's tokens never merge
    with the newline that opens it: rendering stays prefix-preserving whatever an
    assistant message starts with.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in SPECIAL_TOKENS[:3]],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_checkpoint(
    path: Path, seed: int = 0, vocab_size: int = VOCAB_SIZE, **config: Any
) -> Path:
    """Write a random-weight Qwen2 checkpoint with a tiny tokenizer to ``path``;
    ``config`` overrides :data:`MODEL_CONFIG`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = build_tokenizer(corpus_texts(), vocab_size)
    stop_ids = list(ChatFormat(tokenizer).stop_ids)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
        **{**MODEL_CONFIG, **config},
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = stop_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@functools.cache
def tiny_checkpoint() -> Path:
    """The session's tiny checkpoint folder (built on first use, removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="pivotgym-tiny-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return build_checkpoint(root / "tiny")


@functools.cache
def tiny_tokenizer() -> Any:
    """The tiny checkpoint's tokenizer (shared; do not mutate)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint(), local_files_only=True)


def tiny_model(dtype: Any = None) -> Any:
    """A fresh float32 (or ``dtype``) copy of the tiny model, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint(), local_files_only=True, dtype=dtype or torch.float32
    )
    return model.eval()


class SayingEngine(Engine):
    """Always says ``text``; ``prompts`` records what it was asked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[list[int]] = []

    @property
    def weight_version(self) -> str:
        return "0"

    async def generate(self, prompt_ids, n, sampling):
        self.prompts.append(list(prompt_ids))
        return [Sample((1,), (-0.1,), self.text, "stop", "0") for _ in range(n)]

    async def update_weights(self, path, version):
        raise NotImplementedError
