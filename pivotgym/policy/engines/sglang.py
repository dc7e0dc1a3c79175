"""A policy engine that samples from an SGLang server over its native HTTP API.

The client speaks only the token-level part of SGLang's API:

- ``POST /generate`` with ``input_ids`` (a list of id lists: one row per sample),
  ``sampling_params`` (one complete dict per row), ``return_logprob: true`` and
  ``logprob_start_len: -1`` so that only the generated tokens are scored. Each answer
  row carries ``output_ids`` and ``meta_info`` with ``output_token_logprobs``
  (``[logprob, token_id, text]`` triples), ``finish_reason`` (``{"type": ...}``) and
  ``weight_version``.
- ``GET /health`` and ``GET /get_model_info`` (``model_path``, ``weight_version``).
- Weight sync: ``POST /pause_generation`` (``mode: "retract"``), then
  ``POST /update_weights_from_disk`` (``model_path``, ``weight_version``,
  ``flush_cache``), then ``POST /flush_cache``, then ``POST /continue_generation``,
  then a read of ``/get_model_info`` to check that the new version is served.

A group of ``n`` samples is sent as ``n`` rows of one batched request rather than with
SGLang's ``n`` parameter, whose rows would all share one ``sampling_seed``. Row ``i``
gets ``sampling_seed = seed + i``, so the samples of a group differ and the whole group
is repeatable; as with the torch engine, prompt ``j`` of ``generate_batch`` is seeded
``seed + j``. SGLang honours ``sampling_seed`` only when launched with
``--enable-deterministic-inference``, and holds it as an int32, so seeds must stay
below 2**31. pivotgym's own server samples a run of rows seeded ``s, s+1, …`` exactly as
the torch engine samples a group seeded ``s``.

SGLang always stops at the model's own EOS tokens (unless ``ignore_eos``, which also
disables ``stop_token_ids``), so the effective stop set is ``stop_token_ids`` plus the
model's EOS ids. The stop token is kept in ``output_ids``.

Failures of the server are :class:`~pivotgym.errors.InfraError`: unreachable (after
bounded retries with exponential backoff on connection errors and 5xx answers), a 4xx
answer (never retried), a timeout, or an answer that breaks the contract above.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import httpx

from pivotgym.errors import InfraError
from pivotgym.policy.engines.base import Engine, Sample, SamplingParams

_FINISH_TYPES = ("stop", "length", "abort")
SEED_LIMIT = 2**31  # SGLang stores sampling_seed as an int32
# Errors after which the request never reached the server's handler, or the connection
# broke; repeating is safe. Timeouts are not here: the server may still be working.
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


def sglang_sampling_params(sampling: SamplingParams, index: int = 0) -> dict[str, Any]:
    """The complete SGLang ``sampling_params`` dict of sample ``index`` of a group.

    Every knob that would otherwise fall back to the model's ``generation_config.json``
    (SGLang's default ``--sampling-defaults model``) is set explicitly.
    """
    params: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": 0.0,
        "max_new_tokens": sampling.max_new_tokens,
        "stop_token_ids": list(sampling.stop_token_ids),
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.0,
        "min_new_tokens": 0,
        "ignore_eos": False,
        "skip_special_tokens": False,
        "no_stop_trim": True,
        "n": 1,
    }
    if sampling.seed is not None:
        seed = sampling.seed + index
        if not 0 <= seed < SEED_LIMIT:
            raise ValueError(
                f"SGLang seeds are int32: seed + row must be in [0, 2**31), got {seed}"
            )
        params["sampling_seed"] = seed
    return params


class SGLangEngine(Engine):
    """Samples from a running SGLang (or SGLang-compatible) server at ``base_url``.

    ``timeout`` bounds one HTTP exchange (generation included); ``connect_timeout``
    bounds opening a connection. Connection errors and 5xx answers are retried up to
    ``retries`` times, waiting ``backoff * 2**attempt`` seconds in between. At most
    ``max_concurrency`` generate requests are in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_concurrency: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_concurrency + 4),
            transport=transport,
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._weight_version: str | None = None
        self.model_path: str | None = None

    @classmethod
    async def connect(cls, base_url: str, **kwargs: Any) -> SGLangEngine:
        """An engine whose server answered ``/health`` and reported its model."""
        engine = cls(base_url, **kwargs)
        try:
            await engine.health()
            await engine.model_info()
        except BaseException:
            await engine.aclose()
            raise
        return engine

    @property
    def weight_version(self) -> str:
        """The version the server last reported (by ``/get_model_info`` or a sample)."""
        if self._weight_version is None:
            raise InfraError(
                f"SGLang server {self.base_url}: weight version unknown; "
                "use SGLangEngine.connect() or await model_info() first"
            )
        return self._weight_version

    # -- control plane -------------------------------------------------------------------

    async def health(self) -> None:
        """Raise :class:`InfraError` unless ``GET /health`` answers 200."""
        await self._request("GET", "/health")

    async def model_info(self) -> dict[str, Any]:
        """``GET /get_model_info``; remembers ``model_path`` and ``weight_version``."""
        info = self._json_object(await self._request("GET", "/get_model_info"), "/get_model_info")
        path = info.get("model_path")
        if not isinstance(path, str):
            raise self._off_contract("/get_model_info", "model_path is not a string", info)
        version = info.get("weight_version")
        if version is not None and not isinstance(version, str):
            raise self._off_contract("/get_model_info", "weight_version is not a string", info)
        self.model_path = path
        # Servers older than weight versioning report none; samples then carry the path.
        self._weight_version = version if version is not None else path
        return info

    async def update_weights(self, path: str, version: str) -> None:
        """Load the checkpoint at ``path`` (a path the *server* can read) as ``version``.

        Generation is paused in ``retract`` mode (running requests go back to the queue
        and keep their place), the weights are loaded and the prefix cache flushed, then
        generation continues; requests retracted meanwhile are recomputed with the new
        weights. Raises :class:`InfraError` if any step fails or if the server does not
        report ``version`` and ``path`` afterwards.
        """
        await self._request("POST", "/pause_generation", json={"mode": "retract"})
        try:
            response = await self._request(
                "POST",
                "/update_weights_from_disk",
                json={
                    "model_path": path,
                    "weight_version": version,
                    "flush_cache": True,
                    "abort_all_requests": False,
                },
            )
            body = self._json_object(response, "/update_weights_from_disk")
            if body.get("success") is not True:
                raise InfraError(
                    f"SGLang server {self.base_url}: update_weights_from_disk({path!r}) "
                    f"failed: {body.get('message')!r}"
                )
            # Stale KV after a weight change is silent corruption, so a flush that the
            # server refuses is an error, not a warning.
            await self._request("POST", "/flush_cache")
        finally:
            await self._request("POST", "/continue_generation", json={})
        info = await self.model_info()
        if info.get("weight_version") != version or info.get("model_path") != path:
            raise InfraError(
                f"SGLang server {self.base_url}: after updating to {path!r} as {version!r} "
                f"it serves {info.get('model_path')!r} as {info.get('weight_version')!r}"
            )

    # -- sampling ------------------------------------------------------------------------

    async def generate(
        self, prompt_ids: Sequence[int], n: int, sampling: SamplingParams
    ) -> list[Sample]:
        """``n`` samples of one prompt, sent as one batched ``/generate`` request."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("prompt_ids is empty")
        body = {
            "input_ids": [prompt] * n,
            "sampling_params": [sglang_sampling_params(sampling, i) for i in range(n)],
            "return_logprob": True,
            "logprob_start_len": -1,
        }
        async with self._slots:
            response = await self._request("POST", "/generate", json=body)
        rows = self._json(response, "/generate")
        if not isinstance(rows, list) or len(rows) != n:
            got = f"a list of {len(rows)}" if isinstance(rows, list) else type(rows).__name__
            raise self._off_contract("/generate", f"expected a list of {n} results, got {got}")
        return [self._sample(row, i) for i, row in enumerate(rows)]

    async def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        sampling: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        """``n`` samples of each prompt; prompts go out concurrently (bounded).

        Prompt ``j`` samples as ``generate(prompts[j], n, seed)`` would, with ``seed =
        seeds[j]`` when given (folded into SGLang's int32 range, leaving room for the row
        index), else ``sampling.seed + j``.
        """
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")

        def seeded(j: int) -> SamplingParams:
            if seeds is not None:
                return dataclasses.replace(sampling, seed=seeds[j] % (SEED_LIMIT // 2))
            if sampling.seed is None:
                return sampling
            return dataclasses.replace(sampling, seed=sampling.seed + j)

        calls = (self.generate(p, n, seeded(j)) for j, p in enumerate(prompts))
        return list(await asyncio.gather(*calls))

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- HTTP plumbing -------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, json: dict[str, Any] | None = None
    ) -> httpx.Response:
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.request(method, path, json=json)
            except _RETRYABLE as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.TimeoutException as exc:
                raise InfraError(
                    f"SGLang server {self.base_url}: {method} {path} timed out "
                    f"({type(exc).__name__})"
                ) from exc
            except httpx.HTTPError as exc:
                raise InfraError(
                    f"SGLang server {self.base_url}: {method} {path} failed: {exc}"
                ) from exc
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {_excerpt(response.text)}"
                continue
            if response.status_code >= 400:
                raise InfraError(
                    f"SGLang server {self.base_url}: {method} {path} was refused with "
                    f"HTTP {response.status_code}: {_excerpt(response.text)}"
                )
            return response
        raise InfraError(
            f"SGLang server {self.base_url} unreachable: {method} {path} failed "
            f"{self.retries + 1} time(s); last error: {last}"
        )

    def _json(self, response: httpx.Response, where: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self._off_contract(where, f"not JSON: {_excerpt(response.text)}") from exc

    def _json_object(self, response: httpx.Response, where: str) -> dict[str, Any]:
        body = self._json(response, where)
        if not isinstance(body, dict):
            raise self._off_contract(where, f"expected an object, got {type(body).__name__}")
        return body

    def _off_contract(self, where: str, problem: str, body: Any = None) -> InfraError:
        shown = f" in {_excerpt(repr(body))}" if body is not None else ""
        return InfraError(
            f"SGLang server {self.base_url}: {where} answered off-contract: {problem}{shown}"
        )

    def _sample(self, row: Any, index: int) -> Sample:
        where = f"/generate result {index}"
        if not isinstance(row, dict):
            raise self._off_contract(where, f"expected an object, got {type(row).__name__}")
        ids = row.get("output_ids")
        meta = row.get("meta_info")
        if not isinstance(ids, list) or not all(_is_int(t) for t in ids):
            raise self._off_contract(where, "output_ids is not a list of ints", row)
        if not isinstance(meta, dict):
            raise self._off_contract(where, "meta_info is missing", row)
        triples = meta.get("output_token_logprobs")
        if not isinstance(triples, list) or len(triples) != len(ids):
            count = len(triples) if isinstance(triples, list) else "no"
            raise self._off_contract(
                where,
                f"meta_info.output_token_logprobs has {count} entries for {len(ids)} "
                "output_ids (was return_logprob honoured?)",
            )
        logprobs = []
        for position, (triple, token) in enumerate(zip(triples, ids, strict=True)):
            if (
                not isinstance(triple, list | tuple)
                or len(triple) < 2
                or not isinstance(triple[0], int | float)
                or isinstance(triple[0], bool)
                or math.isnan(triple[0])
                or triple[1] != token
            ):
                raise self._off_contract(
                    where,
                    f"output_token_logprobs[{position}] = {triple!r} does not score "
                    f"output token {token}",
                )
            logprobs.append(float(triple[0]))
        finish = meta.get("finish_reason")
        kind = finish.get("type") if isinstance(finish, dict) else None
        if kind not in _FINISH_TYPES:
            raise self._off_contract(
                where, f"finish_reason {finish!r} is not one of {_FINISH_TYPES}"
            )
        version = meta.get("weight_version", self._weight_version)
        if not isinstance(version, str):
            raise self._off_contract(where, "meta_info.weight_version is missing", row)
        self._weight_version = version
        text = row.get("text")
        return Sample(
            token_ids=tuple(int(t) for t in ids),
            logprobs=tuple(logprobs),
            text=text if isinstance(text, str) else "",
            finish_reason=kind,
            weight_version=version,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
