"""τ²-bench's own domains in pivotgym: τ²'s tools and DB hashes, reset to any turn,
copy-on-write forks, and τ²'s evaluator, checked against τ²'s own code.

The real recorded simulations in ``../shared/data/tau2`` (20 airline, 40 retail) are
replayed where that folder exists; the other tests build conversations from the gold
actions of the tasks τ²'s package ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tau2.environment.environment", reason="needs pivotgym[tau2]")

import pivotgym
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tau2.domain import GREETING, get_domain
from pivotgym.envs.tau2.env import agent_turns
from pivotgym.envs.tau2.grader import score
from pivotgym.envs.tau2.messages import to_tau2
from pivotgym.envs.tau2.results import load_results
from pivotgym.envs.tau2.tasks import Tau2Task
from pivotgym.errors import DataError, DivergenceError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
RESULTS = sorted(SHARED.glob("*.json")) if SHARED.is_dir() else []


def tool_names(domain: str) -> set[str]:
    return {t["function"]["name"] for t in get_domain(domain).tools}


def call(name: str, arguments: dict, ident: str = "c") -> dict:
    """An assistant message that calls one tool."""
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": ident, "type": "function", "function": function}],
    }


def writes(domain: str, names) -> bool:
    return any(get_domain(domain).tool_type(n) == "write" for n in names)


def reference_hash(domain: str, messages: list[dict]) -> str:
    """τ²'s own database hash after its ``set_state`` of the conversation."""
    environment = get_domain(domain).environment()
    environment.set_state(None, None, to_tau2(messages, tool_names(domain)))
    return environment.get_db_hash()


def gold_trajectory(domain: str, task_model) -> Trajectory:
    """The task's gold actions played through the env, one call a turn, then a message
    that says every piece of information the task wants communicated."""
    task = Tau2Task(domain, task_model)
    env = pivotgym.make("tau2", domain=domain)
    obs, _ = env.reset(options={"task": task})
    messages = list(obs)
    actions = [
        a for a in task_model.evaluation_criteria.actions or [] if a.requestor == "assistant"
    ]
    for i, a in enumerate(actions):
        obs, *_ = env.step(call(a.name, a.arguments, f"g{i}"))
        messages = list(obs)
    said = " ".join(task_model.evaluation_criteria.communicate_info or []) or "Done."
    messages.append({"role": "assistant", "content": f"Here is what I found: {said}"})
    env.close()
    return Trajectory(id=f"gold/{task.name}", env="tau2", task=task.to_json(), messages=messages)


@pytest.fixture(scope="module")
def airline_tasks():
    return get_domain("airline").tasks("train")


def test_the_env_shows_tau2s_tools_and_policy() -> None:
    env = pivotgym.make("tau2", domain="retail")
    names = {t["function"]["name"] for t in env.tools}
    assert {"cancel_pending_order", "get_order_details", "find_user_id_by_email"} <= names
    assert env.mutates("cancel_pending_order", None) and not env.mutates("get_order_details", None)
    policy = get_domain("retail").policy
    env.close()
    assert "retail" in policy.lower() and len(policy) > 1000
    with pytest.raises(DataError, match="τ² has no domain 'shop'"):
        pivotgym.make("tau2", domain="shop")


def test_a_tool_answers_as_tau2_answers_errors_included(airline_tasks) -> None:
    env = pivotgym.make("tau2", domain="airline")
    env.reset(options={"task": Tau2Task("airline", airline_tasks[0])})

    def answer(name, **arguments):
        return env.step(call(name, arguments))[0][-1]["content"]

    assert answer("get_user_details", user_id="nobody") == "Error: User nobody not found"
    direct = get_domain("airline").environment()
    from tau2.data_model.message import ToolCall

    expected = direct.get_response(
        ToolCall(id="c", name="get_reservation_details", arguments={"reservation_id": "4WQ150"})
    ).content
    assert answer("get_reservation_details", reservation_id="4WQ150") == expected
    env.close()


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_every_turn_of_gold_conversations_restores_to_tau2s_hash(domain) -> None:
    tasks = [t for t in get_domain(domain).tasks("train") if t.evaluation_criteria.actions][:6]
    env = pivotgym.make("tau2", domain=domain)
    for model in tasks:
        trajectory = gold_trajectory(domain, model)
        for turn in range(1, trajectory.num_turns + 1):
            env.reset(options={"trajectory": trajectory, "turn": turn})
            assert env.world.db_hash() == reference_hash(domain, trajectory.prefix(turn)), (
                trajectory.id,
                turn,
            )
    # Only the writes were re-executed, each at most once thanks to the cache.
    writes = sum(
        env.mutates(c["function"]["name"], c)
        for model in tasks
        for m in gold_trajectory(domain, model).messages
        for c in m.get("tool_calls") or []
    )
    assert 0 < env.cache.replayed_steps <= writes
    env.close()


def test_forks_share_nothing_they_change_and_leave_the_parent_alone(airline_tasks) -> None:
    names = [{a.name for a in t.evaluation_criteria.actions or []} for t in airline_tasks]
    model = next(t for t, n in zip(airline_tasks, names, strict=True) if "cancel_reservation" in n)
    trajectory = gold_trajectory("airline", model)
    env = pivotgym.make("tau2", domain="airline")
    env.reset(options={"trajectory": trajectory, "turn": 1})
    before = env.world.db_hash()
    cancel = next(a for a in model.evaluation_criteria.actions if a.name == "cancel_reservation")
    branches = env.fork(3)
    action = call("cancel_reservation", cancel.arguments, "x")
    branches[0].step(action)
    assert branches[0].world.db_hash() != before
    assert env.world.db_hash() == before == branches[1].world.db_hash()
    # The branch's state is exactly what τ² reaches by its own replay.
    assert branches[0].world.db_hash() == reference_hash(
        "airline", [*env.messages, action, *branches[0].messages[len(env.messages) + 1 :]]
    )
    for b in branches:
        b.close()
    env.close()


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_tau2s_evaluator_scores_gold_demonstrations_1_and_a_wrong_write_0(domain) -> None:
    tasks = [t for t in get_domain(domain).tasks("train") if t.evaluation_criteria.actions][:3]
    for model in tasks:
        trajectory = gold_trajectory(domain, model)
        task = Tau2Task(domain, model)
        reward, info = score(task, to_tau2(trajectory.messages, tool_names(domain)))
        assert reward == 1.0, (trajectory.id, info)
        # The env's own grader, on the conversation restored to its end, agrees.
        env = pivotgym.make("tau2", domain=domain)
        env.reset(options={"trajectory": trajectory, "turn": trajectory.num_turns})
        assert env.evaluate()[0] == 1.0
        assert env.evaluate(terminated=False)[0] == 0.0  # cut by a limit
        env.close()
        # Without its writes (one call a turn) the database differs from the gold one.
        ids = {
            c["id"]
            for m in trajectory.messages
            for c in m.get("tool_calls") or []
            if writes(domain, [c["function"]["name"]])
        }
        if ids:
            cut = [
                m
                for m in trajectory.messages
                if not ({c["id"] for c in m.get("tool_calls") or []} & ids)
                and m.get("tool_call_id") not in ids
            ]
            assert score(task, to_tau2(cut, tool_names(domain)))[0] == 0.0


def test_the_greeting_is_no_candidate_and_a_strict_replay_that_diverges_fails(
    airline_tasks,
) -> None:
    model = next(
        t
        for t in airline_tasks
        if writes("airline", [a.name for a in t.evaluation_criteria.actions or []])
    )
    trajectory = gold_trajectory("airline", model)
    assert trajectory.action(0)["content"] == GREETING and not agent_turns(trajectory, 0)
    assert agent_turns(trajectory, 1)
    write = next(
        i
        for i, m in enumerate(trajectory.messages)
        if writes("airline", [c["function"]["name"] for c in m.get("tool_calls") or []])
    )
    tampered = [dict(m) for m in trajectory.messages]
    tampered[write + 1]["content"] = "something else"
    bad = Trajectory(id="tampered", env="tau2", task=trajectory.task, messages=tampered)
    env = pivotgym.make("tau2", domain="airline")
    turn = [i for i, m in enumerate(tampered) if m["role"] == "assistant"].index(write) + 1
    with pytest.raises(DivergenceError):
        env.reset(options={"trajectory": bad, "turn": turn})
    env.close()


def test_a_results_file_of_another_shape_names_the_field(tmp_path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps({"timestamp": "", "info": {}, "tasks": [], "simulations": [], "extra": 1})
    )
    with pytest.raises(DataError, match=r"results.json: extra: unknown field 'extra'"):
        load_results(path)
    path.write_text(json.dumps({"info": {"environment_info": {"domain_name": "bakery"}}}))
    with pytest.raises(DataError, match="τ² has no domain 'bakery'"):
        load_results(path)


@pytest.mark.slow  # about 70 s a file: τ²'s reference replay re-parses its database each time
@pytest.mark.skipif(not RESULTS, reason="the shared τ² simulations are not beside this checkout")
@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name.split("_")[1])
def test_real_tau2_simulations_restore_fork_and_score_as_tau2_recorded(path) -> None:
    trajectories = load_results(path)
    domain = trajectories[0].task["domain"]
    env = pivotgym.make("tau2", domain=domain)
    for trajectory in trajectories:
        recorded = trajectory.metadata["reward_info"]
        task = env.resolve_task(trajectory)
        reward, info = score(task, to_tau2(trajectory.messages, tool_names(domain)))
        assert (reward, info["db_match"]) == (recorded["reward"], recorded["db_check"]["db_match"])
        for turn in range(0, trajectory.num_turns + 1, 3):
            env.reset(options={"trajectory": trajectory, "turn": turn})
            assert env.world.db_hash() == reference_hash(domain, trajectory.prefix(turn))
    env.close()


def test_a_write_copies_only_what_it_touches_and_never_the_shared_state(airline_tasks) -> None:
    domain = get_domain("airline")
    pristine = domain.pristine.tools.db
    before = domain.pristine.get_db_hash()
    env = pivotgym.make("tau2", domain="airline")
    env.reset(options={"task": Tau2Task("airline", airline_tasks[0])})
    env.step(call("send_certificate", {"user_id": "mia_li_3668", "amount": 100}))
    db = env.world.db
    shared = sum(db.users[k] is pristine.users[k] for k in pristine.users)
    assert shared == len(pristine.users) - 1  # the one user paid, copied; the rest shared
    assert all(db.flights[k] is pristine.flights[k] for k in pristine.flights)
    assert domain.pristine.get_db_hash() == before != env.world.db_hash()
    env.close()


def test_a_bad_task_in_a_results_file_names_its_own_field(tmp_path) -> None:
    path = tmp_path / "results.json"
    info = {"environment_info": {"domain_name": "airline"}}
    path.write_text(json.dumps({"info": info, "tasks": [{"id": "1", "user_scenario": 3}]}))
    with pytest.raises(DataError, match=r"results.json: tasks\[0\]\.user_scenario"):
        load_results(path)


def test_telecom_forks_and_writes_leave_the_parent_and_the_package_data_alone() -> None:
    domain = get_domain("telecom")
    pristine = (domain.pristine.get_db_hash(), domain.pristine.get_user_db_hash())
    env = pivotgym.make("tau2", domain="telecom")
    changed = 0
    for model in domain.tasks("small")[:6]:
        env.reset(options={"task": Tau2Task("telecom", model)})  # runs its initial actions
        before = env.world.digest()
        branches = env.fork(2)
        gold = [a for a in model.evaluation_criteria.actions or [] if a.requestor == "assistant"]
        for i, a in enumerate(gold):
            branches[0].step(call(a.name, a.arguments, f"c{i}"))
        assert env.world.digest() == before == branches[1].world.digest()
        changed += branches[0].world.digest() != before
        for b in branches:
            b.close()
    assert changed  # some gold writes changed their branch, and only it
    assert (domain.pristine.get_db_hash(), domain.pristine.get_user_db_hash()) == pristine
    env.close()


def test_a_task_that_starts_mid_conversation_opens_with_its_history_applied() -> None:
    from pivotgym.envs.tau2.expert import demonstrate
    from pivotgym.envs.tau2.results import history_trajectory
    from pivotgym.envs.tau2.tasks import task_from_json

    model = next(t for t in get_domain("retail").tasks("train") if t.id == "0")
    env = pivotgym.make("tau2", domain="retail")
    recorded = env_run(demonstrate(env, Tau2Task("retail", model), 0))
    # The whole conversation, its write included, as the history the task starts from.
    history = to_tau2(recorded.messages, tool_names("retail"))
    data = Tau2Task("retail", model).to_json()
    data["task"]["initial_state"] = {
        "message_history": [m.model_dump(mode="json") for m in history]
    }
    task = task_from_json(data, "task")
    obs, _ = env.reset(options={"task": task})
    said = [(m["role"], m.get("content")) for m in recorded.messages]
    assert [(m["role"], m.get("content")) for m in obs] == said  # call ids aside
    expected = reference_hash("retail", recorded.messages)
    assert env.world.db_hash() == expected != get_domain("retail").pristine.get_db_hash()
    # As a trajectory, every turn of the history restores to τ²'s hash of its prefix.
    trajectory = history_trajectory(task)
    for turn in range(trajectory.num_turns + 1):
        env.reset(options={"trajectory": trajectory, "turn": turn})
        assert env.world.db_hash() == reference_hash("retail", trajectory.prefix(turn))
    # A history whose recorded write result was tampered with does not replay.
    write = 1 + next(
        i for i, m in enumerate(history)
        if m.role == "assistant" and "exchange" in str(m.tool_calls)
    )  # fmt: skip
    data["task"]["initial_state"]["message_history"][write]["content"] = "{}"
    with pytest.raises(DataError, match="message history does not replay"):
        env.reset(options={"task": task_from_json(data, "task")})
    env.close()


def env_run(coroutine):
    from pivotgym.core.env import run_sync

    return run_sync(coroutine)
