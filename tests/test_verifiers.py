"""Verifiers on actions that should and should not pass: real trajectories, real sandboxes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskdirs import make_task

import pivotgym
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.verifier import Execution
from pivotgym.errors import DataError
from pivotgym.policy.engines.base import Engine, Sample
from pivotgym.verifiers import (
    Exact,
    Similarity,
    State,
    ToolCall,
    Verdict,
    Verifier,
    all_of,
    any_of,
    canonical_arguments,
    default_verifier,
    get_verifier,
    restore,
    weighted,
)
from pivotgym.verifiers.base import MalformedAction, parse_calls
from pivotgym.verifiers.schema import SchemaError

run = pivotgym.run_sync
TOOLS = TerminalEnv.tools


def bash(command: str, content: str | None = None, **extra) -> dict:
    arguments = json.dumps({"command": command, **extra})
    call = {"id": "s0", "type": "function", "function": {"name": "bash", "arguments": arguments}}
    return {"role": "assistant", "content": content, "tool_calls": [call]}


def call(name: str, arguments: str) -> dict:
    fn = {"name": name, "arguments": arguments}
    return {"role": "assistant", "content": None, "tool_calls": [{"id": "s", "function": fn}]}


MALFORMED = {
    "parse_error": {"role": "assistant", "content": "<tool_call>{", "parse_error": "bad JSON"},
    "bad JSON": call("bash", '{"command": "ls"'),
    "not an object": call("bash", '["ls"]'),
    "unknown tool": call("python", '{"code": "1"}'),
    "schema": call("bash", '{"cmd": "ls"}'),
}


@pytest.fixture(scope="module")
def terminal_candidates() -> list[Candidate]:
    return candidates(pivotgym.load_trajectories("terminal", split="train")[:40])


def by_command(found: list[Candidate], command: str) -> Candidate:
    for c in found:
        arguments = json.loads(c.reference["tool_calls"][0]["function"]["arguments"])
        if arguments["command"] == command:
            return c
    raise LookupError(command)


def offline_state(candidate: Candidate) -> State:
    return State(candidate, TOOLS)


# ---------------------------------------------------------------- schema canonical form

SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "flag": {"type": "boolean", "default": False},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["n"],
    "additionalProperties": False,
}


def test_canonical_arguments_coerce_fill_and_reject() -> None:
    want = {"flag": True, "mode": "a", "n": 3, "x": 2.5}
    assert canonical_arguments({"x": "2.5", "flag": "TRUE", "n": "3"}, SCHEMA) == want
    assert canonical_arguments({"n": 3.0, "x": 2.5, "flag": True}, SCHEMA) == want
    assert canonical_arguments({"n": 1, "tags": [7]}, SCHEMA)["tags"] == ["7"]
    for bad, field in [({}, "n"), ({"n": "three"}, "n"), ({"n": 1, "zz": 1}, "zz"),
                       ({"n": 1, "mode": "c"}, "mode"), ({"n": 1.5}, "n")]:  # fmt: skip
        with pytest.raises(SchemaError) as err:
            canonical_arguments(bad, SCHEMA)
        assert err.value.path == field


@given(
    st.integers(-1000, 1000),
    st.booleans(),
    st.sampled_from(["a", "b"]),
    st.booleans(),
    st.permutations(["n", "flag", "mode"]),
)
def test_canonical_form_ignores_encoding(n, flag, mode, stringly, order) -> None:
    values = {"n": str(n) if stringly else n, "flag": str(flag).lower() if stringly else flag,
              "mode": mode}  # fmt: skip
    shuffled = {k: values[k] for k in order}
    text = json.dumps(shuffled, indent=2 if stringly else None)
    canonical = canonical_arguments(json.loads(text), SCHEMA)
    assert canonical == canonical_arguments({"n": n, "flag": flag, "mode": mode}, SCHEMA)
    assert canonical_arguments(canonical, SCHEMA) == canonical  # idempotent


# ---------------------------------------------------------------- offline verifiers


def test_malformed_actions_score_zero_for_every_verifier(terminal_candidates) -> None:
    c = terminal_candidates[0]
    for verifier in (Exact(), ToolCall(), Similarity(), Execution()):
        for label, action in MALFORMED.items():
            verdict = run(verifier.verify(offline_state(c), action, c.reference))
            assert verdict.reward == 0.0 and not verdict.infra_error, (verifier.name, label)
            assert verdict.reason.startswith("malformed action"), verdict.reason
    verdict = run(ToolCall().verify(offline_state(c), MALFORMED["unknown tool"], c.reference))
    assert "unknown tool 'python'" in verdict.reason
    verdict = run(ToolCall().verify(offline_state(c), MALFORMED["schema"], c.reference))
    assert "command" in verdict.reason


def nested(depth: int) -> str:
    return '{"command": "ls", "x": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("tool_calls", "words"),
    [
        ("ls", "not a list"),
        (["bash"], "not a function call"),
        ([{"id": "s", "function": "bash"}], "not a function call"),
        ([{"id": "s", "function": {"name": ["bash"], "arguments": "{}"}}], "not a function call"),
        ([{"id": "s", "function": {"name": "bash", "arguments": nested(1100)}}], "nested"),
        # Shallow enough for json.loads, too deep for the recursive canonical form.
        ([{"id": "s", "function": {"name": "bash", "arguments": nested(900)}}], "nested"),
        (
            [{"id": "s", "function": {"name": "bash", "arguments": json.loads(nested(900))}}],
            "nested",
        ),
    ],
)
def test_parse_calls_raises_only_malformed_action(tool_calls, words) -> None:
    action = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    with pytest.raises(MalformedAction, match=words):
        parse_calls(action, TOOLS)


def test_exact_and_tool_call_on_real_turns(terminal_candidates) -> None:
    c = terminal_candidates[1]
    ref = c.reference
    command = json.loads(ref["tool_calls"][0]["function"]["arguments"])["command"]
    respaced = call("bash", json.dumps({"command": command}, indent=4))
    other = bash(command + " -v")
    state = offline_state(c)
    assert run(Exact().verify(state, ref, ref)).reward == 1.0
    assert run(Exact().verify(state, respaced, ref)).reward == 0.0  # strict: string differs
    assert run(Exact(content=False).verify(state, bash(command), ref)).reward == 1.0
    assert run(Exact().verify(state, bash(command, "other words"), ref)).reward == 0.0
    assert run(ToolCall().verify(state, respaced, ref)).reward == 1.0
    verdict = run(ToolCall().verify(state, other, ref))
    assert verdict.reward == 0.0 and "command" in verdict.reason
    assert run(ToolCall(match="name").verify(state, other, ref)).reward == 1.0
    submit = call("submit", "{}")
    assert run(ToolCall(match="name").verify(state, submit, ref)).reward == 0.0
    text_only = {"role": "assistant", "content": "I am done."}
    verdict = run(ToolCall().verify(state, text_only, ref))
    assert verdict.reward == 0.0 and "calls no tool" in verdict.reason


def test_tool_call_canonicalises_against_the_schema() -> None:
    tools = [{"type": "function", "function": {"name": "get", "parameters": SCHEMA}}]
    trajectory = Trajectory(
        "g", "tool-api", {"name": "g"},
        [{"role": "user", "content": "get 3"}, call("get", '{"n": 3, "mode": "a"}')],
    )  # fmt: skip
    (c,) = candidates([trajectory])
    state = State(c, tools)
    ok = call("get", '{ "flag": "false",\n "n": "3" }')
    assert run(ToolCall().verify(state, ok, c.reference)).reward == 1.0
    assert run(ToolCall().verify(state, call("get", '{"n": 4}'), c.reference)).reward == 0.0
    unknown = run(ToolCall().verify(state, call("get", '{"n": 3, "extra": 1}'), c.reference))
    assert unknown.reward == 0.0 and "extra" in unknown.reason


def test_similarity_thresholds_and_grades(terminal_candidates) -> None:
    c = by_command(terminal_candidates, "patch -p1 < fix.patch")
    state = offline_state(c)
    near, far = bash("patch  -p1 <fix.patch"), bash("git apply fix.patch")
    assert run(Similarity().verify(state, near, c.reference)).reward == 1.0
    verdict = run(Similarity().verify(state, far, c.reference))
    assert verdict.reward == 0.0 and "command" in verdict.reason
    graded = run(Similarity(graded=True).verify(state, far, c.reference))
    assert 0.0 < graded.reward < 0.8
    f1 = run(
        Similarity(metric="token_f1", threshold=0.5).verify(
            state, bash("patch < fix.patch -p1"), c.reference
        )
    )
    assert f1.reward == 1.0  # order-free tokens


# ---------------------------------------------------------------- combinators


class Fixed(Verifier):
    def __init__(self, verdict: Verdict, name: str = "fixed") -> None:
        self.verdict, self.name, self.calls = verdict, name, 0

    async def check(self, *args) -> Verdict:
        self.calls += 1
        return self.verdict


PASS, FAIL = Verdict(1.0, "yes"), Verdict(0.0, "no")
BROKEN = Verdict(0.0, "sandbox died", infra_error=True)


def test_combinators_and_their_infrastructure_rule(terminal_candidates) -> None:
    c = terminal_candidates[0]
    state, ref = offline_state(c), c.reference

    def score(verifier):
        return run(verifier.verify(state, ref, ref))

    cheap, costly = Fixed(PASS), Fixed(FAIL)
    assert score(any_of(cheap, costly)).reward == 1.0 and costly.calls == 0  # short-circuit
    assert score(any_of(Fixed(FAIL), Fixed(FAIL))).reward == 0.0
    assert score(any_of(Fixed(BROKEN), Fixed(PASS))).reward == 1.0  # decided without it
    assert score(any_of(Fixed(BROKEN), Fixed(FAIL))).infra_error  # it could have passed
    assert score(all_of(Fixed(PASS), Fixed(PASS))).reward == 1.0
    assert score(all_of(Fixed(BROKEN), Fixed(FAIL))).reward == 0.0
    assert score(all_of(Fixed(BROKEN), Fixed(PASS))).infra_error
    assert score(weighted([(Fixed(PASS), 3), (Fixed(FAIL), 1)])).reward == pytest.approx(0.75)
    assert score(weighted([(Fixed(PASS), 1), (Fixed(BROKEN), 1)])).infra_error
    assert score(weighted([(Fixed(PASS), 1), (Fixed(BROKEN), 0)])).reward == 1.0
    malformed = run(any_of(Fixed(PASS)).verify(state, MALFORMED["bad JSON"], ref))
    assert malformed.reward == 0.0 and not malformed.infra_error


def test_registry_and_environment_defaults() -> None:
    assert isinstance(default_verifier("terminal"), Execution)
    assert default_verifier("terminal", compare_output=True).compare_output is True
    assert isinstance(default_verifier("an-env-without-a-default"), ToolCall)
    combined = get_verifier("any_of", verifiers=["exact", ("similarity", {"threshold": 0.5})])
    assert [v.name for v in combined.verifiers] == ["exact", "similarity"]
    with pytest.raises(DataError, match=r"unknown verifier 'nope' .*execution.*tool_api"):
        get_verifier("nope")
    with pytest.raises(DataError, match="bad options"):
        get_verifier("exact", bogus=1)
    # Environments' own verifiers come by entry point, by name or by import path.
    from pivotgym.envs.tools.verifier import ToolApi

    assert isinstance(get_verifier("execution"), Execution)
    assert isinstance(get_verifier("tool_api"), ToolApi)
    assert isinstance(default_verifier("tools"), ToolApi)
    assert isinstance(get_verifier("pivotgym.envs.tools.verifier:ToolApi"), ToolApi)
    with pytest.raises(DataError, match=r"cannot import verifier 'no\.such:thing'"):
        get_verifier("no.such:thing")


# ---------------------------------------------------------------- judge


class ScriptedEngine(Engine):
    """Returns scripted replies (text, encoded with the judge's tokenizer) in order."""

    def __init__(self, tokenizer, replies: list[str | Exception]) -> None:
        self.tokenizer, self.replies, self.prompts = tokenizer, list(replies), []

    @property
    def weight_version(self) -> str:
        return "scripted"

    async def generate(self, prompt_ids, n, sampling):
        self.prompts.append(list(prompt_ids))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
        ids = (*ids, sampling.stop_token_ids[0])
        return [Sample(ids, (0.0,) * len(ids), reply, "stop", "scripted")]

    async def update_weights(self, path, version):
        raise NotImplementedError


@pytest.fixture(scope="module")
def judge_tokenizer():
    from tiny_models import build_tokenizer, corpus_texts

    return build_tokenizer(corpus_texts(8), vocab_size=600)


def test_judge_parses_strictly_retries_once_and_caches(
    terminal_candidates, judge_tokenizer
) -> None:
    c = terminal_candidates[0]
    state, ref = offline_state(c), c.reference

    def judge(*replies):
        engine = ScriptedEngine(judge_tokenizer, list(replies))
        return engine, get_verifier("judge", engine=engine, tokenizer=judge_tokenizer)

    engine, j = judge("Same file is read.\nVERDICT: PASS")
    verdict = run(j.verify(state, bash("cat ./fix.patch"), ref))
    assert verdict.reward == 1.0 and verdict.reason == "Same file is read."
    assert run(j.verify(state, bash("cat ./fix.patch"), ref)) == verdict  # cached
    assert len(engine.prompts) == 1 and j.stats.cache_hits == 1
    prompt = judge_tokenizer.decode(engine.prompts[0])
    assert (
        "cat ./fix.patch" in prompt
        and "cat fix.patch" in prompt
        and c.prefix[1]["content"] in prompt
    )

    engine, j = judge("Wrong file.\nVERDICT: FAIL")
    assert run(j.verify(state, bash("ls"), ref)).reward == 0.0
    engine, j = judge("I think it passes", "VERDICT: PASS")
    verdict = run(j.verify(state, bash("ls"), ref))
    assert verdict.reward == 1.0 and j.stats.retries == 1
    for replies in (["maybe", "VERDICT: pass"], ["VERDICT: PASS\nmore"] * 2,
                    [RuntimeError("down"), "no verdict"]):  # fmt: skip
        engine, j = judge(*replies)
        verdict = run(j.verify(state, bash("ls"), ref))
        assert verdict.infra_error and len(engine.prompts) == 2, replies
    engine, j = judge()
    assert run(j.verify(state, MALFORMED["bad JSON"], ref)).reward == 0.0 and not engine.prompts


# ---------------------------------------------------------------- execution, real sandboxes


@pytest.fixture(scope="module")
def terminal_env():
    env = TerminalEnv(tasks=[], sandbox="bwrap", cache=SnapshotCache())
    yield env
    env.close()


def _live_sandboxes(env) -> int:
    return len(env.backend._sandboxes)


def test_execution_on_real_candidates(terminal_env, terminal_candidates) -> None:
    patch = by_command(terminal_candidates, "patch -p1 < fix.patch")
    convert = by_command(terminal_candidates, "tr 'a-z' 'A-Z' < cities.txt > normalized.txt")
    look = by_command(terminal_candidates, "cat fix.patch")
    verifier = Execution()

    async def go():
        out = {}
        state = await restore(terminal_env, patch)
        out["live"] = _live_sandboxes(terminal_env)
        out["patch"] = await verifier.verify_many(
            state,
            [patch.reference, bash("git apply fix.patch"), bash("cat fix.patch"),
             bash("patch -p1 -R < fix.patch"), MALFORMED["unknown tool"]],
            patch.reference,
        )  # fmt: skip
        state = await restore(terminal_env, convert)
        out["convert"] = await verifier.verify_many(
            state,
            [bash("cat cities.txt | tr '[:lower:]' '[:upper:]' > normalized.txt"),
             bash("tr 'A-Z' 'a-z' < cities.txt > normalized.txt"),
             bash("cd /tmp && tr 'a-z' 'A-Z' < /app/cities.txt > /app/normalized.txt")],
            convert.reference,
        )  # fmt: skip
        state = await restore(terminal_env, look)
        out["look"] = await verifier.verify_many(
            state, [bash("cat ./fix.patch"), bash("head -n 3 fix.patch")], look.reference
        )
        return out

    out = run(go())
    live = out.pop("live")
    expert, alternative, reader, reverse, unknown = out["patch"]
    assert expert.reward == 1.0 and alternative.reward == 1.0, (expert, alternative)
    assert reader.reward == 0.0 and "app/core.py" in reader.reason
    assert reverse.reward == 0.0 and "exit status" in reverse.reason
    assert unknown.reward == 0.0 and "unknown tool" in unknown.reason
    same, lower, moved = out["convert"]
    assert same.reward == 1.0
    assert lower.reward == 0.0 and "differs: normalized.txt" in lower.reason
    assert moved.reward == 0.0 and moved.reason.startswith("cwd /tmp")
    cat, head = out["look"]
    assert cat.reward == 1.0 and "output" in cat.reason  # an observation: output compared
    assert head.reward == 0.0 and head.reason == "output differs"
    assert not any(v.infra_error for vs in out.values() for v in vs)
    assert verifier.stats.expert_executions == 3 and verifier.stats.executions == 9
    assert _live_sandboxes(terminal_env) == live  # every branch closed


def test_equivalent_counting_commands_and_the_whitespace_rule(tmp_path: Path, terminal_env) -> None:
    files = {"log.txt": "x1\ny\nx2\n"}
    task = make_task(
        tmp_path, "count-x", files=files, toml='[pivotgym]\nnormalize = ["run-\\\\d+"]\n'
    )

    def trajectory(command: str) -> Candidate:
        t = Trajectory("cx", "terminal", str(task), [
            {"role": "system", "content": "s"}, {"role": "user", "content": "count x"},
            bash(command), {"role": "tool", "tool_call_id": "s0", "content": ""}])  # fmt: skip
        return candidates([t])[0]

    to_file, to_screen = trajectory("grep -c x log.txt > n"), trajectory("grep -c x log.txt")

    async def go(candidate, actions, verifier):
        state = await restore(terminal_env, candidate)
        return await verifier.verify_many(state, actions, candidate.reference)

    # Writing the count: `wc -l` on a pipe prints the bare number, so n holds "2\n" both ways.
    ok, wrong = run(go(to_file, [bash("grep x log.txt | wc -l > n"), bash("wc -l < log.txt > n")],
                       Execution()))  # fmt: skip
    assert ok.reward == 1.0 and wrong.reward == 0.0 and "differs: n" in wrong.reason
    # Showing the count: output compared after the whitespace policy and normalisation.
    actions = [bash("grep x log.txt | wc -l"), bash("printf '2   \\n\\n'"), bash("wc -l log.txt"),
               bash("echo run-1 >&2; grep -c x log.txt; echo run-2 >&2")]  # fmt: skip
    trailing = run(go(to_screen, actions, Execution()))
    assert [v.reward for v in trailing] == [1.0, 1.0, 0.0, 0.0]
    exact = run(go(to_screen, actions[:2], Execution(output_whitespace="exact")))
    assert [v.reward for v in exact] == [1.0, 0.0]
    patterned = trajectory("echo run-7 >&2; grep -c x log.txt; echo run-9 >&2")
    assert run(go(patterned, actions[3:], Execution()))[0].reward == 1.0  # task's normalize


def test_expert_effect_is_computed_once_per_candidate(terminal_env, terminal_candidates) -> None:
    c = by_command(terminal_candidates, "patch -p1 < fix.patch")
    verifier = Execution()
    samples = [bash("git apply fix.patch"), bash("ls"), c.reference, bash("true")]

    async def go():
        state = await restore(terminal_env, c)
        group = await verifier.verify_many(state, samples, c.reference)
        singles = await asyncio.gather(*(verifier.verify(state, a, c.reference) for a in samples))
        return group, singles

    group, singles = run(go())
    assert [v.reward for v in group] == [v.reward for v in singles] == [1.0, 0.0, 1.0, 0.0]
    assert verifier.stats.executions == 2 * len(samples)  # K per pass ...
    assert verifier.stats.expert_executions == 1  # ... plus one expert run in all
    assert verifier.stats.expert_cache_hits == len(samples)


def test_infrastructure_failure_is_not_a_zero(terminal_env, terminal_candidates) -> None:
    c = by_command(terminal_candidates, "patch -p1 < fix.patch")
    verifier = Execution()

    async def go():
        state = await restore(terminal_env, c)
        await terminal_env.sandbox.close()  # the sandbox dies under the verifier
        broken = await verifier.verify_many(state, [c.reference, bash("ls")], c.reference)
        single = await verifier.verify(state, c.reference, c.reference)
        state = await restore(terminal_env, c)  # a fresh state: the failure was not cached
        healed = await verifier.verify(state, c.reference, c.reference)
        return broken, single, healed

    broken, single, healed = run(go())
    assert all(v.infra_error for v in [*broken, single]), broken
    assert healed.reward == 1.0 and not healed.infra_error
    no_env = run(verifier.verify(offline_state(c), c.reference, c.reference))
    assert no_env.infra_error


def test_modes_links_and_trees_larger_than_the_output_limit(tmp_path: Path, terminal_env) -> None:
    files = {f"d{i // 50}/f{i:04d}.txt": f"{i}\n" for i in range(600)}
    task = make_task(tmp_path, "big", files=files)
    t = Trajectory("big", "terminal", str(task), [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        bash("chmod 600 d3/f0150.txt && ln -s d3/f0150.txt latest"),
        {"role": "tool", "tool_call_id": "s0", "content": ""}])  # fmt: skip
    (c,) = candidates([t])
    actions = [
        bash("ln -s d3/f0150.txt latest; chmod go-rw d3/f0150.txt"),
        bash("chmod 640 d3/f0150.txt && ln -s d3/f0150.txt latest"),
        bash("chmod 600 d3/f0150.txt && ln -s ./d3/f0150.txt latest"),
    ]

    async def go():
        state = await restore(terminal_env, c)
        return await Execution().verify_many(state, actions, c.reference)

    same, mode, target = run(go())
    assert same.reward == 1.0, same
    assert mode.reward == 0.0 and mode.reason == "differs: d3/f0150.txt"
    assert target.reward == 0.0 and target.reason == "differs: latest"


def test_a_git_index_counts_by_what_it_stages(tmp_path: Path, terminal_env) -> None:
    task = make_task(tmp_path, "git-stage", files={"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"})
    t = Trajectory("g", "terminal", str(task), [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        bash("git init -q && git add a.txt && git commit -qm a"),
        {"role": "tool", "tool_call_id": "s0", "content": ""},
        bash("git add b.txt"), {"role": "tool", "tool_call_id": "s0", "content": ""}])  # fmt: skip
    c = candidates([t])[1]
    actions = [c.reference, bash("sleep 1.1; git add -- ./b.txt"), bash("git add b.txt c.txt")]

    async def go():
        state = await restore(terminal_env, c)
        return await Execution().verify_many(state, actions, c.reference)

    same, later, more = run(go())
    assert same.reward == 1.0 and later.reward == 1.0, (same, later)
    assert more.reward == 0.0 and "differs: .git/index" in more.reason


def test_a_zip_archive_counts_by_its_members(tmp_path: Path, terminal_env) -> None:
    task = make_task(tmp_path, "zip", files={"a.csv": "1,2\n" * 50, "b.csv": "3\n", "c.txt": "x\n"})
    t = Trajectory("z", "terminal", str(task), [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        bash("zip -q out.zip a.csv b.csv"),
        {"role": "tool", "tool_call_id": "s0", "content": ""}])  # fmt: skip
    (c,) = candidates([t])
    # Stored instead of deflated, after the members' access times moved: other bytes,
    # same members. Then a different set of members.
    actions = [
        bash("touch -a -d '2001-01-01' a.csv b.csv; sleep 1.1; zip -q -0 out.zip b.csv a.csv"),
        bash("zip -q out.zip a.csv b.csv c.txt"),
    ]

    async def go():
        state = await restore(terminal_env, c)
        return await Execution().verify_many(state, actions, c.reference)

    same, more = run(go())
    assert same.reward == 1.0, same
    assert more.reward == 0.0 and "differs: out.zip" in more.reason
