"""What every environment promises, in-process and behind the env server alike: reset to
any turn of a recorded trajectory, fork into branches that share nothing, step with
Gymnasium's five values, finish a recorded episode with its reward, close twice; and the
env's own verifier judges the same in-process and on the server.

Each env plays its first bundled train trajectory of at least three turns; the served
variant is the same env through :class:`~pivotgym.remote.RemoteEnv` and a server on
loopback.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

import pytest
from server_fixture import free_port

import pivotgym
from pivotgym.core.candidates import Candidate
from pivotgym.core.env import run_sync
from pivotgym.core.registry import get_spec
from pivotgym.remote import RemoteEnv, ServedVerifier
from pivotgym.server.env_app import build_env_app
from pivotgym.server.env_sessions import EnvService, ServiceLimits
from pivotgym.verifiers import get_verifier
from pivotgym.verifiers.base import restore


def _unavailable(env: str) -> str | None:
    if env == "tau2" and importlib.util.find_spec("tau2") is None:
        return "needs pivotgym[tau2]"
    if env == "browser":
        from pivotgym.envs.browser.runtime import unavailable

        return unavailable()
    return None


ENVS = ["terminal", "tools", "tau2", "swe", "browser"]
CASES = [
    pytest.param((env, where), id=f"{env}-{where}", marks=pytest.mark.skipif(
        _unavailable(env) is not None, reason=str(_unavailable(env))))
    for env in ENVS for where in ("local", "served")
]  # fmt: skip


@pytest.fixture(scope="module")
def server_url():
    import uvicorn

    port = free_port()
    app = build_env_app(EnvService(ServiceLimits(max_sessions=32)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture(params=CASES)
def case(request, server_url):
    env_name, where = request.param
    trajectory = next(t for t in pivotgym.load_trajectories(env_name, split="train")
                      if t.num_turns >= 3)  # fmt: skip
    made: list[Any] = []

    def make() -> Any:
        env = (pivotgym.make(env_name, tasks=[]) if where == "local"
               else RemoteEnv(server_url, env_name))  # fmt: skip
        made.append(env)
        return env

    yield make, trajectory
    for env in made:
        env.close()


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def test_reset_to_any_turn_gives_the_recorded_conversation(case) -> None:
    make, trajectory = case
    env = make()
    for turn in (0, 1, trajectory.num_turns - 1):
        observation, info = env.reset(options={"trajectory": trajectory, "turn": turn})
        prefix = trajectory.prefix(turn)
        assert roles(observation) == roles(prefix) and observation[:2] == prefix[:2]
        assert info["turn"] == turn and env.tools


def test_forks_share_nothing_with_their_parent_or_each_other(case) -> None:
    make, trajectory = case
    env = make()
    env.reset(options={"trajectory": trajectory, "turn": 1})
    before = [dict(m) for m in env.messages]
    first, second = env.fork(2)
    first.step(trajectory.action(1))
    assert len(first.messages) > len(before)
    assert second.messages == before and env.messages == before
    second.step(trajectory.action(1))
    assert roles(second.messages) == roles(first.messages)
    for branch in (first, second):
        branch.close()


def test_a_recorded_episode_replays_to_its_end_with_its_reward(case) -> None:
    make, trajectory = case
    env = make()
    env.reset(options={"trajectory": trajectory, "turn": 0})
    for turn in range(trajectory.num_turns):
        observation, reward, terminated, truncated, info = env.step(trajectory.action(turn))
        assert isinstance(reward, float) and {"turn", "calls", "infra_error"} <= set(info)
        assert not info["infra_error"]
        if terminated or truncated:
            break
    assert terminated and not truncated and reward == 1.0
    assert env.evaluate()[0] == 1.0
    env.close()
    env.close()  # closing again is no error


ENV_CASES = [
    pytest.param(env, marks=pytest.mark.skipif(
        _unavailable(env) is not None, reason=str(_unavailable(env))))
    for env in ENVS
]  # fmt: skip


@pytest.mark.parametrize("env_name", ENV_CASES)
def test_the_envs_own_verifier_judges_alike_in_process_and_served(env_name, server_url) -> None:
    trajectory = next(t for t in pivotgym.load_trajectories(env_name, split="train")
                      if t.num_turns >= 3)  # fmt: skip
    spec = get_spec(env_name)
    candidate = Candidate.of(trajectory, 1)
    # The expert's own action, and another turn's (another command, click or call).
    actions = [candidate.reference, trajectory.action(trajectory.num_turns - 1)]
    judged = []
    for env, verifier in (
        (pivotgym.make(env_name, tasks=[]), get_verifier(spec.verifier, **spec.verifier_options)),
        (RemoteEnv(server_url, env_name), ServedVerifier(spec.verifier, **spec.verifier_options)),
    ):
        try:
            judged.append(run_sync(_judge(env, verifier, candidate, actions)))
        finally:
            env.close()
    (local, local_reasons), (served, _) = judged
    assert local[0] == 1.0 and served == local, local_reasons


async def _judge(env, verifier, candidate, actions) -> tuple[list[float], list[str]]:
    state = await restore(env, candidate)
    verdicts = await verifier.verify_many(state, actions, candidate.reference)
    assert not any(v.infra_error for v in verdicts), verdicts
    return [v.reward for v in verdicts], [v.reason for v in verdicts]
