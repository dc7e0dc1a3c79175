"""The SGLang-compatible CPU server: SGLang's request format in, SGLang's shapes out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from tests.server_fixture import TinyServer, free_port

PROMPT = [5, 17, 42, 99, 7]


@pytest.fixture(scope="module")
def server() -> Any:
    with TinyServer() as tiny:
        yield tiny


def curl_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    out = subprocess.run(
        [
            "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url,
            "-H", "Content-Type: application/json", "-d", json.dumps(body),
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(text)


def test_curl_generate_returns_sglangs_response_shape(server: TinyServer) -> None:
    status, body = curl_json(
        f"{server.url}/generate",
        {
            "input_ids": PROMPT,
            "sampling_params": {"temperature": 0.8, "max_new_tokens": 6, "sampling_seed": 3},
            "return_logprob": True,
            "rid": "req-1",
        },
    )
    assert status == 200
    assert set(body) == {"text", "output_ids", "meta_info"}
    ids, meta = body["output_ids"], body["meta_info"]
    assert isinstance(body["text"], str) and 1 <= len(ids) <= 6
    assert meta["id"] == "req-1"
    assert meta["prompt_tokens"] == len(PROMPT) and meta["completion_tokens"] == len(ids)
    assert meta["weight_version"] == "default"
    finish = meta["finish_reason"]
    if finish["type"] == "length":
        assert finish == {"type": "length", "length": 6}
    else:  # the model's EOS always stops, as in SGLang; the stop token is kept
        assert finish == {"type": "stop", "matched": ids[-1]}
        assert ids[-1] in server.eos_token_ids
    triples = meta["output_token_logprobs"]
    assert [t[1] for t in triples] == ids
    assert all(t[0] <= 0 and t[2] is None for t in triples)


def test_batched_input_ids_with_n_expand_like_sglang(server: TinyServer) -> None:
    short, long = [3, 4], [8, 9, 10, 11]
    body = {
        "input_ids": [short, long],
        "sampling_params": {"max_new_tokens": 3, "n": 2},
        "rid": ["a", "b"],
    }
    response = httpx.post(f"{server.url}/generate", json=body, timeout=60)
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == 4
    # SGLang repeats the whole batch n times: rows go p0, p1, p0, p1.
    assert [r["meta_info"]["prompt_tokens"] for r in rows] == [2, 4, 2, 4]
    assert [r["meta_info"]["id"] for r in rows] == ["a_0", "b_0", "a_1", "b_1"]
    assert all("output_token_logprobs" not in r["meta_info"] for r in rows)  # not asked for


def test_greedy_and_seeded_sampling_repeat(server: TinyServer) -> None:
    def ask(params: dict[str, Any]) -> list[int]:
        body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 8, **params}}
        return httpx.post(f"{server.url}/generate", json=body, timeout=60).json()["output_ids"]

    assert ask({"temperature": 0}) == ask({"temperature": 0})
    assert ask({"sampling_seed": 9}) == ask({"sampling_seed": 9})


def test_stop_token_ids_end_generation_and_stay_in_the_output(server: TinyServer) -> None:
    every_token = list(range(1024))
    body = {
        "input_ids": PROMPT,
        "sampling_params": {"max_new_tokens": 5, "stop_token_ids": every_token},
        "return_logprob": True,
    }
    row = httpx.post(f"{server.url}/generate", json=body, timeout=60).json()
    assert len(row["output_ids"]) == 1
    assert row["meta_info"]["finish_reason"] == {"type": "stop", "matched": row["output_ids"][0]}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"text": "hello"}, "send input_ids"),
        ({"input_ids": []}, "non-empty"),
        ({"input_ids": PROMPT, "sampling_params": {"stop": ["\n"]}}, "stop"),
        ({"input_ids": PROMPT, "sampling_params": {"frequency_penalty": 0.5}}, "frequency_penalty"),
        ({"input_ids": PROMPT, "sampling_params": {"bogus": 1}}, "unsupported sampling_params"),
        (
            {"input_ids": PROMPT, "return_logprob": True, "logprob_start_len": 0},
            "logprob_start_len",
        ),
        ({"input_ids": PROMPT, "sampling_params": {"top_p": 0}}, "top_p"),
    ],
)
def test_requests_it_cannot_honour_are_refused_not_ignored(
    server: TinyServer, body: dict[str, Any], problem: str
) -> None:
    response = httpx.post(f"{server.url}/generate", json=body, timeout=60)
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]


def test_health_and_model_info(server: TinyServer) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/health_generate", timeout=60).status_code == 200
    info = httpx.get(f"{server.url}/get_model_info").json()
    assert info["model_path"] == str(server.checkpoint)
    assert info["is_generation"] is True and info["weight_version"] == "default"
    assert httpx.post(f"{server.url}/flush_cache").status_code == 200


def test_pause_holds_requests_until_continue(server: TinyServer) -> None:
    url = server.url
    assert httpx.post(f"{url}/pause_generation", json={"mode": "retract"}).status_code == 200
    answers: list[httpx.Response] = []
    body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 2}}
    waiting = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{url}/generate", json=body, timeout=60))
    )
    waiting.start()
    time.sleep(0.5)
    assert not answers  # held while paused
    assert httpx.post(f"{url}/continue_generation", json={}).status_code == 200
    waiting.join(timeout=30)
    assert answers and answers[0].status_code == 200
    assert answers[0].json()["meta_info"]["finish_reason"]["type"] in ("stop", "length")


def test_pause_in_abort_mode_aborts_queued_requests(server: TinyServer) -> None:
    url = server.url
    httpx.post(f"{url}/pause_generation", json={"mode": "retract"})
    answers: list[httpx.Response] = []
    body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 2}}
    waiting = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{url}/generate", json=body, timeout=60))
    )
    waiting.start()
    time.sleep(0.3)
    httpx.post(f"{url}/pause_generation", json={"mode": "abort"})
    waiting.join(timeout=30)
    httpx.post(f"{url}/continue_generation", json={})
    row = answers[0].json()
    assert row["output_ids"] == []
    assert row["meta_info"]["finish_reason"]["type"] == "abort"


def test_a_failed_weight_update_reports_success_false(server: TinyServer, tmp_path: Any) -> None:
    response = httpx.post(
        f"{server.url}/update_weights_from_disk",
        json={"model_path": str(tmp_path / "missing"), "weight_version": "never"},
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert httpx.get(f"{server.url}/get_weight_version").json() == {"weight_version": "default"}


def test_serve_command_answers_and_stops_cleanly_on_sigterm(server: TinyServer) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-c", "import sys; from pivotgym.cli import main; sys.exit(main())",
            "serve", "--engine", "torch", "--model", str(server.checkpoint), "--port", str(port),
            "--dtype", "float32",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # Importing torch and transformers in a fresh process can take a minute on a
        # loaded 2-core machine.
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 2}}
        assert httpx.post(f"http://127.0.0.1:{port}/generate", json=body).status_code == 200
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
