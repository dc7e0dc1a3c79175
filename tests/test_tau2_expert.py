"""The τ² env's conversations and the data PivotRL trains on: the scripted user played
from τ²'s scenarios, the expert that solves τ²'s train tasks with grounded calls, the
one-turn verifier, the data build, and a PivotRL run on τ², all on the tasks that τ²'s
package ships."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("tau2.environment.environment", reason="needs pivotgym[tau2]")

import pivotgym
from pivotgym.cli import main
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.core.trajectory import Trajectory, dumps
from pivotgym.envs.tau2 import build
from pivotgym.envs.tau2.domain import GREETING, get_domain
from pivotgym.envs.tau2.env import Tau2Env
from pivotgym.envs.tau2.expert import ExpertError, demonstrate
from pivotgym.envs.tau2.grader import score
from pivotgym.envs.tau2.grounding import leaves, must_ground
from pivotgym.envs.tau2.messages import to_tau2
from pivotgym.envs.tau2.tasks import Tau2Task, encode_tasks
from pivotgym.envs.tau2.user import STOP, TRANSFER, ScriptedUser, first_person
from pivotgym.envs.tau2.verifier import Tau2Verifier
from pivotgym.errors import DataError
from pivotgym.runs.config import load_config
from pivotgym.verifiers.base import State


def task(domain: str, task_id: str) -> Tau2Task:
    return Tau2Task(domain, next(t for t in get_domain(domain).tasks() if t.id == task_id))


def expert(domain: str, task_id: str, seed: int = 0) -> Trajectory:
    env = Tau2Env(domain=domain)
    try:
        return asyncio.run(demonstrate(env, task(domain, task_id), seed))
    finally:
        env.close()


def say(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_first_person_turns_the_scenario_into_the_users_voice() -> None:
    assert first_person("You want to cancel your trip.") == "I want to cancel my trip."
    assert first_person("You're sure the agent told you so.") == "I'm sure the agent told me so."
    assert first_person("It allows you to bring bags.") == "It allows me to bring bags."


def test_the_scripted_user_opens_answers_confirms_and_stops() -> None:
    env = pivotgym.make("tau2", domain="airline")
    obs, _ = env.reset(options={"task": task("airline", "0")})
    assert [m["role"] for m in obs] == ["system", "assistant", "user"]
    assert obs[1]["content"] == GREETING
    # The reason for the call, in the first person, without the simulator's directions.
    assert "I want to cancel reservation EHGLP3" in obs[2]["content"]
    obs, reward, terminated, truncated, _ = env.step(say("Could you tell me your user ID?"))
    assert obs[-1]["content"] == "My user id is emma_kim_9957." and not (terminated or truncated)
    # Unknown to the scenario: said so, not invented.
    obs, *_ = env.step(say("And what is your email address?"))
    assert "email" in obs[-1]["content"] and "@" not in obs[-1]["content"]
    obs, *_ = env.step(say("I will cancel reservation EHGLP3. Shall I proceed?"))
    assert obs[-1]["content"].startswith("Yes")
    obs, reward, terminated, _, info = env.step(
        say("I'm sorry, our policy does not allow cancelling it.")
    )
    assert STOP in obs[-1]["content"] and terminated
    assert reward == 1.0 and info["test"]["db_match"]  # nothing changed, as the gold has it
    env.close()


def test_a_user_the_agent_ignores_asks_again_then_gives_up() -> None:
    user, t = ScriptedUser(), task("retail", "0")
    messages = [say(GREETING)]
    opening, _ = user.answer(t, messages)
    messages.append({"role": "user", "content": opening})
    replies = []
    for _ in range(3):
        messages.append(say("Hello."))
        text, stop = user.answer(t, messages)
        messages.append({"role": "user", "content": text})
        replies.append((text, stop))
    assert [stop for _, stop in replies] == [False, False, True]
    assert "#W2378156" in replies[0][0] and STOP in replies[2][0]
    transfer = user.answer(t, [*messages, say("YOU ARE BEING TRANSFERRED TO A HUMAN AGENT.")])
    assert transfer == (TRANSFER, True)


@pytest.mark.parametrize(
    ("domain", "task_id"), [("airline", "9"), ("retail", "0"), ("retail", "24")]
)
def test_the_expert_solves_tasks_with_grounded_calls_and_tau2_scores_it_1(domain, task_id) -> None:
    trajectory = expert(domain, task_id)
    model = task(domain, task_id)
    tools = {t["function"]["name"] for t in get_domain(domain).tools}
    reward, info = score(model, to_tau2(trajectory.messages, tools))
    assert reward == 1.0, info
    said = ""
    for m in trajectory.messages[2:]:
        for call in m.get("tool_calls") or []:
            # τ²'s policies: one call a turn, and no identifier the agent was not shown.
            assert len(m["tool_calls"]) == 1 and m["content"] is None
            for value in leaves(json.loads(call["function"]["arguments"])):
                if must_ground(value) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    assert value.lower() in said, (call, value)
        if m["role"] in ("user", "tool"):
            said += m["content"].lower()
    assert trajectory.messages[-1]["role"] == "user" and STOP in trajectory.messages[-1]["content"]


def test_expert_trajectories_rebuild_bit_for_bit_and_restore_to_tau2s_hash() -> None:
    first, again = expert("retail", "0", seed=3), expert("retail", "0", seed=3)
    assert dumps(first) == dumps(again)
    assert dumps(expert("retail", "0", seed=4)) != dumps(first)  # another wording
    env = pivotgym.make("tau2", domain="retail")
    tools = {t["function"]["name"] for t in env.tools}
    for turn in range(1, first.num_turns + 1):
        env.reset(options={"trajectory": first, "turn": turn})
        reference = get_domain("retail").environment()
        reference.set_state(None, None, to_tau2(first.prefix(turn), tools))
        assert env.world.db_hash() == reference.get_db_hash()
    # Restored anywhere, the conversation goes on exactly as recorded: the user too.
    turn = first.num_turns - 1
    env.reset(options={"trajectory": first, "turn": turn})
    obs, *_ = env.step(first.action(turn))
    assert obs == first.messages
    env.close()


def test_a_task_the_expert_cannot_ground_fails_naming_the_value() -> None:
    with pytest.raises(ExpertError, match="'NY' is not grounded"):
        expert("retail", "22")  # the user says "New York"; the tool wants the state code


def _candidate(trajectory: Trajectory, turn: int) -> Candidate:
    return next(c for c in candidates([trajectory]) if c.turn == turn)


async def _verdicts(trajectory: Trajectory, turn: int, actions: list[dict]) -> list:
    env = pivotgym.make("tau2", domain=trajectory.task["domain"])
    candidate = _candidate(trajectory, turn)
    await env.areset(options={"trajectory": trajectory, "turn": turn})
    state = State(candidate, list(env.tools), env=env, task=env.task)
    try:
        return await Tau2Verifier().verify_many(state, actions, candidate.reference)
    finally:
        await env.aclose()


def _turn_of(trajectory: Trajectory, predicate) -> int:
    return next(t for t in range(trajectory.num_turns) if predicate(trajectory.action(t)))


def test_the_verifier_accepts_equivalent_turns_and_rejects_others() -> None:
    trajectory = expert("retail", "0")
    write = _turn_of(trajectory, lambda a: "exchange" in json.dumps(a.get("tool_calls")))
    action = trajectory.action(write)
    reordered = copy.deepcopy(action)
    arguments = json.loads(reordered["tool_calls"][0]["function"]["arguments"])
    reordered["tool_calls"][0]["function"]["arguments"] = json.dumps(
        dict(reversed(list(arguments.items())))
    )
    other_items = copy.deepcopy(action)
    wrong = dict(arguments, new_item_ids=list(reversed(arguments["new_item_ids"])))
    other_items["tool_calls"][0]["function"]["arguments"] = json.dumps(wrong)
    lookup = trajectory.action(write - 1)  # a read where the expert writes
    verdicts = asyncio.run(_verdicts(trajectory, write, [action, reordered, other_items, lookup]))
    assert [v.reward for v in verdicts] == [1.0, 1.0, 0.0, 0.0], [v.reason for v in verdicts]
    assert "database" in verdicts[2].reason

    ask = _turn_of(trajectory, lambda a: "zip code" in (a.get("content") or ""))
    verdicts = asyncio.run(
        _verdicts(trajectory, ask, [
            say("To find your account, what are your name and zip code?"),
            say("What is your email address?"),
            say("I will exchange the items now."),
        ])
    )  # fmt: skip
    assert [v.reward for v in verdicts] == [1.0, 0.0, 0.0], [v.reason for v in verdicts]


def test_the_verifier_runs_calls_to_compare_their_effect() -> None:
    trajectory = expert("retail", "0")
    turn = _turn_of(trajectory, lambda a: "find_user_id" in json.dumps(a.get("tool_calls")))
    email = get_domain("retail").pristine.tools.db.users["yusuf_rossi_9620"].email

    def lookup(name: str, **arguments) -> dict:
        function = {"name": name, "arguments": json.dumps(arguments)}
        call = {"id": "s", "type": "function", "function": function}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    verdicts = asyncio.run(
        _verdicts(trajectory, turn, [
            lookup("find_user_id_by_email", email=email),  # the same user, another route
            lookup("find_user_id_by_name_zip", first_name="Yusuf", last_name="Rossi",
                   zip="19123"),
        ])
    )  # fmt: skip
    assert [v.reward for v in verdicts] == [1.0, 0.0], [v.reason for v in verdicts]
    assert "same effect" in verdicts[0].reason and "other results" in verdicts[1].reason


def test_the_data_build_is_deterministic_and_reports_what_it_could_not_solve(
    monkeypatch,
) -> None:
    test_id = get_domain("retail").tasks("test")[0].id

    class Few:  # the retail domain with two train tasks and one test task
        def __init__(self, name: str) -> None:
            self.domain = get_domain(name)

        def tasks(self, split=None):
            wanted = {"train": {"0", "22"}, "test": {test_id}}[split]
            return [t for t in self.domain.tasks(split) if t.id in wanted]

    monkeypatch.setattr(build, "DOMAINS", ("retail",))
    monkeypatch.setattr(build, "DEMONSTRATIONS", 2)
    monkeypatch.setattr(build, "get_domain", Few)
    files = asyncio.run(build.build(seed=1))
    assert files == asyncio.run(build.build(seed=1))
    report = json.loads(files["report.json"])["domains"]["retail"]
    assert (report["train_tasks"], report["solved"], report["trajectories"]) == (2, 1, 2)
    assert "'NY' is not grounded" in report["failed"][0]["why"]
    rows = gzip.decompress(files["train.jsonl.gz"]).decode().splitlines()
    assert [json.loads(r)["id"] for r in rows] == ["retail/0/1000003", "retail/0/1000004"]
    tasks = gzip.decompress(files["tasks-test.jsonl.gz"]).decode().splitlines()
    assert [json.loads(r)["task"]["id"] for r in tasks] == [test_id]
    tasks = gzip.decompress(files["tasks-train.jsonl.gz"]).decode().splitlines()
    assert [json.loads(r)["task"]["id"] for r in tasks] == ["0", "22"]


def test_run_options_reach_the_env_and_a_bad_one_is_named() -> None:
    config = load_config(None, ["env='tau2'", "env.domain=retail"])
    assert (config.env.name, config.env.options, config.env.label) == (
        "tau2", {"domain": "retail"}, "tau2[domain=retail]"
    )  # fmt: skip
    from pivotgym.runs.run import env_facts

    facts = env_facts(config.env)
    assert facts.admits(task("retail", "0")) and not facts.admits(task("airline", "0"))
    assert "cancel_pending_order" in {t["function"]["name"] for t in facts.tools}
    config = load_config(None, ["env='tau2'", "env.domian=retail"])
    with pytest.raises(DataError, match=r"env\.domian: unknown option 'domian'"):
        env_facts(config.env)
    config = load_config(None, ["env='tau2'", "env.max_calls='many'"])
    with pytest.raises(DataError, match=r"env\.max_calls: expected int"):
        env_facts(config.env)


def test_pivotrl_runs_on_tau2_end_to_end_from_the_command_line(tmp_path: Path, capsys) -> None:
    trajectories = tmp_path / "train.jsonl"
    trajectories.write_text(
        "".join(dumps(expert(d, i)) + "\n" for d, i in [("retail", "0"), ("airline", "9")])
    )
    tests = tmp_path / "tasks.jsonl"
    tests.write_bytes(encode_tasks([task("retail", "1"), task("retail", "2")]))
    out = tmp_path / "run"
    code = main([
        "run", "--env", "tau2", "--set", "env.domain=retail", "--out", str(out),
        "--set", f"data.trajectories='{trajectories}'", "--set", f"data.eval_task_file='{tests}'",
        "--set", "data.max_candidates=3", "--set", "profile.k=2",
        "--set", "data.ood_questions=2",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["env"] == "tau2[domain=retail]"
    # The airline trajectory is not a retail env's: only retail candidates were profiled.
    rows = [json.loads(line) for line in (out / "profile.jsonl").open()]
    assert len(rows) == 3 and all(r["candidate_id"].startswith("retail/") for r in rows)
    # A τ² prompt (policy and tool schemas) is longer than pivotgym-tiny's context.
    assert all(r["beyond_context"] for r in rows) and report["beyond_context"] == 3
    episodes = json.loads((out / "eval_base.json").read_text())["in_domain"]
    assert episodes["episodes"] == 2 and episodes["infra_errors"] == 0
    assert "env.domain" not in (out / "config.toml").read_text()
    assert 'domain = "retail"' in (out / "config.toml").read_text()


def test_an_engine_user_is_prompted_as_tau2s_user_simulator() -> None:
    from tiny_models import SayingEngine, tiny_tokenizer

    from pivotgym.envs.tau2.user import EngineUser
    from pivotgym.policy.chat import ChatFormat
    from pivotgym.policy.roleplay import swapped

    fmt = ChatFormat(tiny_tokenizer())
    engine = SayingEngine(f"My user id is emma_kim_9957. {STOP}")
    user = EngineUser(engine, fmt)
    env = pivotgym.make("tau2", domain="airline", user=user)
    obs, _ = env.reset(options={"task": task("airline", "0")})
    assert obs[-1]["content"].startswith("My user id")  # the model opened the call
    obs, _, terminated, _, _ = env.step(say("What is your user id?"))
    assert terminated and STOP in obs[-1]["content"]
    system = user.system(task("airline", "0"))
    assert "User Simulation Guidelines" in system and "emma_kim_9957" in system
    # The greeting and the question are the model's user; its opening, its own.
    assert [m["role"] for m in swapped(system, obs[:-1])[1:]] == ["user", "assistant", "user"]
    assert engine.prompts[-1] == fmt.prompt_ids(swapped(system, obs[:-1]))
    env.close()
