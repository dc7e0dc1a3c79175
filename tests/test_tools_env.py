"""The tool-API env: episodes with a user, τ²-style rewards, replay of writes only, forks,
the one-turn verifier, bundled domains and data, and a domain written as a plugin."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env
from tiny_models import SayingEngine, tiny_tokenizer

import pivotgym
from pivotgym.core.candidates import Candidate
from pivotgym.core.replay import SnapshotCache
from pivotgym.envs.tools import build as tools_build
from pivotgym.envs.tools.domain import (
    Call,
    ToolTask,
    domain_names,
    get_domain,
    register_domain,
)
from pivotgym.envs.tools.env import ToolsEnv
from pivotgym.envs.tools.expert import demonstrate
from pivotgym.envs.tools.tasks import generate_tasks, gold_state
from pivotgym.envs.tools.user import STOP, ScriptedUser
from pivotgym.envs.tools.verifier import ToolApi
from pivotgym.errors import DataError, DivergenceError
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, Sample, SamplingParams
from pivotgym.rl.rollouts import collect
from pivotgym.verifiers.base import restore

CLINIC = get_domain("clinic")


def _tasks(n: int = 40, seed: int = 0) -> list[ToolTask]:
    return generate_tasks(CLINIC, n, seed)


def _demos(tasks: list[ToolTask]):
    async def run():
        env = ToolsEnv(domain="clinic")
        out = [await demonstrate(env, t, i) for i, t in enumerate(tasks)]
        await env.aclose()
        return out

    return asyncio.run(run())


def _call(name: str, /, **arguments) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": function}]}  # fmt: skip


def test_an_episode_runs_with_the_user_and_scores_on_database_and_information() -> None:
    task = next(t for t in _tasks() if t.family == "cancel")
    (trajectory,) = _demos([task])
    env = pivotgym.make("tools", domain="clinic", tasks=[task])
    obs, info = env.reset(options={"task": task})
    assert [m["role"] for m in obs] == ["system", "user"] and "policy" in obs[0]["content"]
    reward = None
    for i in range(trajectory.num_turns):
        obs, reward, terminated, truncated, info = env.step(trajectory.action(i))
        if i + 1 < trajectory.num_turns:
            assert not (terminated or truncated)
    assert terminated and reward == 1.0 and info["test"]["db"] == 1.0
    assert obs[-1]["role"] == "user" and STOP in obs[-1]["content"]
    # The same conversation without the cancellation: the database is wrong.
    env.reset(options={"task": task})
    actions = [trajectory.action(i) for i in range(trajectory.num_turns)]
    for action in actions:
        if (
            action.get("tool_calls", [{}])[0].get("function", {}).get("name")
            == "cancel_appointment"
        ):
            continue
        *_, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert reward == 0.0 and info["test"]["db"] == 0.0 and info["test"]["db_diff"]
    env.close()


def test_the_reward_needs_the_information_said_and_a_natural_end() -> None:
    task = next(t for t in _tasks() if t.family == "balance")
    env = ToolsEnv(domain="clinic", tasks=[task], max_turns=3)
    env.reset(options={"task": task})
    *_, reward, terminated, _, info = env.step({"role": "assistant", "content": "Goodbye."})
    assert terminated and reward == 0.0 and info["test"]["missing_info"] == list(task.required_info)
    env.reset(options={"task": task})
    truncated = False
    for _ in range(3):
        _, reward, _, truncated, info = env.step(_call("list_doctors"))
    assert truncated and reward == 0.0 and info["test"]["termination"] == "max_turns"
    env.close()


def test_a_failed_or_malformed_call_is_a_tool_message_and_changes_nothing() -> None:
    env = ToolsEnv(domain="clinic", tasks=_tasks(3))
    env.reset(seed=0)
    digest = env.world.digest()
    obs, *_ = env.step(_call("cancel_appointment", appointment_id="A1"))
    assert obs[-1]["content"] == "Error: appointment A1 not found"
    obs, *_, info = env.step(_call("find_open_slots", doctor_id=7, date=["x"]))
    assert "argument 'date'" in obs[-1]["content"] and info["tool_errors"] == ["invalid_arguments"]
    assert env.world.digest() == digest
    env.close()


def test_reset_to_every_turn_replays_only_writes_and_matches_the_recording() -> None:
    trajectories = _demos(_tasks(30, seed=1))
    env = ToolsEnv(domain="clinic", cache=SnapshotCache())
    for trajectory in trajectories:
        writes_before = 0
        for turn in range(trajectory.num_turns + 1):
            obs, info = env.reset(options={"trajectory": trajectory, "turn": turn})
            assert obs == trajectory.prefix(turn) and info["divergences"] == []
            assert info["replayed_steps"] <= 1  # the cache holds every earlier prefix
            if turn:
                action = trajectory.action(turn - 1)
                names = [c["function"]["name"] for c in action.get("tool_calls") or []]
                writes = sum(CLINIC.toolkit[n].writes for n in names)
                assert info["replayed_steps"] == (1 if writes else 0)
                writes_before += writes
        # Cold, from a fresh cache: exactly the writes of the prefix are executed.
        cold = ToolsEnv(domain="clinic")
        _, info = cold.reset(options={"trajectory": trajectory, "turn": trajectory.num_turns})
        assert info["replayed_steps"] == sum(
            any(CLINIC.toolkit[c["function"]["name"]].writes for c in a.get("tool_calls") or [])
            for a in (trajectory.action(i) for i in range(trajectory.num_turns))
        )
        assert cold.world.db.same_as(gold_state(cold.task))
        cold.close()
    env.close()


def test_a_replayed_write_that_returns_otherwise_diverges() -> None:
    task = next(t for t in _tasks() if t.family == "reschedule")
    (trajectory,) = _demos([task])
    write_turn = next(i for i in range(trajectory.num_turns)
                      if (trajectory.action(i).get("tool_calls") or [{}])[0]
                      .get("function", {}).get("name") == "reschedule_appointment")  # fmt: skip
    tampered = copy.deepcopy(trajectory)
    reply = tampered.tool_results(write_turn)[0]
    data = json.loads(reply["content"])
    data["time"] = "23:59"
    reply["content"] = json.dumps(data)
    env = ToolsEnv(domain="clinic")
    with pytest.raises(DivergenceError) as err:
        env.reset(options={"trajectory": tampered, "turn": write_turn + 1})
    assert err.value.turn == write_turn and "23:59" in err.value.expected
    _, info = env.reset(options={"trajectory": tampered, "turn": write_turn + 1,
                                 "divergence": "lenient"})  # fmt: skip
    assert [d["turn"] for d in info["divergences"]] == [write_turn]
    # The cache keeps that state, but a strict restore does not take it as checked.
    with pytest.raises(DivergenceError):
        env.reset(options={"trajectory": tampered, "turn": write_turn + 1})
    env.reset(options={"trajectory": tampered, "turn": write_turn + 1, "divergence": "off"})
    fresh = ToolsEnv(domain="clinic", cache=env.cache)  # "off" entries are not trusted
    with pytest.raises(DivergenceError):
        fresh.reset(options={"trajectory": tampered, "turn": write_turn + 1})
    fresh.close()
    env.close()


def test_forks_are_independent_worlds() -> None:
    tasks = _tasks(5)
    env = ToolsEnv(domain="clinic", tasks=tasks)
    env.reset(options={"task": tasks[0]})
    a, b = env.fork(2)
    patient = next(iter(env.world.db.rows("patients"))).patient_id
    a.step(_call("update_contact", patient_id=patient, phone="1"))
    assert a.world.db.get("patients", patient).phone == "1"
    assert b.world.db.get("patients", patient).phone != "1"
    assert env.world.db.get("patients", patient).phone != "1"
    assert a.messages != env.messages == b.messages
    for e in (a, b, env):
        e.close()


def test_the_env_passes_gymnasiums_checker() -> None:
    env = ToolsEnv(domain="clinic", tasks=_tasks(5))
    check_env(env, skip_render_check=True)
    env.close()


def test_the_scripted_user_answers_from_its_facts_and_stops_when_served() -> None:
    task = next(t for t in _tasks() if t.scenario.known.get("date_of_birth"))
    user = ScriptedUser()
    ask = [{"role": "assistant", "content": "What is your date of birth?"}]
    text, stop = user.answer(task, ask)
    assert task.scenario.known["date_of_birth"] in text and not stop
    assert user.answer(task, ask) == (text, stop)  # deterministic
    text, stop = user.answer(task, [{"role": "assistant", "content": "Shall I go ahead?"}])
    assert text.startswith("Yes") and not stop
    text, stop = user.answer(task, [{"role": "assistant", "content": "Your date of birth is X."}])
    assert stop and STOP in text


def _state(trajectory, turn):
    env = ToolsEnv(domain="clinic")
    state = asyncio.run(restore(env, Candidate.of(trajectory, turn)))
    return env, state


def test_the_verifier_accepts_equivalent_calls_and_messages_and_rejects_others() -> None:
    task = next(t for t in _tasks() if t.family == "cancel" and "name" in t.scenario.volunteered
                and "date_of_birth" in t.scenario.volunteered)  # fmt: skip
    (trajectory,) = _demos([task])
    verifier = ToolApi()
    turn = next(i for i in range(trajectory.num_turns) if trajectory.action(i).get("tool_calls"))
    env, state = _state(trajectory, turn)
    reference = trajectory.action(turn)
    args = json.loads(reference["tool_calls"][0]["function"]["arguments"])

    def verdict(action):
        return asyncio.run(verifier.verify(state, action, reference))

    assert verdict(_call("find_patient", **args)).reward == 1.0
    # Same record found with the name in another case: same effect, same result.
    shouted = verdict(_call("find_patient", **{**args, "name": args["name"].upper()}))
    assert shouted.reward == 1.0 and "effect" in shouted.reason
    # The same patient by ID returns the same record too.
    patient = env.world.db.where("patients", name=args["name"])[0]
    assert verdict(_call("get_patient", patient_id=patient.patient_id)).reward == 1.0
    assert verdict(_call("find_patient", **{**args, "date_of_birth": "1900-01-01"})).reward == 0
    assert verdict({"role": "assistant", "content": "Hello"}).reward == 0.0
    env.close()

    last = trajectory.num_turns - 1
    env, state = _state(trajectory, last)
    reference = trajectory.action(last)
    appointment = task.required_info[0]

    def said(text):
        return asyncio.run(verifier.verify(state, {"role": "assistant", "content": text},
                                           reference)).reward  # fmt: skip

    assert said(reference["content"]) == 1.0
    date = re.search(r"\d{4}-\d{2}-\d{2}", reference["content"]).group(0)
    assert said(f"I have cancelled {appointment} (the {date} visit) for you.") == 1.0
    assert said(f"Appointment {appointment} has been cancelled.") == 0.0  # the date is missing
    env.close()


def test_the_verifier_accepts_a_write_with_the_same_effect_only() -> None:
    task = next(t for t in _tasks() if t.family == "update_contact")
    (trajectory,) = _demos([task])
    turn = next(i for i in range(trajectory.num_turns)
                if "update_contact" in json.dumps(trajectory.action(i)))  # fmt: skip
    env, state = _state(trajectory, turn)
    reference = trajectory.action(turn)
    args = json.loads(reference["tool_calls"][0]["function"]["arguments"])
    verifier = ToolApi()
    same = asyncio.run(verifier.verify(state, _call("update_contact", **args, email=None),
                                       reference))  # fmt: skip
    assert same.reward == 1.0
    other = asyncio.run(verifier.verify(state, _call("update_contact", **{**args, "phone": "9"}),
                                        reference))  # fmt: skip
    assert other.reward == 0.0 and "database" in other.reason
    env.close()


def test_a_task_whose_gold_action_fails_names_the_task_and_action() -> None:
    task = _tasks(1)[0]
    broken = dataclasses.replace(task, writes=((Call("cancel_appointment",
                                                     {"appointment_id": "A0"}),),))  # fmt: skip
    with pytest.raises(DataError) as err:
        gold_state(broken)
    assert err.value.file == task.name and err.value.field == "writes[0][0]"
    assert "not found" in str(err.value)


def test_task_generation_and_demonstrations_are_deterministic() -> None:
    a = [t.to_json() for t in _tasks(25, seed=4)]
    assert a == [t.to_json() for t in _tasks(25, seed=4)] != [t.to_json() for t in _tasks(25, 5)]
    tasks = _tasks(10, seed=4)
    assert [t.to_json() for t in _demos(tasks)] == [t.to_json() for t in _demos(tasks)]


def _doc_blocks() -> list[str]:
    text = (Path(__file__).parent.parent / "docs" / "tools.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_domain_written_as_the_docs_show_runs_end_to_end(tmp_path, monkeypatch) -> None:
    module, script = _doc_blocks()
    (tmp_path / "garden.py").write_text(module)
    (tmp_path / "make_data.py").write_text(script)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    subprocess.run([sys.executable, "make_data.py"], check=True, timeout=120)
    import garden

    register_domain(garden.DOMAIN, replace=True)
    assert "garden" in domain_names()
    demos = pivotgym.load_trajectories(tmp_path / "garden-train.jsonl")
    tasks = pivotgym.load_tasks(tmp_path / "garden-test.jsonl", env="tools")
    assert len(demos) == 15 and len(tasks) == 5 and demos[0].tools == garden.DOMAIN.tools
    env = ToolsEnv(domain="garden", tasks=tasks)
    for demo in demos:
        _, info = env.reset(options={"trajectory": demo, "turn": demo.num_turns})
        assert info["replayed_steps"] == 1 and not info["divergences"]
        assert env.world.db.same_as(gold_state(env.task))
    env.close()


def test_bundled_domains_keep_their_promises() -> None:
    for name in (*tools_build.TRAIN_DOMAINS, tools_build.HELD_OUT):
        domain = get_domain(name)
        reads = sum(not t.writes for t in domain.toolkit)
        writes = sum(t.writes for t in domain.toolkit)
        assert reads >= 8 and writes >= 5, name
        assert domain.policy and domain.held_out == (name == tools_build.HELD_OUT)
        tasks = generate_tasks(domain, 60, 9)
        families = {t.family for t in tasks}
        refusals = {t.family for t in tasks if not t.writes and t.lookups}
        assert len(families) >= 6 and refusals, name


def test_the_bundled_data_is_rebuilt_bit_for_bit() -> None:
    assert tools_build.main(["--check"]) == 0
    train = pivotgym.load_trajectories("tools", split="train")
    assert len(train) == tools_build.TRAIN_TRAJECTORIES
    assert {t.metadata["domain"] for t in train} == set(tools_build.TRAIN_DOMAINS)
    test = pivotgym.load_tasks("tools", split="test")
    ood = pivotgym.load_tasks("tools", split="ood")
    assert len(test) == tools_build.TEST_TASKS and len(ood) == tools_build.OOD_TASKS
    assert {t.domain for t in ood} == {tools_build.HELD_OUT}
    assert not {t.name for t in test} & {t.task["name"] for t in train}


def test_bundled_trajectories_restore_strictly_on_a_multi_domain_env() -> None:
    train = pivotgym.load_trajectories("tools", split="train")
    env = pivotgym.make("tools")
    for trajectory in train[::97]:
        turn = trajectory.num_turns
        _, info = env.reset(options={"trajectory": trajectory, "turn": turn})
        assert env.domain.name == trajectory.metadata["domain"] and not info["divergences"]
        assert env.world.db.same_as(gold_state(env.task))
    env.close()


class ReplayingEngine(Engine):
    """Answers with a demonstration's actions in order: a policy that knows the task."""

    def __init__(self, fmt: ChatFormat, actions: list[dict]) -> None:
        self.ids = [tuple(fmt.action_ids(a)) for a in actions]
        self.calls = 0

    @property
    def weight_version(self) -> str:
        return "0"

    async def generate(self, prompt_ids, n, sampling):
        ids = self.ids[self.calls]
        self.calls += 1
        return [Sample(ids, (-0.1,) * len(ids), "", "stop", "0") for _ in range(n)]

    async def update_weights(self, path, version):
        raise NotImplementedError


def test_episode_rollouts_run_with_user_turns_and_score_the_expert_1() -> None:
    task = next(t for t in _tasks() if t.family == "reschedule")
    (demo,) = _demos([task])
    fmt = ChatFormat(tiny_tokenizer())
    fmt.context_length = None  # the tiny model's 1,536 positions hold no tool-API prompt
    engine = ReplayingEngine(fmt, [demo.action(i) for i in range(demo.num_turns)])
    sampling = SamplingParams(1.0, 1.0, -1, 512, tuple(fmt.stop_ids), 0)
    (rollout,) = asyncio.run(collect(engine, fmt, lambda: ToolsEnv(domain="clinic", tasks=[task]),
                                     [task], 1, sampling, seed=0))  # fmt: skip
    assert rollout.reward == 1.0 and rollout.turns == demo.num_turns
    sample = rollout.train_sample()
    # The user's replies and tool results are context, never trained on.
    assert sample.num_trained == sum(len(ids) for ids in engine.ids)


def test_a_canned_message_or_a_run_of_digits_does_not_pass_for_the_information() -> None:
    refusal = next(t for t in _tasks(60) if not t.writes and t.required_info)
    env = ToolsEnv(domain="clinic", tasks=[refusal])
    env.reset(options={"task": refusal})
    # Everything the task requires, said at once without looking anything up.
    blind = "Sorry. " + " ".join(refusal.required_info)
    *_, reward, terminated, _, info = env.step({"role": "assistant", "content": blind})
    assert terminated and reward == 0.0 and info["test"]["action"] == 0.0
    assert info["test"]["missing_lookups"]
    env.close()
    from pivotgym.envs.tools.grader import communicated

    said = [{"role": "assistant", "content": "You owe 10.00 and card 0123456789 is frozen."}]
    assert communicated(["0.00", "4567", "10.00"], said) == ["0.00", "4567"]
    in_a_call = [{"role": "assistant", "content": "4567", "tool_calls": [{"id": "c"}]}]
    assert communicated(["4567"], in_a_call) == ["4567"]  # the user never reads it


def test_the_verifier_rejects_a_message_stuffed_with_facts_or_of_another_kind() -> None:
    task = next(t for t in _tasks() if t.family == "cancel")
    (trajectory,) = _demos([task])
    confirm = next(i for i in range(trajectory.num_turns)
                   if "proceed" in (trajectory.action(i).get("content") or "")
                   or "go ahead" in (trajectory.action(i).get("content") or ""))  # fmt: skip
    env, state = _state(trajectory, confirm)
    reference = trajectory.action(confirm)
    text = reference["content"]

    def said(words):
        return asyncio.run(ToolApi().verify(state, {"role": "assistant", "content": words},
                                            reference)).reward  # fmt: skip

    assert said(text) == 1.0
    assert (
        said(text.replace("?", ".").replace("Shall I", "I").replace("Do you want me to", "I will"))
        == 0.0
    )
    stuffed = text + " " + " ".join(str(n) for n in range(100))
    assert said(stuffed) == 0.0
    env.close()


def test_a_fork_of_a_domain_following_env_stays_on_its_domain() -> None:
    bank = generate_tasks(get_domain("bank"), 2, 0)[0]
    env = ToolsEnv(tasks=[bank])
    env.reset(options={"task": bank})
    (child,) = env.fork(1)
    assert child.domain.name == "bank" and child.tools == env.tools
    customer = next(iter(child.world.db.rows("customers"))).customer_id
    obs, *_ = child.step(_call("get_customer", customer_id=customer))
    assert not obs[-1]["content"].startswith("Error")
    for e in (child, env):
        e.close()


def test_hostile_arguments_are_answered_not_raised() -> None:
    env = ToolsEnv(domain="clinic", tasks=_tasks(2))
    env.reset(seed=0)
    digest = env.world.digest()
    bank = get_domain("bank")
    card = next(iter(bank.database().rows("cards"))).card_id
    huge = bank.toolkit.call(bank.database(), "set_card_limit",
                             {"card_id": card, "daily_limit": 10**400})  # fmt: skip
    assert huge.error == "invalid_arguments" and "daily_limit" in huge.content
    obs, *_ = env.step(_call("get_patient", patient_id="\ud800"))
    assert "not valid Unicode" in obs[-1]["content"]
    obs, *_ = env.step(_call("list_doctors"))
    assert len(obs[-1]["content"]) < 17_000  # a listing is cut at the tool message cap
    with pytest.raises(DataError, match=r"action\.content"):
        env.step({"role": "assistant", "content": ["hi?"]})
    assert env.world.digest() == digest
    env.close()


def test_task_keys_and_caches_tell_apart_what_differs() -> None:
    a = _tasks(1)[0]
    b = dataclasses.replace(a, db_seed=1)
    assert a.name == b.name and a.key != b.key
    cache = SnapshotCache()
    env = ToolsEnv(domain="clinic", cache=cache)
    assert env.cache is cache  # an empty cache is shared, not replaced
    env.close()


def test_the_demo_runs_on_the_tool_api_env(capsys) -> None:
    from pivotgym.cli import main

    assert main(["demo", "--env", "tools"]) == 0
    out = capsys.readouterr().out
    assert "DomainWorld" in out and "episode reward=1.0" in out


def test_an_engine_user_sees_the_scenario_with_roles_swapped_and_stops_on_the_phrase() -> None:
    from pivotgym.envs.tools.user import EngineUser
    from pivotgym.policy.roleplay import swapped

    task = _tasks(1)[0]
    fmt = ChatFormat(tiny_tokenizer())
    engine = SayingEngine(f"Thanks, bye. {STOP}")
    user = EngineUser(engine, fmt)
    env = ToolsEnv(domain="clinic", tasks=[task], user=user)
    env.reset(options={"task": task})
    obs, _, terminated, _, _ = env.step({"role": "assistant", "content": "How can I help?"})
    assert terminated and obs[-1] == {"role": "user", "content": f"Thanks, bye. {STOP}"}
    prompt = swapped(user.system(task), obs[:-1])
    assert task.scenario.goal in prompt[0]["content"]
    assert [m["role"] for m in prompt[1:]] == ["assistant", "user"]  # the user is the model
    assert engine.prompts == [fmt.prompt_ids(prompt)]
    env.close()
