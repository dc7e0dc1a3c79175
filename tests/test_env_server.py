"""The environment server and its client: a remote env is a local one over HTTP, and the
server's operations (tokens, quotas, slots, leases, bodies, step ids, a kill) hold."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_checks import leftovers
from server_fixture import free_port
from taskdirs import make_task

import pivotgym
from pivotgym.errors import DataError, DivergenceError, InfraError
from pivotgym.remote import RemoteEnv, Transport
from pivotgym.remote.wire import RemoteError
from pivotgym.runs.config import load_config
from pivotgym.runs.pivotrl import PivotRL
from pivotgym.server.env_app import build_env_app
from pivotgym.server.env_sessions import EnvService, ServiceLimits

TOKEN = "t0ken-for-the-tests-0123456789"
OTHER = "another-token-of-the-tests-987654"
REPO = Path(__file__).resolve().parent.parent


class EnvServer:
    """``with EnvServer(limits) as server:`` serves the environments at ``server.url``,
    under uvicorn on a thread of the test process."""

    def __init__(self, limits: ServiceLimits | None = None, tokens: tuple[str, ...] = ()):
        import uvicorn

        self.service = EnvService(limits or ServiceLimits())
        self.url = f"http://127.0.0.1:{free_port()}"
        app = build_env_app(self.service, tokens=tokens, max_body_bytes=1 << 20)
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                access_log=False)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> EnvServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)


def bash(command: str, call_id: str = "c0") -> dict[str, Any]:
    arguments = json.dumps({"command": command})
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": arguments}}
    ]}  # fmt: skip


@pytest.fixture(scope="module")
def trajectory():
    return next(t for t in pivotgym.load_trajectories("terminal", split="train")
                if t.num_turns >= 4)  # fmt: skip


@pytest.fixture(scope="module")
def server():
    with EnvServer(ServiceLimits(max_sessions=6, max_sessions_per_token=6)) as running:
        yield running


def test_a_remote_env_resets_steps_forks_and_grades_as_a_local_one(server, trajectory) -> None:
    local = pivotgym.make("terminal", tasks=[])
    remote = RemoteEnv(server.url, "terminal")
    try:
        for env in (local, remote):
            env.reset(options={"trajectory": trajectory, "turn": 2})
        assert remote.messages == local.messages and remote.tools == local.tools
        action = trajectory.action(2)
        got = [env.step(action) for env in (local, remote)]
        assert got[1][0] == got[0][0] and got[1][1:4] == got[0][1:4]
        assert got[1][4]["calls"][0]["exit_code"] == got[0][4]["calls"][0]["exit_code"]
        # Forks are sessions of their own: what one branch does the others do not see.
        branches = remote.fork(2)
        branches[0].step(bash("echo branch-zero > /tmp/mark"))
        branches[1].step(bash("cat /tmp/mark 2>&1 || echo absent"))
        assert "absent" in branches[1].messages[-1]["content"]
        remote.step(bash("cat /tmp/mark 2>&1 || echo absent"))
        assert "absent" in remote.messages[-1]["content"]
        assert remote.evaluate() == local.evaluate()
        for branch in branches:
            branch.close()
    finally:
        local.close()
        remote.close()
    assert server.service.sessions == {}


def test_a_fresh_task_travels_to_the_server_and_plays_as_here(server, tmp_path: Path) -> None:
    task = pivotgym.load_task(make_task(tmp_path))
    local = pivotgym.make("terminal", tasks=[task])
    remote = RemoteEnv(server.url, "terminal", tasks=[task])
    try:
        for env in (local, remote):
            env.reset(seed=3)
            env.step(bash("wc -l < data.txt > count.txt"))
        assert remote.messages == local.messages
        assert remote.evaluate()[0] == local.evaluate()[0] == 1.0
    finally:
        local.close()
        remote.close()


def test_errors_come_back_as_the_local_api_raises_them(server, trajectory) -> None:
    local = pivotgym.make("terminal", tasks=[])
    remote = RemoteEnv(server.url, "terminal")
    try:
        errors = []
        for env in (local, remote):
            with pytest.raises(DataError) as raised:
                env.reset(options={"trajectory": trajectory, "turn": 99})
            errors.append((str(raised.value), raised.value.field))
        assert errors[0] == errors[1] and errors[0][1] == "options.turn"
        # A first command whose output is not the recorded one (and whose state no cache
        # holds): replay diverges at turn 0.
        changed = json.loads(json.dumps(trajectory.to_json()))
        first = next(m for m in changed["messages"] if m["role"] == "assistant")
        first["tool_calls"][0]["function"]["arguments"] = json.dumps({"command": "echo other"})
        with pytest.raises(DivergenceError) as raised:
            remote.reset(options={"trajectory": changed, "turn": 2})
        assert raised.value.turn == 0 and raised.value.trajectory_id == trajectory.id
        remote.reset(options={"trajectory": trajectory, "turn": 1})
        with pytest.raises(DataError, match="one assistant message") as raised:
            remote.step({"role": "user", "content": "hello"})
        assert raised.value.field == "action"
    finally:
        local.close()
        remote.close()


def test_a_retried_step_returns_its_first_answer_and_runs_once(server, trajectory) -> None:
    remote = RemoteEnv(server.url, "terminal")
    remote.reset(options={"trajectory": trajectory, "turn": 1})
    url = f"{server.url}/v1/sessions/{remote.session}/step"
    body = {"action": bash("echo x >> /tmp/count; wc -l < /tmp/count"), "step_id": "s-1"}
    first = httpx.post(url, json=body, timeout=60).json()
    again = httpx.post(url, json=body, timeout=60).json()
    assert again == first and first["tail"][-1]["content"].strip().endswith("1")
    body["step_id"] = "s-2"
    assert httpx.post(url, json=body, timeout=60).json()["tail"][-1]["content"].strip()[-1] == "2"
    remote.close()


def test_tokens_quotas_slots_bodies_and_unknown_sessions_are_refused_clearly(trajectory) -> None:
    limits = ServiceLimits(max_sessions=3, max_sessions_per_token=2, retry_after_s=7)
    with EnvServer(limits, tokens=(TOKEN, OTHER)) as served:
        url = served.url
        make = {"env": "terminal"}

        def post(path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return httpx.post(url + path, headers=headers, timeout=60, **kw)

        assert post("/v1/sessions", None, json=make).json()["error"]["kind"] == "auth"
        assert post("/v1/sessions", "wrong-token-1234567890", json=make).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        mine = [post("/v1/sessions", json=make).json()["session"] for _ in range(2)]
        quota = post("/v1/sessions", json=make)
        assert quota.status_code == 403 and quota.json()["error"]["kind"] == "quota"
        theirs = post("/v1/sessions", OTHER, json=make).json()["session"]
        full = post("/v1/sessions", OTHER, json=make)
        assert full.status_code == 429 and full.headers["retry-after"] == "7"
        # Another token's session is not there for this one.
        other = post(f"/v1/sessions/{theirs}/evaluate", json={})
        assert other.status_code == 404
        bad = post(f"/v1/sessions/{mine[0]}/reset", content=b"{not json")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
        huge = post(f"/v1/sessions/{mine[0]}/reset", content=b"x" * (2 << 20))
        assert huge.status_code == 413 and huge.json()["error"]["kind"] == "too_large"
        unknown = post(f"/v1/sessions/{uuid.uuid4().hex}/step", json={})
        assert unknown.status_code == 404 and unknown.json()["error"]["kind"] == "not_found"
        nowhere = post("/v1/nothing-here").json()["error"]
        assert nowhere["message"] == "no such route: /v1/nothing-here"
        wrong = post(f"/v1/sessions/{mine[0]}/reset", json={"trajectory": {"dataset": "terminal",
                     "split": "train", "id": trajectory.id}, "turn": "two"})  # fmt: skip
        assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "turn"
        # None of it hurt the sessions that were there.
        env = RemoteEnv(url, "terminal", token=TOKEN)
        httpx.delete(f"{url}/v1/sessions/{mine[1]}", headers={"authorization": f"Bearer {TOKEN}"})
        env.reset(options={"trajectory": trajectory, "turn": 1})
        env.step(bash("echo still-here"))
        assert "still-here" in env.messages[-1]["content"]
        metrics = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
        assert 'pivotgym_env_rejected_total{reason="quota"} 1' in metrics
        assert TOKEN not in metrics and OTHER not in metrics
        env.close()


def test_a_session_no_call_touches_expires_and_its_sandbox_is_reaped(trajectory) -> None:
    with EnvServer(ServiceLimits(lease_s=1.0)) as served:
        env = RemoteEnv(served.url, "terminal")
        env.reset(options={"trajectory": trajectory, "turn": 1})
        env.step(bash("echo kept > /tmp/kept"))
        sandbox = served.service.sessions[env.session].env.sandbox
        files = sandbox.host_dir("/tmp")
        assert (files / "kept").exists()
        deadline = time.monotonic() + 20
        while served.service.sessions and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served.service.sessions == {}
        assert sandbox.closed and not files.exists()
        with pytest.raises(RemoteError, match="expired") as raised:
            env.evaluate()
        assert raised.value.kind == "expired"
        # A step on it is an infrastructure failure of the episode, not a reward of 0.
        _, reward, terminated, truncated, info = env.step(bash("true"))
        assert truncated and not terminated and reward == 0.0 and "expired" in info["infra_error"]
        env.close()  # closing what expired is no error
        # An env idle past its lease resets as any env does: on a new session.
        idle = RemoteEnv(served.url, "terminal")
        idle.reset(options={"trajectory": trajectory, "turn": 1})
        first = idle.session
        time.sleep(2.5)
        idle.reset(options={"trajectory": trajectory, "turn": 2})
        assert idle.session != first and idle.messages == trajectory.prefix(2)
        idle.close()


def _serve(runtime: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PIVOTGYM_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pivotgym.cli", "serve-envs", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the env server did not start: {process.stdout.read()}")


@pytest.fixture
def runtime():
    """A runtime folder of a served process's own, which the sandboxes' user can pass."""
    folder = Path(tempfile.mkdtemp(prefix="pivotgym-served-", dir="/tmp"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_server_fails_its_episodes_as_infrastructure_and_leaves_nothing(
    trajectory, runtime: Path
) -> None:
    port = free_port()
    server = _serve(runtime, port)
    try:
        env = RemoteEnv(f"http://127.0.0.1:{port}", "terminal")
        env.transport.retries = 2
        env.reset(options={"trajectory": trajectory, "turn": 1})
        env.step(bash("sleep 1000 & true"))
        assert list(runtime.rglob("sandboxes/*.owner"))
        server.send_signal(signal.SIGKILL)
        server.wait()
        _, reward, terminated, truncated, info = env.step(bash("true"))
        assert truncated and reward == 0.0 and "unreachable" in info["infra_error"]
        with pytest.raises(InfraError):
            env.evaluate()
        # Its next start reaps what the killed one left.
        server = _serve(runtime, port)
        assert list(runtime.rglob("sandboxes/*")) == []
        assert leftovers("sleep 1000") == []
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


def test_profiling_behind_the_server_finds_the_same_pivots_as_in_process(
    server, tmp_path: Path
) -> None:
    found = []
    for where, url in (("local", ""), ("served", server.url)):
        config = load_config(overrides=[
            f"out='{tmp_path / where}'", f"env_url='{url}'", "data.max_candidates=6",
            "profile.k=4", "seed=5",
        ])  # fmt: skip
        run = PivotRL(config)
        pool = run.candidates()
        rows = asyncio.run(run.profile(pool))
        pivots = run.select(rows, pool)
        found.append(([(r["candidate_id"], r["rewards"]) for r in rows], [p.id for p in pivots]))
        assert not any(any(r["infra"]) for r in rows), rows
    assert found[0] == found[1]
    assert server.service.sessions == {}


def test_sigterm_lets_the_step_in_flight_finish_then_closes_every_session(
    trajectory, runtime: Path
) -> None:
    port = free_port()
    server = _serve(runtime, port)
    try:
        env = RemoteEnv(f"http://127.0.0.1:{port}", "terminal")
        env.reset(options={"trajectory": trajectory, "turn": 1})
        idle = RemoteEnv(f"http://127.0.0.1:{port}", "terminal")
        idle.reset(options={"trajectory": trajectory, "turn": 1})
        answers: list[Any] = []
        stepping = threading.Thread(
            target=lambda: answers.append(env.step(bash("sleep 2; echo slept")))
        )
        stepping.start()
        time.sleep(1)
        server.send_signal(signal.SIGTERM)
        stepping.join(timeout=60)
        assert "slept" in answers[0][0][-1]["content"] and not answers[0][4]["infra_error"]
        assert server.wait(timeout=60) == 0
        assert list(runtime.rglob("sandboxes/*")) == []
    finally:
        if server.poll() is None:
            server.kill()


def test_256_sessions_at_once_step_without_a_failure(trajectory) -> None:
    with EnvServer(ServiceLimits(max_sessions=256)) as served:

        async def everything() -> list[Any]:
            transport = Transport(served.url)

            async def one(i: int) -> str:
                env = RemoteEnv(transport, "terminal")
                try:
                    await env.areset(options={"trajectory": trajectory, "turn": 1})
                    *_, info = await env.astep(bash(f"echo session-{i}"))
                    assert not info["infra_error"], info
                    return env.messages[-1]["content"]
                finally:
                    await env.aclose()

            try:
                return await asyncio.gather(*(one(i) for i in range(256)),
                                            return_exceptions=True)  # fmt: skip
            finally:
                await transport.aclose()

        outputs = asyncio.run(everything())
        failures = [o for o in outputs if isinstance(o, BaseException)]
        assert not failures, failures[:3]
        assert all(f"session-{i}" in out for i, out in enumerate(outputs))
        assert served.service.sessions == {}


def test_the_client_waits_out_a_full_server_and_one_not_up_yet(trajectory) -> None:
    with EnvServer(ServiceLimits(max_sessions=1, retry_after_s=1)) as served:
        first = RemoteEnv(served.url, "terminal")
        first.reset(options={"trajectory": trajectory, "turn": 1})
        second = RemoteEnv(served.url, "terminal")
        threading.Timer(1.5, first.close).start()
        start = time.monotonic()
        second.reset(options={"trajectory": trajectory, "turn": 1})  # 429s, then a slot
        assert time.monotonic() - start >= 1.0
        assert served.service.metrics.counters[("rejected_total", 'reason="busy"')] >= 1
        second.close()
    # A server that comes up while the client retries.
    late = EnvServer()
    env = RemoteEnv(late.url, "terminal")
    threading.Timer(0.5, late.__enter__).start()
    try:
        env.reset(options={"trajectory": trajectory, "turn": 1})
        assert env.messages == trajectory.prefix(1)
    finally:
        env.close()
        late.__exit__()


def test_serving_beyond_loopback_needs_tokens_and_tokens_are_read_with_care(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from pivotgym.cli import main
    from pivotgym.server.launch import read_tokens

    monkeypatch.delenv("PIVOTGYM_ENV_TOKENS", raising=False)
    assert main(["serve-envs", "--host", "0.0.0.0"]) == 2
    assert "needs tokens" in capsys.readouterr().err
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the trainers\n{TOKEN}\n\n{OTHER}\n")
    monkeypatch.setenv("PIVOTGYM_ENV_TOKENS", "from-the-environment-0123456789")
    assert read_tokens(tokens) == ["from-the-environment-0123456789", TOKEN, OTHER]
    tokens.write_text("tiny-secret\n")
    assert main(["serve-envs", "--tokens", str(tokens)]) == 2
    err = capsys.readouterr().err
    assert "at least 16 characters" in err and "tiny-secret" not in err  # never printed


def test_resets_of_one_task_go_to_one_server_of_several_and_forks_stay_there() -> None:
    trajectories = pivotgym.load_trajectories("terminal", split="train")[:12]
    with EnvServer() as first, EnvServer() as second:
        servers = {first.url: first, second.url: second}
        env = RemoteEnv([first.url, second.url], "terminal")
        try:
            where = {}
            for trajectory in trajectories:
                env.reset(options={"trajectory": trajectory, "turn": 1})
                where[trajectory.id] = env.url
            assert set(where.values()) == set(servers)  # the tasks are spread
            for trajectory in trajectories[:4]:  # and each comes back to its server
                cache = servers[where[trajectory.id]].service.caches[("anyone", "terminal")]
                hits = cache.hits
                env.reset(options={"trajectory": trajectory, "turn": 1})
                assert env.url == where[trajectory.id] and cache.hits > hits
            (branch,) = env.fork(1)
            assert branch.url == env.url and branch.session in servers[env.url].service.sessions
            branch.close()
        finally:
            env.close()


def test_a_client_reaches_nothing_of_the_server_beyond_its_sandboxes(
    server, trajectory, tmp_path: Path
) -> None:
    url = server.url
    env = RemoteEnv(url, "terminal")
    env.reset(options={"trajectory": trajectory, "turn": 1})
    session = f"{url}/v1/sessions/{env.session}"
    marker = tmp_path / "ran"

    def refused(path: str, body: dict[str, Any], field: str | None) -> str:
        answer = httpx.post(path, json=body, timeout=60)
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["kind"] == "data", error
        assert error["field"] == field, error
        return error["message"]

    # No verifier but the env's own: a module path would be code run on the host.
    assert "own verifier" in refused(
        f"{session}/verify",
        {
            "verifier": "subprocess:run",
            "options": {"args": ["touch", str(marker)]},
            "trajectory": {"inline": trajectory.to_json()},
            "turn": 1,
            "actions": [trajectory.action(1)],
            "reference": trajectory.action(1),
        },
        "verifier",
    )
    assert not marker.exists()
    # No task by a path on the server, no repository by its folder there, no network.
    by_path = dict(trajectory.to_json(), task=str(tmp_path))
    refused(f"{session}/reset", {"trajectory": {"inline": by_path}, "turn": 0}, "trajectory.task")
    local_repo = {"instance_id": "x", "repo": "r", "repo_path": str(tmp_path),
                  "problem_statement": "p", "FAIL_TO_PASS": [], "PASS_TO_PASS": []}  # fmt: skip
    swe = httpx.post(f"{url}/v1/sessions", json={"env": "swe"}, timeout=60).json()["session"]
    refused(f"{url}/v1/sessions/{swe}/reset", {"task": {"json": local_repo}},
            "task.json.repo_path")  # fmt: skip
    online = json.loads(json.dumps(trajectory.task))
    online.setdefault("config", {}).setdefault("environment", {})["allow_internet"] = True
    refused(f"{session}/reset", {"task": {"json": online}}, "task.json.config")
    escape = dict(trajectory.task, name="../../escaped")
    refused(f"{session}/reset", {"task": {"json": escape}}, "task.name")
    # No dataset but the server's registered ones.
    assert "unknown environment" in refused(f"{session}/reset", {
        "trajectory": {"dataset": str(tmp_path / "t.jsonl"), "split": "x", "id": "y"},
        "turn": 0}, None)  # fmt: skip
    # The sandboxes' backend and limits are the operator's.
    for option in ("memory_mb", "sandbox"):
        made = httpx.post(
            f"{url}/v1/sessions",
            json={
                "env": "terminal",
                "options": {option: 10**6 if option == "memory_mb" else "docker"},
            },
            timeout=60,
        ).json()
        assert made["error"]["field"] == option
    bad = httpx.post(f"{url}/v1/sessions", json={"env": "terminal", "options": {"cache": 1}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "cache"
    httpx.delete(f"{url}/v1/sessions/{swe}")
    env.close()


def test_a_retried_make_or_fork_makes_nothing_twice_and_too_big_a_fork_is_final(
    server, trajectory
) -> None:
    url = server.url
    body = {"env": "terminal", "request_id": "make-1"}
    first = httpx.post(f"{url}/v1/sessions", json=body, timeout=60).json()["session"]
    assert httpx.post(f"{url}/v1/sessions", json=body, timeout=60).json()["session"] == first
    session = f"{url}/v1/sessions/{first}"
    reset = {"trajectory": {"inline": trajectory.to_json()}, "turn": 1}
    httpx.post(f"{session}/reset", json=reset, timeout=60).raise_for_status()
    fork = {"n": 2, "request_id": "fork-1"}
    children = httpx.post(f"{session}/fork", json=fork, timeout=60).json()["sessions"]
    assert httpx.post(f"{session}/fork", json=fork, timeout=60).json()["sessions"] == children
    assert len(server.service.sessions) == 3
    huge = httpx.post(f"{session}/fork", json={"n": 1000}, timeout=60)
    assert huge.status_code == 403 and huge.json()["error"]["kind"] == "quota"
    for ident in (first, *children):
        httpx.delete(f"{url}/v1/sessions/{ident}")
    assert server.service.sessions == {}
