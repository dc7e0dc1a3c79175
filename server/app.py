"""An SGLang-compatible HTTP server in front of a pivotgym engine (the torch engine on CPU).

It answers the part of SGLang's native API that token-level RL uses, with SGLang's
request fields and response shapes, so :class:`pivotgym.policy.engines.sglang.SGLangEngine`
drives it and a real SGLang server through one code path:

===========================  ==========================================================
``POST /generate``           ``input_ids`` (one list, or a list of lists), ``sampling_params``
                             (a dict, or one per row), ``return_logprob``,
                             ``logprob_start_len`` (-1 only), ``rid``. Answers
                             ``{"text", "output_ids", "meta_info"}`` per row (a list for a
                             batch); ``meta_info`` holds ``id``, ``finish_reason``,
                             ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``,
                             ``weight_version``, ``e2e_latency`` and, with
                             ``return_logprob``, ``output_token_logprobs``.
``GET /health``              200 once serving; ``/health_generate`` also samples a token.
``GET /get_model_info``      ``model_path``, ``tokenizer_path``, ``is_generation``,
                             ``preferred_sampling_params``, ``weight_version``.
``GET /get_weight_version``  ``{"weight_version"}``.
``POST /update_weights_from_disk``  ``model_path``, ``weight_version``, … →
                             ``{"success", "message", "num_paused_requests"}``.
``POST /pause_generation``   ``mode``: ``abort`` (default), ``retract`` or ``in_place``.
``POST /continue_generation``
``GET|POST /flush_cache``    The engine keeps no cache across requests: always succeeds.
===========================  ==========================================================

Sampling follows SGLang's rules: unset parameters take SGLang's defaults (temperature 1,
top_p 1, top_k -1, max_new_tokens 128), ``temperature`` 0 means greedy (temperature 1 with
top_k 1), the model's EOS ids always stop generation unless ``ignore_eos`` (which also
turns ``stop_token_ids`` off), and ``n`` repeats the rows. Rows of one request that share a
prompt and parameters and whose ``sampling_seed`` values run consecutively from ``s``
are sampled as one group of the engine seeded with ``s``, so ``n`` rows seeded
``s, s+1, …`` reproduce the in-process ``engine.generate(prompt, n, seed=s)`` exactly.
Parameters this engine cannot honour (stop strings, penalties, grammars, prompt
logprobs) are refused with 400 rather than ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pivotgym.policy.engines.base import Engine, Sample, SamplingParams
from pivotgym.server.scheduler import Aborted, Scheduler

# SGLang's defaults for the parameters a request leaves out.
_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_new_tokens": 128}
_GREEDY_EPS = 1e-6
# Parameters accepted only at their no-op value (SGLang's default).
_NEUTRAL: dict[str, Any] = {
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "min_new_tokens": 0,
    "stop": None,
    "stop_regex": None,
    "json_schema": None,
    "regex": None,
    "ebnf": None,
    "structural_tag": None,
    "custom_params": None,
    "logit_bias": None,
}
# Parameters that only shape the text, which this server does not post-process.
_TEXT_ONLY = ("skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim")
_KNOWN = {*_DEFAULTS, *_NEUTRAL, *_TEXT_ONLY, "stop_token_ids", "sampling_seed", "n"}
_KNOWN.update({"ignore_eos", "stream_interval"})


class BadRequest(ValueError):
    """The request breaks SGLang's API or asks for something this server cannot do."""


@dataclass(frozen=True)
class ServedModel:
    """What ``/get_model_info`` reports, and the ids that always end generation."""

    model_path: str
    tokenizer_path: str | None
    eos_token_ids: tuple[int, ...]


@dataclass
class _Row:
    prompt: tuple[int, ...]
    sampling: SamplingParams
    rid: str


def sampling_from_sglang(params: dict[str, Any], eos_token_ids: Sequence[int]) -> SamplingParams:
    """An engine :class:`SamplingParams` from one SGLang ``sampling_params`` dict."""
    if not isinstance(params, dict):
        raise BadRequest(f"sampling_params must be an object, got {type(params).__name__}")
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise BadRequest(f"unsupported sampling_params: {', '.join(unknown)}")
    for key, neutral in _NEUTRAL.items():
        value = params.get(key)
        if value is not None and value != neutral and value != []:
            raise BadRequest(f"sampling_params.{key}={value!r} is not supported by this server")
    values = {k: params[k] if params.get(k) is not None else d for k, d in _DEFAULTS.items()}
    try:
        temperature = float(values["temperature"])
        top_k = int(values["top_k"])
        if 0 <= temperature < _GREEDY_EPS:  # SGLang's greedy: top-1 of the unscaled logits
            temperature, top_k = 1.0, 1
        ignore_eos = bool(params.get("ignore_eos") or False)
        stop = set() if ignore_eos else {int(t) for t in params.get("stop_token_ids") or ()}
        if not ignore_eos:
            stop.update(eos_token_ids)
        seed = params.get("sampling_seed")
        return SamplingParams(
            temperature=temperature,
            top_p=float(values["top_p"]),
            top_k=top_k,
            max_new_tokens=int(values["max_new_tokens"]),
            stop_token_ids=tuple(sorted(stop)),
            seed=int(seed) if seed is not None else None,
        )
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"bad sampling_params: {exc}") from exc


def parse_generate(body: Any, eos_token_ids: Sequence[int]) -> tuple[list[_Row], bool, bool]:
    """``(rows, is_single, return_logprob)`` of a ``/generate`` body, expanded like SGLang.

    A batch with ``n`` > 1 is repeated whole ``n`` times (rows ``p0, p1, p0, p1, …``).
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("text") is not None or body.get("input_embeds") is not None:
        raise BadRequest("this server works on token ids: send input_ids, not text")
    ids = body.get("input_ids")
    if not isinstance(ids, list) or not ids:
        raise BadRequest("input_ids must be a non-empty list")
    single = not isinstance(ids[0], list)
    prompts = [ids] if single else ids
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, list) or not prompt:
            raise BadRequest(f"input_ids[{i}] must be a non-empty list of token ids")
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
            raise BadRequest(f"input_ids[{i}] must hold non-negative integers")
    if body.get("stream"):
        raise BadRequest("stream is not supported by this server")
    raw = body.get("sampling_params")
    if raw is None:
        raw = {}
    per_row = raw if isinstance(raw, list) else [raw] * len(prompts)
    if len(per_row) != len(prompts):
        raise BadRequest(f"{len(per_row)} sampling_params for {len(prompts)} input_ids")
    counts = {int(p.get("n") or 1) if isinstance(p, dict) else 1 for p in per_row}
    if len(counts) != 1:
        raise BadRequest("The parallel_sample_num should be the same for all samples")
    n = counts.pop()
    if n < 1:
        raise BadRequest(f"sampling_params.n must be >= 1, got {n}")
    _check_logprob_options(body)
    sampling = [sampling_from_sglang(p, eos_token_ids) for p in per_row]
    if n > 1:
        single = False
        prompts, sampling = prompts * n, sampling * n
    rids = _rids(body.get("rid"), len(prompts), single)
    rows = [_Row(tuple(p), s, r) for p, s, r in zip(prompts, sampling, rids, strict=True)]
    return rows, single, bool(body.get("return_logprob"))


def _check_logprob_options(body: dict[str, Any]) -> None:
    for key, allowed in (("logprob_start_len", (None, -1)), ("top_logprobs_num", (None, 0))):
        values = body.get(key)
        for value in values if isinstance(values, list) else [values]:
            if value not in allowed:
                raise BadRequest(f"{key}={value!r} is not supported by this server")
    if body.get("token_ids_logprob"):
        raise BadRequest("token_ids_logprob is not supported by this server")
    if isinstance(body.get("return_logprob"), list):
        raise BadRequest("return_logprob must be one bool for the whole request here")


def _rids(rid: Any, count: int, single: bool) -> list[str]:
    if rid is None:
        return [uuid.uuid4().hex for _ in range(count)]
    if isinstance(rid, str):
        return [rid] if single and count == 1 else [f"{rid}_{i}" for i in range(count)]
    if isinstance(rid, list) and all(isinstance(r, str) for r in rid):
        if len(rid) == count:
            return list(rid)
        if count % len(rid) == 0:  # n > 1 repeats the batch; SGLang suffixes the copies
            return [f"{r}_{k}" for k in range(count // len(rid)) for r in rid]
    raise BadRequest("rid must be a string or one string per row")


def group_rows(rows: list[_Row]) -> list[tuple[list[int], tuple[int, ...], int, SamplingParams]]:
    """Runs of rows that are one engine group: ``(row indices, prompt, n, sampling)``.

    A run shares prompt and parameters, and its seeds are ``s, s+1, …`` (or all unset).
    """
    groups: list[tuple[list[int], tuple[int, ...], int, SamplingParams]] = []
    for i, row in enumerate(rows):
        if groups:
            indices, prompt, n, first = groups[-1]
            same = prompt == row.prompt and _without_seed(first) == _without_seed(row.sampling)
            seeds_follow = (first.seed is None and row.sampling.seed is None) or (
                first.seed is not None
                and row.sampling.seed is not None
                and row.sampling.seed == first.seed + n
            )
            if same and seeds_follow:
                indices.append(i)
                groups[-1] = (indices, prompt, n + 1, first)
                continue
        groups.append(([i], row.prompt, 1, row.sampling))
    return groups


def _without_seed(sampling: SamplingParams) -> tuple[Any, ...]:
    return (
        sampling.temperature,
        sampling.top_p,
        sampling.top_k,
        sampling.max_new_tokens,
        sampling.stop_token_ids,
    )


def result_row(row: _Row, sample: Sample | None, logprob: bool, started: float) -> dict[str, Any]:
    """One row of SGLang's ``/generate`` answer."""
    if sample is None:
        ids: list[int] = []
        finish: dict[str, Any] = {"type": "abort", "message": "Abort in waiting queue"}
        text, version, logprobs = "", None, []
    else:
        ids = list(sample.token_ids)
        text, version, logprobs = sample.text, sample.weight_version, list(sample.logprobs)
        if sample.finish_reason == "stop":
            finish = {"type": "stop", "matched": ids[-1] if ids else None}
        elif sample.finish_reason == "length":
            finish = {"type": "length", "length": len(ids)}
        else:
            finish = {"type": "abort", "message": "aborted by the engine"}
    meta: dict[str, Any] = {
        "id": row.rid,
        "finish_reason": finish,
        "prompt_tokens": len(row.prompt),
        "weight_version": version,
        "completion_tokens": len(ids),
        "cached_tokens": 0,
        "e2e_latency": time.perf_counter() - started,
    }
    if logprob:
        meta["output_token_logprobs"] = [[lp, t, None] for lp, t in zip(logprobs, ids, strict=True)]
    return {"text": text, "output_ids": ids, "meta_info": meta}


def _error(message: str, status: int = 400) -> JSONResponse:
    # The shape SGLang's /generate uses for a ValueError raised by a request.
    return JSONResponse({"error": {"message": message}}, status_code=status)


def build_app(engine: Engine, model: ServedModel, *, batch_window_s: float = 0.002) -> Starlette:
    """The ASGI app serving ``engine``; the engine is closed when the app shuts down."""
    scheduler = Scheduler(engine, window_s=batch_window_s)
    ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        scheduler.start()
        ready.set()
        try:
            yield
        finally:
            await scheduler.stop()

    async def sample_rows(rows: list[_Row]) -> list[Sample | None]:
        plan = group_rows(rows)
        groups = [scheduler.new_group(prompt, n, sp) for _, prompt, n, sp in plan]
        await scheduler.submit(groups)
        out: list[Sample | None] = [None] * len(rows)
        for (indices, *_), group in zip(plan, groups, strict=True):
            try:
                samples = await group.result
            except Aborted:
                continue
            if len(samples) != len(indices):
                raise RuntimeError(f"engine returned {len(samples)} samples for {len(indices)}")
            for i, sample in zip(indices, samples, strict=True):
                out[i] = sample
        return out

    async def generate(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            return _error("the request body is not valid JSON")
        try:
            rows, single, logprob = parse_generate(body, model.eos_token_ids)
        except BadRequest as exc:
            return _error(str(exc))
        try:
            samples = await sample_rows(rows)
        except (ValueError, TypeError) as exc:  # the engine refused the parameters
            return _error(str(exc))
        except Exception as exc:
            return _error(f"{type(exc).__name__}: {exc}", status=500)
        results = [result_row(r, s, logprob, started) for r, s in zip(rows, samples, strict=True)]
        for result in results:
            if result["meta_info"]["weight_version"] is None:
                result["meta_info"]["weight_version"] = scheduler.weight_version
        return JSONResponse(results[0] if single else results)

    async def health(request: Request) -> Response:
        return Response(status_code=200 if ready.is_set() else 503)

    async def health_generate(request: Request) -> Response:
        if not ready.is_set():
            return Response(status_code=503)
        if not await scheduler.idle():  # busy means alive, as in SGLang
            return Response(status_code=200)
        probe = SamplingParams(1.0, 1.0, 1, 1, (), None)
        group = scheduler.new_group((0,), 1, probe)
        await scheduler.submit([group])
        try:
            await group.result
        except Exception:
            return Response(status_code=503)
        return Response(status_code=200)

    async def model_info(request: Request) -> Response:
        return JSONResponse(
            {
                "model_path": model.model_path,
                "tokenizer_path": model.tokenizer_path,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": scheduler.weight_version,
            }
        )

    async def weight_version(request: Request) -> Response:
        return JSONResponse({"weight_version": scheduler.weight_version})

    async def update_weights_from_disk(request: Request) -> Response:
        nonlocal model
        try:
            body = await request.json()
        except ValueError:
            return _error("the request body is not valid JSON")
        path = body.get("model_path") if isinstance(body, dict) else None
        if not isinstance(path, str) or not path:
            return _error("model_path is required")
        version = body.get("weight_version")
        if version is not None and not isinstance(version, str):
            return _error("weight_version must be a string")
        if body.get("abort_all_requests"):
            await scheduler.pause("abort")
            await scheduler.resume()
        try:
            held = await scheduler.update_weights(path, version or scheduler.weight_version)
        except Exception as exc:
            content = {
                "success": False,
                "message": f"Failed to update weights: {type(exc).__name__}: {exc}",
                "num_paused_requests": 0,
            }
            return JSONResponse(content, status_code=400)
        model = ServedModel(path, model.tokenizer_path, model.eos_token_ids)
        message = "Succeeded to update model weights."
        if version is not None:
            message += f" Weight version updated to {version}."
        return JSONResponse({"success": True, "message": message, "num_paused_requests": held})

    async def pause_generation(request: Request) -> Response:
        mode = "abort"
        raw = await request.body()
        if raw.strip():
            try:
                body = await request.json()
            except ValueError:
                return _error("the request body is not valid JSON")
            mode = (body or {}).get("mode", "abort") if isinstance(body, dict) else None
        if mode not in ("abort", "retract", "in_place"):
            return _error(
                f"Invalid mode: {mode!r}. Expected one of ['abort', 'retract', 'in_place']."
            )
        await scheduler.pause(mode)
        return JSONResponse({"message": "Generation paused successfully.", "status": "ok"})

    async def continue_generation(request: Request) -> Response:
        await scheduler.resume()
        return JSONResponse({"message": "Generation continued successfully.", "status": "ok"})

    async def flush_cache(request: Request) -> Response:
        return PlainTextResponse(
            "Cache flushed.\nPlease check backend logs for more details. "
            "(When there are running or waiting requests, the operation will not be performed.)\n"
        )

    routes = [
        Route("/generate", generate, methods=["POST", "PUT"]),
        Route("/health", health, methods=["GET"]),
        Route("/health_generate", health_generate, methods=["GET"]),
        Route("/get_model_info", model_info, methods=["GET"]),
        Route("/get_weight_version", weight_version, methods=["GET"]),
        Route("/update_weights_from_disk", update_weights_from_disk, methods=["POST"]),
        Route("/pause_generation", pause_generation, methods=["POST"]),
        Route("/continue_generation", continue_generation, methods=["POST"]),
        Route("/flush_cache", flush_cache, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
