"""An in-process sampler over any Hugging Face causal LM, on CPU or GPU.

How a batch is sampled (``generate_sync``, which every async method runs on the
engine's worker thread):

1. **Prefill once per prompt.** Each distinct prompt runs through the model alone,
   unpadded, computing logits only at its last position. A group of ``n`` samples
   shares that prefill, and its opening blocks of ``prefix_block`` tokens that an
   earlier prompt already computed (the system prompt, an episode's earlier turns)
   come from the :class:`~pivotgym.policy.engines.prefix_cache.PrefixCache`.
2. **Expand into one cache.** Each prompt's keys and values are copied into ``n`` rows
   of a preallocated cache, left-aligned so that every row's prompt ends at the same
   slot; the slots before a shorter prompt are masked out. Rows keep their own
   position ids, so a row computes exactly what its prompt alone would.
3. **Decode the rows as one batch**, a single forward per step, writing keys and
   values in place (no concatenation). When enough rows have stopped, the finished
   rows are dropped from the cache so the rest decode faster.

Prompts are prefilled one at a time rather than left-padded into one prefill: prompts
of agent conversations vary in length by a few thousand tokens, and padding them all
to the longest would waste most of the prefill, which dominates the work for short
actions. Rows are sorted by prompt length and cut into batches of at most
``max_batch_rows`` rows, which also bounds the padding that decoding attends over. The
prefix cache is emptied whenever the weights change.

**Sampling.** Each row draws from its own ``torch.Generator`` seeded per row, one
uniform number per step, and picks the token by inverse transform over the
(filtered) distribution. Row ``i`` of a request with seed ``s`` uses the seed
``row_seeds(s, n)[i]``, so what a row samples depends on its prompt and its seed,
never on which other rows share the batch: ``generate(p, 8, seed=s)`` gives the same
ids as eight single-row calls with those row seeds (up to floating-point ties, which
batched arithmetic, or a prefix taken from the cache, can in principle move).

**Logprobs.** ``logprobs[i]`` is ``log_softmax(logits / temperature)`` at the sampled
token: the full tempered distribution, before top-k/top-p truncation. The sampler
draws from that distribution restricted to the top-k tokens, then to the smallest
set of those whose mass reaches top-p, renormalised; with top-k off (-1) and top-p 1
it is exactly the reported distribution, as RL needs (the learner recomputes the
same quantity at the same temperature). At temperature 0 (greedy) the token is the
argmax and its logprob is taken at temperature 1.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from pivotgym.policy.engines.base import Engine, FinishReason, Sample, SamplingParams
from pivotgym.policy.engines.prefix_cache import ROOT, PrefixCache
from pivotgym.policy.engines.weights import IN_PROCESS, WeightSync

# When at most this fraction of a batch's rows is still decoding, the others are dropped.
COMPACT_BELOW = 0.5


def cache_kwarg(module: Any) -> str:
    """The keyword a Hugging Face model's ``forward`` takes its KV cache by:
    transformers 5 renamed ``past_key_values`` to ``cache``; either is accepted."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def row_seeds(seed: int, n: int) -> list[int]:
    """The generator seed of each of the ``n`` rows of a request seeded ``seed``.

    Hashed, so that requests with nearby seeds draw unrelated random streams.
    """
    return [
        int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big")
        for i in range(n)
    ]


class TorchEngine(Engine):
    """Samples from ``model`` in this process (see the module docstring for how).

    ``model`` is any ``AutoModelForCausalLM`` with full attention (Llama, Qwen2,
    Mistral-style); the engine owns it from then on: it moves it to ``device`` in
    ``dtype`` (float32 unless told, e.g. ``torch.bfloat16`` on a GPU) and puts it in
    eval mode. On a GPU it turns cuDNN's attention backend off for the whole process.
    ``tokenizer``, if given, fills :attr:`Sample.text` (special tokens kept,
    so the chat layer can parse it); without one ``text`` is empty.

    The async methods run the blocking torch work on one worker thread, so the event
    loop stays responsive; every use of the model (sampling, weight loads) is
    serialised, so a weight update never lands in the middle of a batch. Weights from a
    trainer in the same process arrive as a state dict (``weight_sync`` in-process).
    """

    weight_sync: WeightSync = IN_PROCESS

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        version: str = "0",
        max_batch_rows: int = 256,
        prefix_block: int = 16,
        prefix_cache_bytes: int = 2 << 30,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self.prefix_cache = PrefixCache(prefix_block, prefix_cache_bytes)
        device = torch.device(device) if device is not None else next(model.parameters()).device
        if device.type == "cuda":
            # cuDNN's attention is slow on every shape it has not seen, and decoding
            # meets a new key length at each step: in bfloat16 on an H100 it made
            # sampling about 9x slower than flash or memory-efficient attention. The
            # switch is process-wide; float32 never takes the cuDNN path.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch_rows = max_batch_rows
        self._version = version
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-engine")
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = cache_kwarg(model)
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @property
    def weight_version(self) -> str:
        return self._version

    # -- async API ----------------------------------------------------------------------

    async def generate(
        self, prompt_ids: Sequence[int], n: int, sampling: SamplingParams
    ) -> list[Sample]:
        """``n`` samples of one prompt: one prefill, then the ``n`` rows decode together."""
        return (await self.generate_batch([prompt_ids], n, sampling))[0]

    async def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        sampling: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        """``n`` samples of each prompt, all decoded together.

        Prompt ``j`` samples as ``generate(prompts[j], n, seed)`` would with ``seed =
        seeds[j]`` when given, else ``sampling.seed + j``; so a prompt's samples do not
        depend on the other prompts of the batch.
        """
        if seeds is None:
            base = sampling.seed if sampling.seed is not None else secrets.randbits(63)
            seeds = [base + j for j in range(len(prompts))]
        elif len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        requests = [(p, row_seeds(s, n)) for p, s in zip(prompts, seeds, strict=True)]
        return await self._run(self.generate_sync, requests, sampling)

    async def generate_seeded(
        self, prompt_ids: Sequence[int], seeds: Sequence[int], sampling: SamplingParams
    ) -> list[Sample]:
        """One sample of ``prompt_ids`` per generator seed in ``seeds`` (``sampling.seed``
        is ignored): the building block ``generate`` uses with ``row_seeds``."""
        return (await self._run(self.generate_sync, [(prompt_ids, seeds)], sampling))[0]

    async def update_weights(self, path: str | Path, version: str) -> None:
        """Load the safetensors checkpoint at ``path`` (a file, or a folder holding
        ``model.safetensors`` or a sharded index) into the live model."""
        await self._run(self.update_weights_sync, path, version)

    async def load_state_dict(self, state: Mapping[str, torch.Tensor], version: str) -> None:
        """Copy an in-memory state dict (e.g. the learner's) into the live model."""
        await self._run(self.load_state_dict_sync, state, version)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # -- blocking core ------------------------------------------------------------------

    def update_weights_sync(self, path: str | Path, version: str) -> None:
        """Blocking :meth:`update_weights`."""
        self.load_state_dict_sync(read_safetensors(Path(path)), version)

    def load_state_dict_sync(self, state: Mapping[str, torch.Tensor], version: str) -> None:
        """Blocking :meth:`load_state_dict`; raises ``KeyError`` on missing or unknown
        names (tied weights may be given under either name) and leaves the version
        unchanged then."""
        with self._lock:
            check_state_names(self.model, state)
            with torch.inference_mode():
                self.model.load_state_dict(dict(state), strict=False)
            self.prefix_cache.clear()
            self._version = version

    def generate_sync(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]], sampling: SamplingParams
    ) -> list[list[Sample]]:
        """For each ``(prompt_ids, seeds)``, one sample per seed (``sampling.seed`` unused)."""
        rows = [
            (j, i, list(prompt), seed)
            for j, (prompt, seeds) in enumerate(requests)
            for i, seed in enumerate(seeds)
        ]
        if any(not r[2] for r in rows):
            raise ValueError("a prompt must hold at least one token")
        rows.sort(key=lambda r: -len(r[2]))
        out: list[list[Sample | None]] = [[None] * len(seeds) for _, seeds in requests]
        with self._lock, torch.inference_mode():
            version = self._version
            for start in range(0, len(rows), self.max_batch_rows):
                chunk = rows[start : start + self.max_batch_rows]
                tokens, logprobs, reasons = self._decode(
                    [r[2] for r in chunk], [r[3] for r in chunk], sampling
                )
                texts = (
                    self.tokenizer.batch_decode(tokens, skip_special_tokens=False)
                    if self.tokenizer is not None
                    else [""] * len(tokens)
                )
                for (j, i, _, _), ids, lps, text, reason in zip(
                    chunk, tokens, logprobs, texts, reasons, strict=True
                ):
                    out[j][i] = Sample(tuple(ids), tuple(lps), text, reason, version)
        return out  # type: ignore[return-value]

    def _decode(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingParams
    ) -> tuple[list[list[int]], list[list[float]], list[FinishReason]]:
        """Sample one continuation per row; rows with equal prompts share one prefill."""
        device, max_new = self.device, sampling.max_new_tokens
        groups: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompts):
            groups.setdefault(tuple(prompt), []).append(row)
        batch = len(prompts)
        width = max(len(p) for p in prompts)  # every prompt ends at slot ``width``
        cache, logits = self._prefill(groups, batch, width + max_new)

        lengths = torch.tensor([len(p) for p in prompts], device=device)
        slots = torch.arange(width + max_new, device=device)
        mask = (slots[None, :] >= (width - lengths)[:, None]) & (slots[None, :] < width)
        uniforms = torch.stack(
            [torch.rand(max_new, generator=torch.Generator().manual_seed(s)) for s in seeds]
        ).to(device)
        stop_ids = torch.tensor(sampling.stop_token_ids, dtype=torch.long, device=device)
        tokens = torch.zeros(batch, max_new, dtype=torch.long, device=device)
        logprobs = torch.zeros(batch, max_new, dtype=torch.float32, device=device)
        ended = torch.full((batch,), max_new, device=device)  # tokens each row keeps
        live = torch.arange(batch, device=device)  # original row of each cache row
        done = torch.zeros(batch, dtype=torch.bool, device=device)

        step = 0
        while True:
            # Rows that stopped but are still in the cache decode on; their tokens are dropped.
            token, logprob = sample_tokens(logits, uniforms[live, step], sampling)
            tokens[live, step] = token
            logprobs[live, step] = logprob
            stopped = torch.isin(token, stop_ids) & ~done
            ended[live[stopped]] = step + 1
            done |= stopped
            step += 1
            n_running = len(live) - int(done.sum())
            if step == max_new or n_running == 0:
                break
            if n_running <= COMPACT_BELOW * len(live):
                keep = (~done).nonzero().squeeze(1)
                cache.select_rows(keep)
                live, token, lengths, mask = live[keep], token[keep], lengths[keep], mask[keep]
                done = done[keep]
            mask[:, width + step - 1] = True
            out = self.model(
                input_ids=token[:, None],
                attention_mask=mask[:, : width + step],
                position_ids=(lengths + step - 1)[:, None],
                use_cache=True,
                **{self._cache_kwarg: cache},
            )
            logits = out.logits[:, -1]

        counts = ended.tolist()
        ids = [row[:k] for row, k in zip(tokens.tolist(), counts, strict=True)]
        lps = [row[:k] for row, k in zip(logprobs.tolist(), counts, strict=True)]
        stops = set(sampling.stop_token_ids)
        reasons: list[FinishReason] = [
            "stop" if row and row[-1] in stops else "length" for row in ids
        ]
        return ids, lps, reasons

    def _prefill(
        self, groups: dict[tuple[int, ...], list[int]], batch: int, capacity: int
    ) -> tuple[_RowCache, torch.Tensor]:
        """Run each distinct prompt once; copy its keys and values into its rows."""
        cache: _RowCache | None = None
        logits = None
        width = max(len(p) for p in groups)
        for prompt, rows in groups.items():
            own, last = self._prefill_one(prompt)
            if cache is None:
                cache = _RowCache.like(own, batch, capacity, width)
                logits = last.new_empty(batch, last.shape[-1])
            index = torch.tensor(rows, device=self.device)
            cache.fill(own, index, width - len(prompt))
            logits[index] = last
        assert cache is not None and logits is not None
        return cache, logits

    def _prefill_one(self, prompt: Sequence[int]) -> tuple[DynamicCache, torch.Tensor]:
        """One prompt's keys and values and its last position's logits: the cached blocks
        that open it, then one forward over the rest, whose full blocks are kept."""
        prefix = self.prefix_cache
        block = prefix.block
        path, blocks = prefix.lookup(prompt)
        own = DynamicCache(config=self.model.config)
        if blocks:
            for layer in range(len(blocks[0])):
                keys = torch.cat([b[layer][0] for b in blocks], dim=1)
                values = torch.cat([b[layer][1] for b in blocks], dim=1)
                own.update(keys[None], values[None], layer)
        done = len(path) * block
        out = self.model(
            input_ids=torch.tensor([prompt[done:]], device=self.device),
            use_cache=True,
            **{self._cache_kwarg: own},
            **self._last_logits_only,
        )
        # A cache with no room keeps nothing: skip copying blocks it would evict at once.
        stop = len(prompt) - block + 1 if prefix.max_bytes > 0 else done
        for start in range(done, stop, block):
            kv = [
                (
                    layer.keys[0, :, start : start + block].clone(),
                    layer.values[0, :, start : start + block].clone(),
                )
                for layer in own.layers
            ]
            parent = path[-1] if path else ROOT
            path.append(prefix.insert(parent, prompt[start : start + block], kv))
        prefix.touch(path)
        return own, out.logits[0, -1].float()


def sample_tokens(
    logits: torch.Tensor, uniforms: torch.Tensor, sampling: SamplingParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of ``logits`` and its logprob (see the module docstring).

    ``uniforms`` holds one number in [0, 1) per row: the token is the first whose
    cumulative (filtered) probability exceeds that fraction of the total.
    """
    logits = logits.float()
    if sampling.temperature == 0:
        logprobs = torch.log_softmax(logits, dim=-1)
        token = logits.argmax(dim=-1)
        return token, logprobs.gather(1, token[:, None]).squeeze(1)
    scaled = logits / sampling.temperature
    logprobs = torch.log_softmax(scaled, dim=-1)
    probs = logprobs.exp()
    vocab = probs.shape[-1]
    if 0 < sampling.top_k < vocab:
        kth = torch.topk(scaled, sampling.top_k, dim=-1).values[:, -1:]
        probs = probs.masked_fill(scaled < kth, 0.0)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        keep = before < sampling.top_p * sorted_probs.sum(dim=-1, keepdim=True)
        probs = probs * torch.zeros_like(keep).scatter(1, order, keep)
    cdf = probs.cumsum(dim=-1)
    target = uniforms[:, None].to(cdf.dtype) * cdf[:, -1:]
    token = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=vocab - 1)
    return token, logprobs.gather(1, token[:, None]).squeeze(1)


class _RowLayer(DynamicLayer):
    """One layer's keys and values in preallocated ``[rows, heads, capacity, dim]``
    buffers, written in place; attention sees only the filled slots."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.key_buffer, self.value_buffer = keys, values
        self.length = length
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def select_rows(self, rows: torch.Tensor) -> None:
        self.key_buffer = self.key_buffer.index_select(0, rows)
        self.value_buffer = self.value_buffer.index_select(0, rows)
        self._views()


class _RowCache(Cache):
    """A cache of many rows, filled from single-prompt prefills (see the module docs)."""

    @classmethod
    def like(cls, prefilled: DynamicCache, rows: int, capacity: int, length: int) -> _RowCache:
        layers = []
        for layer in prefilled.layers:
            k, v = layer.keys, layer.values
            keys = k.new_zeros(rows, k.shape[1], capacity, k.shape[3])
            values = v.new_zeros(rows, v.shape[1], capacity, v.shape[3])
            layers.append(_RowLayer(keys, values, length))
        return cls(layers=layers)

    def fill(self, prefilled: DynamicCache, rows: torch.Tensor, offset: int) -> None:
        """Copy a one-row prefill into ``rows``, its first token at slot ``offset``."""
        for mine, theirs in zip(self.layers, prefilled.layers, strict=True):
            span = slice(offset, offset + theirs.keys.shape[2])
            mine.key_buffer[rows, :, span] = theirs.keys
            mine.value_buffer[rows, :, span] = theirs.values

    def select_rows(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.select_rows(rows)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, or of the checkpoint folder ``path``."""
    from safetensors.torch import load_file

    if path.is_file():
        return load_file(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no safetensors checkpoint at {path}")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(path / shard))
    return state


def check_state_names(model: Any, state: Mapping[str, torch.Tensor]) -> None:
    """Raise ``KeyError`` unless ``state`` sets every parameter and buffer of ``model``
    and nothing else; tied parameters count as set when any of their names is."""
    names = dict(model.named_parameters(remove_duplicate=False))
    names.update(model.named_buffers(remove_duplicate=False))
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise KeyError(f"unknown weights in the new state: {unknown[:5]}")
    loaded = {id(names[k]) for k in state}
    persistent = dict(model.state_dict(keep_vars=True))
    missing = sorted(k for k, t in persistent.items() if k not in state and id(t) not in loaded)
    if missing:
        raise KeyError(f"weights missing from the new state: {missing[:5]}")
