"""The SGLang engine against the CPU server over a real socket, and on its error paths.

The server tests drive the same client code that drives a real SGLang server. The
error paths use ``httpx.MockTransport`` handlers that answer with a wrong shape or a
chosen status: test doubles for the failure cases only.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pivotgym.errors import InfraError
from pivotgym.policy.engines.base import SamplingParams
from pivotgym.policy.engines.sglang import SGLangEngine, sglang_sampling_params
from tests.server_fixture import TinyServer, in_process_engine, perturbed_checkpoint

PROMPT = [5, 17, 42, 99, 7]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def server() -> Any:
    with TinyServer() as tiny:
        yield tiny


def sampling(tiny: TinyServer, seed: int | None = 11, max_new_tokens: int = 12) -> SamplingParams:
    return SamplingParams(1.0, 1.0, -1, max_new_tokens, tiny.eos_token_ids, seed)


# ------------------------------------------------------------------- against the server


def test_samples_and_logprobs_equal_the_in_process_engine(server: TinyServer) -> None:
    sp = sampling(server)

    async def both() -> tuple[list[Any], list[Any]]:
        remote = await SGLangEngine.connect(server.url)
        try:
            over_http = await remote.generate(PROMPT, 4, sp)
        finally:
            await remote.aclose()
        local = in_process_engine()
        try:
            return over_http, await local.generate(PROMPT, 4, sp)
        finally:
            await local.aclose()

    over_http, local = run(both())
    assert len(over_http) == 4
    for a, b in zip(over_http, local, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
        assert a.finish_reason == b.finish_reason
        assert a.weight_version == server.weight_version()
    assert len({s.token_ids for s in over_http}) > 1  # a group's samples differ


def test_generate_batch_gives_each_prompt_its_group(server: TinyServer) -> None:
    prompts = [PROMPT, [3, 1, 4, 1, 5, 9], [2, 7]]

    async def go() -> list[list[Any]]:
        engine = await SGLangEngine.connect(server.url, max_concurrency=2)
        try:
            return await engine.generate_batch(prompts, 3, sampling(server, max_new_tokens=6))
        finally:
            await engine.aclose()

    groups = run(go())
    assert [len(g) for g in groups] == [3, 3, 3]
    for group in groups:
        for sample in group:
            assert 1 <= len(sample.token_ids) <= 6
            assert len(sample.logprobs) == len(sample.token_ids)
            assert all(lp <= 0 for lp in sample.logprobs)
            if sample.finish_reason == "stop":
                assert sample.token_ids[-1] in server.eos_token_ids


def test_update_weights_changes_version_and_samples(server: TinyServer, tmp_path: Path) -> None:
    new_weights = perturbed_checkpoint(tmp_path / "step-1")
    sp = sampling(server)

    async def go() -> tuple[Any, Any, str, dict[str, Any], Any]:
        engine = await SGLangEngine.connect(server.url)
        try:
            before = await engine.generate(PROMPT, 2, sp)
            await engine.update_weights(str(new_weights), "step-1")
            after = await engine.generate(PROMPT, 2, sp)
            version, info = engine.weight_version, await engine.model_info()
            await engine.update_weights(str(server.checkpoint), "restored")
            restored = await engine.generate(PROMPT, 2, sp)
            return before, after, version, info, restored
        finally:
            await engine.aclose()

    before, after, version, info, restored = run(go())
    assert version == "step-1"
    assert info["model_path"] == str(new_weights) and info["weight_version"] == "step-1"
    assert {s.weight_version for s in after} == {"step-1"}
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
    assert {s.weight_version for s in restored} == {"restored"}
    assert [s.token_ids for s in restored] == [s.token_ids for s in before]


def test_an_unreachable_server_fails_fast_and_clearly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nobody listens there

    async def go() -> None:
        engine = SGLangEngine(f"http://127.0.0.1:{port}", retries=2, backoff=0.05)
        try:
            await engine.generate(PROMPT, 1, SamplingParams(1.0, 1.0, -1, 4, (), 0))
        finally:
            await engine.aclose()

    started = time.monotonic()
    with pytest.raises(InfraError, match=r"unreachable.*failed 3 time\(s\).*ConnectError"):
        run(go())
    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------- error paths


def _valid_row(ids: list[int]) -> dict[str, Any]:
    return {
        "text": "",
        "output_ids": ids,
        "meta_info": {
            "id": "r",
            "finish_reason": {"type": "length", "length": len(ids)},
            "weight_version": "w0",
            "output_token_logprobs": [[-0.5, t, None] for t in ids],
        },
    }


def _engine(handler: Any, **kwargs: Any) -> SGLangEngine:
    return SGLangEngine("http://sglang.test", transport=httpx.MockTransport(handler), **kwargs)


def _generate(engine: SGLangEngine, n: int = 1) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await engine.generate(PROMPT, n, SamplingParams(0.7, 0.9, 20, 3, (2,), 5))
        finally:
            await engine.aclose()

    return run(go())


def _broken(row: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    target = row
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return row


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (lambda: {"not": "a list"}, "expected a list of 1 results"),
        (
            lambda: [_valid_row([1, 2]), _valid_row([3])],
            "expected a list of 1 results, got a list of 2",
        ),
        (lambda: [_broken(_valid_row([1, 2]), ["output_ids"], KeyError)], "output_ids"),
        (
            lambda: [_broken(_valid_row([1, 2]), ["meta_info", "output_token_logprobs"], KeyError)],
            "output_token_logprobs has no entries for 2 output_ids",
        ),
        (
            lambda: [
                _broken(_valid_row([1, 2]), ["meta_info", "output_token_logprobs"], [[-1, 1, None]])
            ],
            "has 1 entries for 2",
        ),
        (
            lambda: [
                _broken(
                    _valid_row([1, 2]),
                    ["meta_info", "output_token_logprobs"],
                    [[-1, 1, None], [-1, 9, None]],
                )
            ],
            "does not score output token 2",
        ),
        (
            lambda: [_broken(_valid_row([1]), ["meta_info", "finish_reason"], "stop")],
            "finish_reason",
        ),
    ],
)
def test_off_contract_answers_raise_infra_error(answer: Any, problem: str) -> None:
    engine = _engine(lambda request: httpx.Response(200, json=answer()))
    with pytest.raises(InfraError, match="off-contract") as caught:
        _generate(engine)
    assert problem in str(caught.value)


def test_the_request_is_sglang_native_and_complete() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=[_valid_row([4, 2]), _valid_row([8])])

    samples = _generate(_engine(handler), n=2)
    (body,) = seen
    assert body["input_ids"] == [PROMPT, PROMPT]
    assert body["return_logprob"] is True and body["logprob_start_len"] == -1
    first, second = body["sampling_params"]
    assert first == sglang_sampling_params(SamplingParams(0.7, 0.9, 20, 3, (2,), 5), 0)
    assert (first["sampling_seed"], second["sampling_seed"]) == (5, 6)
    assert first["top_k"] == 20 and first["min_p"] == 0.0 and first["stop_token_ids"] == [2]
    assert [s.token_ids for s in samples] == [(4, 2), (8,)]
    assert samples[0].weight_version == "w0" and samples[0].logprobs == (-0.5, -0.5)


def test_retries_on_503_with_backoff_but_never_on_400() -> None:
    calls: list[float] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(503, text="warming up")
        return httpx.Response(200, json=[_valid_row([1])])

    assert len(_generate(_engine(flaky, retries=3, backoff=0.05))) == 1
    assert len(calls) == 3
    assert calls[2] - calls[1] >= calls[1] - calls[0] >= 0.04  # exponential backoff

    refused: list[int] = []

    def bad_request(request: httpx.Request) -> httpx.Response:
        refused.append(1)
        return httpx.Response(400, json={"error": {"message": "input_ids cannot be empty."}})

    with pytest.raises(InfraError, match=r"refused with HTTP 400.*input_ids cannot be empty"):
        _generate(_engine(bad_request, retries=3, backoff=0.05))
    assert len(refused) == 1

    down: list[int] = []

    def always_503(request: httpx.Request) -> httpx.Response:
        down.append(1)
        return httpx.Response(503)

    with pytest.raises(InfraError, match="failed 3 time"):
        _generate(_engine(always_503, retries=2, backoff=0.01))
    assert len(down) == 3


def test_a_weight_update_the_server_does_not_confirm_raises() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/get_model_info":
            return httpx.Response(200, json={"model_path": "/old", "weight_version": "v0"})
        if request.url.path == "/update_weights_from_disk":
            return httpx.Response(200, json={"success": True, "message": "ok"})
        return httpx.Response(200, json={"status": "ok"})

    async def go() -> None:
        engine = _engine(handler)
        try:
            await engine.update_weights("/new", "v1")
        finally:
            await engine.aclose()

    with pytest.raises(InfraError, match="serves '/old' as 'v0'"):
        run(go())
    assert calls == [
        "/pause_generation",
        "/update_weights_from_disk",
        "/flush_cache",
        "/continue_generation",
        "/get_model_info",
    ]


# ------------------------------------------------------------ against real SGLang


def _real_sglang_available() -> bool:
    try:
        import sglang  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_sglang_available(), reason="needs sglang and a CUDA device")
def test_the_same_client_drives_a_real_sglang_server(tmp_path: Path) -> None:
    import subprocess

    from pivotgym.server.launch import sglang_command, stop_group, wait_healthy
    from tests.server_fixture import free_port
    from tests.tiny_models import tiny_checkpoint

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = sglang_command(
        str(tiny_checkpoint()), port=port, dtype="float32", mem_fraction_static=0.3,
        deterministic=True,
    )  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True)
    try:
        wait_healthy(url, process, timeout=600)
        new_weights = perturbed_checkpoint(tmp_path / "step-1")

        async def go() -> tuple[Any, Any, Any]:
            engine = await SGLangEngine.connect(url)
            try:
                stop = (int(tiny_checkpoint_eos()),)
                sp = SamplingParams(1.0, 1.0, -1, 8, stop, 3)
                first = await engine.generate(PROMPT, 4, sp)
                again = await engine.generate(PROMPT, 4, sp)
                await engine.update_weights(str(new_weights), "step-1")
                return first, again, await engine.generate(PROMPT, 4, sp)
            finally:
                await engine.aclose()

        first, again, after = run(go())
        assert [s.token_ids for s in first] == [s.token_ids for s in again]
        assert all(len(s.logprobs) == len(s.token_ids) for s in first)
        assert {s.weight_version for s in after} == {"step-1"}
    finally:
        stop_group(process)


def tiny_checkpoint_eos() -> int:
    from tests.tiny_models import tiny_tokenizer

    return tiny_tokenizer().eos_token_id
