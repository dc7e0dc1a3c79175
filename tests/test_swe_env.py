"""The SWE env: bundled repositories, SWE-agent's editor, episodes graded as SWE-bench
grades them (and not fooled by edited tests or planted files), reset to a turn and
fork, on every sandbox backend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from terminal_tasks import BACKENDS

import pivotgym
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.swe.bugs import run_tests
from pivotgym.envs.swe.env import SWEEnv
from pivotgym.envs.swe.grader import statuses
from pivotgym.envs.swe.repos import BUNDLES, REPOS, clone, git
from pivotgym.envs.swe.tasks import SWETask, load_task_file, materialize, task_from_json
from pivotgym.errors import DataError, DivergenceError

SOURCE = "/testbed/inflection/__init__.py"
BUGGY, FIXED = "in (11, 12):", "in (11, 12, 13):"
FAILING = [f"test_inflection.py::test_{f}[{n}-{n}th]" for f in ("ordinal", "ordinalize")
           for n in ("-13", "-113", "13", "113")]  # fmt: skip
PASSING = ["test_inflection.py::test_pluralize_plurals",
           "test_inflection.py::test_pluralize_singular[funky jeans-funky jeans]",
           "test_inflection.py::test_ordinal[1-1st]",
           "test_inflection.py::test_ordinal[11-11th]"]  # fmt: skip


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> SWETask:
    """inflection's ``ordinal`` with 13 left out of the teens: 13th reads 13rd."""
    tree = tmp_path_factory.mktemp("inflection") / "repo"
    clone(REPOS["inflection"], tree)
    source = tree / "inflection" / "__init__.py"
    source.write_text(source.read_text().replace(FIXED, BUGGY))
    bug = git("diff", cwd=tree)
    return task_from_json({
        "instance_id": "inflection-ordinal", "repo": "inflection", "bug_patch": bug,
        "problem_statement": "inflection.ordinalize(13) returns '13rd'; it should be '13th'.",
        "FAIL_TO_PASS": FAILING, "PASS_TO_PASS": PASSING,
    })  # fmt: skip


def call(name: str, **arguments) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": function}]}  # fmt: skip


def edit(old: str, new: str, path: str = SOURCE) -> dict:
    return call("str_replace_editor", command="str_replace", path=path, old_str=old, new_str=new)


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, task: SWETask):
    envs: list[SWEEnv] = []

    def build(chosen: SWETask | None = None) -> SWEEnv:
        chosen = chosen or task
        env = pivotgym.make("swe", tasks=[chosen], sandbox=request.param)
        envs.append(env)
        env.reset(options={"task": chosen})
        return env

    yield build
    for env in envs:
        env.close()


def test_every_bundled_repository_clones_with_its_licence_beside_it(tmp_path: Path) -> None:
    assert len(REPOS) >= 8 and sum(r.held_out for r in REPOS.values()) >= 2
    total = sum(p.stat().st_size for p in BUNDLES.iterdir())
    assert total < 20 << 20
    for repo in REPOS.values():
        licence = BUNDLES / f"{repo.name}.LICENSE"
        assert licence.read_text().strip(), repo.name
        clone(repo, tmp_path / repo.name)
        assert (tmp_path / repo.name / repo.licence_file).read_text() == licence.read_text()
        assert (tmp_path / repo.name / repo.package.removesuffix(".py")).exists()


def test_tests_timed_by_the_clock_are_deselected_from_every_run(tmp_path: Path) -> None:
    timed = [repo for repo in REPOS.values() if repo.timed]
    assert {repo.name for repo in timed} >= {"mistune", "sqlparse"}
    for repo in timed:
        tree = tmp_path / repo.name
        clone(repo, tree)
        files = sorted({test.split("::")[0] for test in repo.timed})
        listed = subprocess.run(
            ["python3", "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *files],
            cwd=tree, capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree / repo.python_path)},
        ).stdout.split()  # fmt: skip
        # Each entry names tests that exist (pytest ignores a --deselect that matches none).
        hits = {t: [n for n in listed if n == t or n.startswith(f"{t}[")] for t in repo.timed}
        assert all(hits.values()), [t for t, found in hits.items() if not found]
        outcomes = run_tests(tree, repo, files)
        assert outcomes and not set(outcomes) & {n for found in hits.values() for n in found}
        # The sandboxes' runs deselect the same tests: the agent's, the expert's, the grader's.
        task = SWETask(f"{repo.name}-timed", repo.name, "issue", ("t",), ())
        env = SWEEnv(tasks=[task])
        assert env.spec_for(task).env["PYTEST_ADDOPTS"] == repo.pytest_addopts
        env.close()


def test_the_task_tree_is_the_release_with_the_bug_committed(task: SWETask) -> None:
    tree = materialize(task)
    assert BUGGY in (tree / "inflection" / "__init__.py").read_text()
    assert git("status", "--porcelain", cwd=tree) == ""
    log = git("log", "--format=%s", cwd=tree).split("\n")
    assert log[:2] == ["the task's state", "inflection 0.5.1"]
    # The same commit wherever it is made: the sandboxes' fixed identity and date.
    assert materialize(task) == tree


def test_a_fix_resolves_the_issue_and_a_wrong_one_does_not(make) -> None:
    env = make()
    obs, *_ = env.step(call("bash", command="python -m pytest -q test_inflection.py | tail -1"))
    assert "8 failed" in obs[-1]["content"]
    env.step(edit(BUGGY, FIXED))
    obs, reward, terminated, _, info = env.step(call("submit"))
    assert terminated and reward == 1.0, info["test"]
    assert f"+    if number % 100 {FIXED}" in obs[-1]["content"]  # submit shows the diff
    status = info["test"]["tests_status"]
    assert status["FAIL_TO_PASS"]["success"] == FAILING
    assert status["PASS_TO_PASS"]["success"] == PASSING

    wrong = make()  # 13 fixed, the teens' 11 broken
    wrong.step(edit(BUGGY, "in (12, 13):"))
    _, reward, _, _, info = wrong.step(call("submit"))
    assert reward == 0.0 and info["test"]["tests_status"]["PASS_TO_PASS"]["failure"]


@pytest.mark.parametrize(
    "cheat",
    [
        # The failing tests rewritten to expect what the bug gives.
        "sed -i 's/13th/13rd/g' test_inflection.py",
        # A conftest.py that reports every test passed.
        "printf 'import pytest\\n@pytest.hookimpl(hookwrapper=True)\\n"
        "def pytest_runtest_makereport(item, call):\\n    out = yield\\n"
        '    out.get_result().outcome = "passed"\\n\' > conftest.py',
        # A pytest.ini that deselects the failing tests.
        "printf '[pytest]\\naddopts = -k \"not 13\"\\n' > pytest.ini",
        # A top-level module that shadows the package under test.
        "printf 'def ordinal(n):\\n    return \"th\"\\n' > inflection.py",
        # The module a link to a fixed copy outside the repository.
        "sed 's/in (11, 12):/in (11, 12, 13):/' inflection/__init__.py > /tmp/fixed.py"
        " && ln -sf /tmp/fixed.py inflection/__init__.py",
    ],
    ids=["edited-tests", "conftest", "pytest-ini", "shadowing-module", "link"],
)
def test_no_planted_file_or_edited_test_makes_an_unfixed_bug_pass(make, cheat: str) -> None:
    env = make()
    env.step(call("bash", command=cheat))
    _, reward, terminated, _, info = env.step(call("submit"))
    assert terminated and reward == 0.0, info["test"]
    assert info["test"]["ignored"], "what the grader left out is reported"
    assert info["test"]["tests_status"]["FAIL_TO_PASS"]["failure"] == FAILING


def _write(path: str, text: str) -> dict:
    return call("bash", command=f"mkdir -p $(dirname {path}) && cat > {path} <<'EOF'\n{text}EOF")


def test_no_module_or_plugin_planted_beside_a_src_package_reaches_the_grader(make) -> None:
    # cachetools is imported from src/, which PYTHONPATH puts before the system's pytest.
    task = next(t for t in pivotgym.load_tasks("swe", split="test") if t.repo == "cachetools")
    ids = [*task.fail_to_pass, *task.pass_to_pass]
    fake_pytest = f"print({chr(10).join(f'PASSED {t}' for t in ids)!r})\n"
    plugin = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\n"
              "def pytest_runtest_makereport(item, call):\n    out = yield\n"
              "    out.get_result().outcome = 'passed'\n")  # fmt: skip
    entry_point = "[pytest11]\nreport = cachetools._report\n"
    cheats = [
        {"src/pytest.py": fake_pytest},  # a pytest of one's own, first on the path
        {"src/json.py": "raise SystemExit(0)\n"},  # a standard library module shadowed
        # A plugin loaded through the package's metadata.
        {"src/cachetools/_report.py": plugin,
         "src/cachetools.egg-info/entry_points.txt": entry_point},
    ]  # fmt: skip
    for planted in cheats:
        env = make(task)
        for path, text in planted.items():
            env.step(_write(path, text))
        _, reward, terminated, _, info = env.step(call("submit"))
        assert terminated and reward == 0.0, (planted.keys(), info["test"])
        assert set(planted) - {"src/cachetools/_report.py"} <= set(info["test"]["ignored"])
        assert info["test"]["tests_status"]["FAIL_TO_PASS"]["failure"] == list(task.fail_to_pass)


def test_a_change_of_a_file_into_a_folder_or_back_is_graded(make) -> None:
    env = make()
    env.step(call("bash", command="rm -r inflection && echo gone > inflection"))
    _, reward, terminated, _, info = env.step(call("submit"))
    assert terminated and reward == 0.0 and "inflection" in info["test"]["patch"]
    env = make()
    env.step(call("bash", command="rm inflection/__init__.py && mkdir inflection/__init__.py"
                                  " && echo x > inflection/__init__.py/x.py"))  # fmt: skip
    _, reward, terminated, _, info = env.step(call("submit"))
    assert terminated and reward == 0.0


def test_what_the_code_prints_does_not_crowd_out_the_graded_report(make) -> None:
    env = make()
    env.step(edit(BUGGY, FIXED))
    noisy = "def ordinal(number: int) -> str:\n    print('x' * 100_000)"
    env.step(edit("def ordinal(number: int) -> str:", noisy))
    _, reward, terminated, _, info = env.step(call("submit"))
    assert terminated and reward == 1.0, info["test"]


def test_the_editor_speaks_swe_agents_interface(make) -> None:
    env = make()

    def say(**arguments) -> str:
        return env.step(call("str_replace_editor", **arguments))[0][-1]["content"]

    head = say(command="view", path=SOURCE, view_range=[1, 2])
    assert head.startswith(f"Here's the result of running `cat -n` on {SOURCE}:\n     1\t")
    assert "directories up to 2 levels deep in /testbed, excluding hidden items:\n/testbed\n" in (
        say(command="view", path="/testbed")
    )
    assert say(command="view", path="inflection/__init__.py") == (
        "The path inflection/__init__.py is not an absolute path, it should start with `/`. "
        f"Maybe you meant {SOURCE}?\n"
    )
    assert say(command="view", path="/testbed/nope.py") == (
        "The path /testbed/nope.py does not exist. Please provide a valid path.\n"
    )
    assert "Multiple occurrences of old_str `return` in lines [" in say(
        command="str_replace", path=SOURCE, old_str="return", new_str="yield"
    )
    assert say(command="str_replace", path=SOURCE, old_str="no such text", new_str="x") == (
        f"No replacement was performed, old_str `no such text` did not appear verbatim in "
        f"{SOURCE}.\n"
    )
    edited = say(command="str_replace", path=SOURCE, old_str=BUGGY, new_str=FIXED)
    assert edited.startswith(f"The file {SOURCE} has been edited. Here's the result of running ")
    assert edited.endswith("Review the changes and make sure they are as expected. Edit the file "
                           "again if necessary.\n")  # fmt: skip
    created = say(command="create", path="/testbed/notes.txt", file_text="one\ntwo")
    assert created == "File created successfully at: /testbed/notes.txt\n"
    assert "Cannot overwrite files using command `create`" in say(
        command="create", path="/testbed/notes.txt", file_text="x"
    )
    inserted = say(command="insert", path="/testbed/notes.txt", insert_line=1, new_str="1.5")
    assert "     2\t1.5\n" in inserted and "(correct indentation, no duplicate lines" in inserted
    assert "Last edit to /testbed/notes.txt undone successfully." in say(
        command="undo_edit", path="/testbed/notes.txt"
    )
    assert say(command="view", path="/testbed/notes.txt").endswith("     1\tone\n     2\ttwo\n\n")
    # Arguments the tool's schema does not take are refused before anything runs.
    assert "must be int" in say(command="insert", path="/testbed/notes.txt",
                                insert_line="1", new_str="x")  # fmt: skip
    assert "needs the argument 'path'" in say(command="view", path=None)


def test_reset_to_any_turn_and_forks_keep_the_repository_and_the_edit_history(make) -> None:
    env = make()
    steps = [
        call("bash", command="cd inflection && ls"),
        edit(BUGGY, FIXED),
        call("str_replace_editor", command="view", path=SOURCE, view_range=[225, 227]),
        call("bash", command="pwd; git diff --stat"),
    ]
    for action in steps:
        env.step(action)
    trajectory = Trajectory(id="fixing", env="swe", task=env.task.to_json(),
                            messages=list(env.messages))  # fmt: skip
    restored = pivotgym.make("swe", tasks=[], sandbox=env.options.sandbox)
    for turn in range(len(steps) + 1):
        restored.reset(options={"trajectory": trajectory, "turn": turn})
        assert restored.messages == trajectory.prefix(turn)
        text = (restored.sandbox.host_dir("/testbed") / "inflection/__init__.py").read_text()
        assert (FIXED in text) == (turn >= 2)
    # Views change nothing, so they were not replayed; the shell's cwd came back.
    assert restored.stats.replayed_steps <= 3
    obs, *_ = restored.step(call("bash", command="pwd"))
    assert obs[-1]["content"] == "/testbed/inflection\n"
    a, b = restored.fork(2)
    a.step(call("str_replace_editor", command="undo_edit", path=SOURCE))
    assert BUGGY in (a.sandbox.host_dir("/testbed") / "inflection/__init__.py").read_text()
    assert FIXED in (b.sandbox.host_dir("/testbed") / "inflection/__init__.py").read_text()
    _, reward_a, *_ = a.step(call("submit"))
    _, reward_b, *_ = b.step(call("submit"))
    assert (reward_a, reward_b) == (0.0, 1.0)
    for e in (a, b, restored):
        e.close()


def test_replay_passes_over_what_varies_between_test_runs_and_nothing_else(make) -> None:
    # A failing test's report shows its fixtures' addresses, which move from run to run.
    env = make()
    script = "import tempfile, time; print(object(), 7, tempfile.mkdtemp(), time.time())"
    env.step(call("bash", command=f"python3 -c '{script}'"))
    trajectory = Trajectory(id="addresses", env="swe", task=env.task.to_json(),
                            messages=list(env.messages))  # fmt: skip
    assert (
        " at 0x" in trajectory.messages[-1]["content"]
        and "/tmp/tmp" in (trajectory.messages[-1]["content"])
    )
    restored = pivotgym.make("swe", tasks=[], sandbox=env.options.sandbox)
    restored.reset(options={"trajectory": trajectory, "turn": 1})
    assert restored.stats.replayed_steps == 1
    forged = trajectory.messages[-1]["content"].replace(" 7", " 8")
    changed = Trajectory(id="changed", env="swe", task=env.task.to_json(),
                         messages=[*trajectory.messages[:-1],
                                   {**trajectory.messages[-1], "content": forged}])  # fmt: skip
    fresh = pivotgym.make("swe", tasks=[], sandbox=env.options.sandbox)
    with pytest.raises(DivergenceError):
        fresh.reset(options={"trajectory": changed, "turn": 1})
    for e in (restored, fresh):
        e.close()


def test_random_draws_in_a_repository_sandbox_repeat_from_run_to_run(make) -> None:
    # A cache that evicts with random.choice prints other keys on each run unless seeded.
    draw = call("bash", command="python3 -c 'import random; print(random.sample(range(10**9), 4))'")
    first, second = make(), make()
    printed = [env.step(draw) and env.messages[-1]["content"] for env in (first, second)]
    assert printed[0] == printed[1] and printed[0].startswith("[")
    unseeded = call("bash", command="env -u PIVOTGYM_RANDOM_SEED python3 -c "
                    "'import random; print(random.sample(range(10**9), 4))'")  # fmt: skip
    first.step(unseeded)
    assert first.messages[-1]["content"] != printed[0]


def test_instances_load_in_swe_benchs_shapes_and_bad_ones_name_their_field(
    task: SWETask, tmp_path: Path
) -> None:
    row = task.to_json()
    encoded = dict(row, FAIL_TO_PASS=json.dumps(row["FAIL_TO_PASS"]))  # the datasets' form
    path = tmp_path / "instances.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(encoded) + "\n")
    first, second = load_task_file(path)
    assert first == second == task
    path.write_text(json.dumps(row) + "\n" + json.dumps(dict(row, FAIL_TO_PASS=[])) + "\n")
    with pytest.raises(DataError, match=r"instances.jsonl:2: FAIL_TO_PASS: an instance needs"):
        load_task_file(path)
    path.write_text(json.dumps(dict(row, repo="django/django")) + "\n")
    with pytest.raises(DataError, match=r":1: repo: 'django/django' is not a bundled repository"):
        load_task_file(path)
    path.write_text(json.dumps(dict(row, test_files=7)) + "\n")
    with pytest.raises(DataError, match=r":1: test_files: must be a list of test ids"):
        load_task_file(path)
    with pytest.raises(DataError, match=r"repo_path: no git repository there"):
        missing = task_from_json(dict(row, repo_path=str(tmp_path / "nowhere"), base_commit="abc"))
        materialize(missing)


def test_an_instance_of_a_local_repository_checks_out_its_commit(tmp_path: Path) -> None:
    repo = tmp_path / "mine"
    clone(REPOS["inflection"], repo)
    commit = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "dirty.txt").write_text("uncommitted")
    instance = {"instance_id": "mine-1", "repo": "me/mine", "repo_path": str(repo),
                "base_commit": commit, "problem_statement": "p",
                "FAIL_TO_PASS": ["test_inflection.py::test_ordinal[1-1st]"]}  # fmt: skip
    with pytest.raises(DataError, match="uncommitted changes"):
        materialize(task_from_json(instance))
    subprocess.run(["rm", str(repo / "dirty.txt")], check=True)
    tree = materialize(task_from_json(instance))
    assert git("rev-parse", "HEAD", cwd=tree).strip() == commit


def test_pytest_report_lines_are_read_as_node_ids() -> None:
    report = (
        "PASSED t.py::test_a[x y]\nFAILED t.py::test_b - AssertionError: boom\n"
        "PASSED t.py::test_b\nERROR t.py::test_c\n"
    )
    assert statuses(report) == {"t.py::test_a[x y]": "PASSED", "t.py::test_b": "FAILED",
                                "t.py::test_c": "ERROR"}  # fmt: skip


def _verdicts(env: SWEEnv, reference: dict, actions: list[dict]) -> list[float]:
    """The ``swe`` verifier's rewards of ``actions`` where the expert took ``reference``,
    at the env's current state."""

    from pivotgym.core.candidates import candidates
    from pivotgym.envs.swe.verifier import SWEVerifier
    from pivotgym.verifiers.base import State

    trajectory = Trajectory(id="v", env="swe", task=env.task.to_json(),
                            messages=[*env.messages, reference])  # fmt: skip
    candidate = list(candidates([trajectory]))[-1]

    async def run() -> list:
        state = State(candidate, list(env.tools), env=env, task=env.task)
        return await SWEVerifier().verify_many(state, actions, reference)

    from pivotgym.core.env import run_sync

    verdicts = run_sync(run())
    assert not any(v.infra_error for v in verdicts), [v.reason for v in verdicts]
    return [v.reward for v in verdicts]


def test_the_verifier_judges_edits_by_their_effect(make) -> None:
    env = make()
    expert = edit(BUGGY, FIXED)
    samples = [
        expert,
        edit(BUGGY, "in (11, 12, 13,):"),  # the same syntax tree
        edit(BUGGY, "in {11, 12, 13}:"),  # other code, the same tests pass and fail
        edit(BUGGY, "in (12, 13):"),  # fixes 13, breaks 11
        call("bash", command="sed -i 's/13th/13rd/g' test_inflection.py"),  # the tests
        call("str_replace_editor", command="view", path=SOURCE),  # looks only
        call("submit"),
    ]
    live = len(env.backend._sandboxes)
    assert _verdicts(env, expert, samples) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    # Grading sandboxes made ahead of a sample, used or not, are all closed.
    assert len(env.backend._sandboxes) == live
    # The verifier acts in forks: the env's own state is as it was.
    assert BUGGY in (env.sandbox.host_dir("/testbed") / "inflection/__init__.py").read_text()
    # Where the expert's edit does not resolve the issue, the tests' outcome says
    # nothing of it: an edit that changes nothing they see is not the same edit.
    head = "def ordinalize(number: int) -> str:"
    guess = edit(head, f"{head}\n    pass")
    assert _verdicts(env, guess, [guess, edit(head, f"{head}\n    None")]) == [1.0, 0.0]


def test_the_verifier_judges_test_runs_and_exploration_by_what_they_show(make) -> None:
    env = make()
    run = call("bash", command="python -m pytest -q test_inflection.py -k ordinal | tail -3")
    assert _verdicts(env, run, [
        call("bash", command="python -m pytest test_inflection.py"),
        call("bash", command="cd /testbed && pytest test_inflection.py::test_ordinal 2>&1"),
        call("bash", command="python -m pytest test_inflection.py | head -c 300"),  # no count
        call("bash", command="python -m pytest -q -k pluralize test_inflection.py"),
        call("bash", command="python -m pytest test_inflection.py::test_pluralize_plurals"),
        call("bash", command="python -m pytest --collect-only test_inflection.py"),
        call("bash", command="echo python -m pytest test_inflection.py"),
        call("bash", command="ls"),
    ]) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # fmt: skip
    view = call("str_replace_editor", command="view", path=SOURCE, view_range=[224, 234])
    assert _verdicts(env, view, [
        call("str_replace_editor", command="view", path=SOURCE, view_range=[215, 240]),
        call("bash", command="sed -n 224,234p inflection/__init__.py"),
        call("bash", command="grep -n 'def ' inflection/__init__.py"),
        edit(BUGGY, FIXED),
    ]) == [1.0, 1.0, 0.0, 0.0]  # fmt: skip


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "swe"


def _swe_agent_file(tmp_path: Path, history: list) -> Path:
    path = tmp_path / "inflection-ordinal.traj"
    path.write_text(json.dumps({"environment": "inflection-ordinal", "history": history,
                                "info": {"exit_status": "submitted"}}))  # fmt: skip
    return path


def test_swe_agent_trajectories_import_and_replay_here(task: SWETask, tmp_path: Path) -> None:
    from pivotgym.envs.swe.importers import from_swe_agent

    arguments = json.dumps({"command": "str_replace", "path": SOURCE, "old_str": BUGGY,
                            "new_str": FIXED})  # fmt: skip
    history = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": task.problem_statement}]},
        {"role": "assistant", "content": "Let me fix it.", "tool_calls": [
            {"index": 1, "id": "toolu_1", "type": "function",
             "function": {"name": "str_replace_editor", "arguments": arguments}}]},
        {"role": "tool", "tool_call_ids": ["toolu_1"], "content": [
            {"type": "text", "text": "OBSERVATION:\nThe file was edited.\r\n"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_2", "type": "function",
             "function": {"name": "submit", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_ids": ["toolu_2"], "content": "OBSERVATION:\ndiff"},
    ]  # fmt: skip
    trajectory = from_swe_agent(_swe_agent_file(tmp_path, history), {task.instance_id: task})
    assert [m["role"] for m in trajectory.messages] == [
        "system", "user", "assistant", "tool", "assistant", "tool"
    ]  # fmt: skip
    assert trajectory.messages[3] == {"role": "tool", "tool_call_id": "toolu_1",
                                      "content": "The file was edited.\n"}  # fmt: skip
    # Restored here, its edit is this env's: lenient, since its outputs are SWE-agent's.
    env = pivotgym.make("swe", tasks=[], divergence="lenient")
    env.reset(options={"trajectory": trajectory, "turn": 1})
    assert FIXED in (env.sandbox.host_dir("/testbed") / "inflection/__init__.py").read_text()
    env.close()
    history[2]["tool_calls"][0]["function"]["name"] = "find_file"
    with pytest.raises(DataError, match=r"history\[2\]\.tool_calls\[0\]\.function\.name: "
                                        r"unknown action 'find_file'"):  # fmt: skip
        from_swe_agent(_swe_agent_file(tmp_path, history), {task.instance_id: task})


def test_openhands_transcripts_map_their_tool_names(task: SWETask) -> None:
    from pivotgym.envs.swe.importers import from_openhands

    def bash(call_id: str, **arguments) -> dict:
        message = call("execute_bash", **arguments)
        message["tool_calls"][0]["id"] = call_id
        return message

    finish = {"name": "finish", "arguments": json.dumps({"message": "Fixed the teens."})}
    messages = [
        {"role": "user", "content": task.problem_statement},
        bash("c1", command="ls", is_input="false", timeout=30, security_risk="LOW"),
        {"role": "tool", "tool_call_ids": "c1", "content": "README.rst"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c2", "type": "function", "function": finish}]},
        {"role": "tool", "tool_call_id": "c2", "content": "done"},
    ]  # fmt: skip
    trajectory = from_openhands(messages, task)
    calls = [m["tool_calls"][0]["function"] for m in trajectory.messages if m.get("tool_calls")]
    assert calls == [{"name": "bash", "arguments": '{"command": "ls"}'},
                     {"name": "submit", "arguments": "{}"}]  # fmt: skip
    assert trajectory.messages[-2]["content"] == "Fixed the teens."  # finish's words kept
    typing = [*messages[:1], bash("c1", command="q", is_input="true")]
    with pytest.raises(DataError, match=r"messages\[1\].*is_input: input to a running"):
        from_openhands(typing, task)
    unanswered = [*messages[:2], *messages[3:]]
    with pytest.raises(DataError, match=r"messages\[1\]: tool call 'c1' has no tool message"):
        from_openhands(unanswered, task)
    with pytest.raises(DataError, match=r"messages\[1\]\.tool_calls: must be a list"):
        from_openhands([messages[0], {"role": "assistant", "tool_calls": 7}], task)


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="the shared SWE records are not beside this checkout"
)
def test_real_swe_agent_trajectories_map_or_say_why_not() -> None:
    from pivotgym.envs.swe.importers import from_swe_agent

    smith = SHARED / "swe-smith"
    instance = json.loads(
        (smith / "instances" / "pandas-dev__pandas.95280573.pr_53652.json").read_text()
    )
    task = SWETask(instance["instance_id"], "pandas-dev/pandas", instance["problem_statement"],
                   tuple(instance["FAIL_TO_PASS"]), tuple(instance["PASS_TO_PASS"]),
                   repo_path="/nowhere", base_commit=instance["base_commit"])  # fmt: skip
    trajectory = from_swe_agent(smith / "trajectories" / f"{task.instance_id}.traj",
                                {task.instance_id: task})  # fmt: skip
    assert trajectory.num_turns == 37 and "\r" not in json.dumps(trajectory.messages)
    names = {c["function"]["name"] for m in trajectory.messages for c in m.get("tool_calls") or []}
    assert names <= {"bash", "str_replace_editor", "submit"} and "submit" in names
    agent = SHARED / "swe-agent" / "trajectories"
    with pytest.raises(DataError, match="unknown action 'find_file'"):
        from_swe_agent(agent / "function_calling_simple.traj", {"function_calling_simple": task})
    with pytest.raises(DataError, match="a text action"):
        from_swe_agent(agent / "pydicom__pydicom-1458" / "pydicom__pydicom-1458.traj",
                       {"swe_main": task})  # fmt: skip


def test_an_instance_whose_tests_do_not_tell_the_fix_is_refused(task: SWETask) -> None:
    from dataclasses import replace

    from pivotgym.core.env import run_sync

    env = pivotgym.make("swe", tasks=[])
    gold = replace(task, patch=_reverse(task))
    run_sync(env.grader.check_instance(gold))  # fails before, passes after: fine
    with pytest.raises(DataError, match=r"inflection-ordinal: FAIL_TO_PASS: 1 of them pass"):
        run_sync(env.grader.check_instance(replace(gold, fail_to_pass=(*FAILING, PASSING[0]))))
    with pytest.raises(DataError, match=r"inflection-ordinal: patch: the gold patch leaves"):
        run_sync(env.grader.check_instance(replace(gold, patch=_reverse(task).replace(
            "13):", "14):"))))  # fmt: skip
    env.close()


def _reverse(task: SWETask) -> str:
    """The gold fix of the fixture's bug, as a diff."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(materialize(task), tree)
        source = tree / "inflection" / "__init__.py"
        source.write_text(source.read_text().replace(BUGGY, FIXED))
        return git("diff", cwd=tree)


def test_the_expert_makes_any_instances_gold_patch_and_undoes_a_recorded_bug(
    task: SWETask,
) -> None:
    from dataclasses import replace

    from pivotgym.core.env import run_sync
    from pivotgym.envs.swe.expert import demonstrate

    env = pivotgym.make("swe", tasks=[])
    gold = replace(task, patch=_reverse(task))  # an instance of SWE-bench's shape: no bug record
    trajectory = run_sync(demonstrate(env, gold, seed=0))
    calls = [m["tool_calls"][0]["function"] for m in trajectory.messages if m.get("tool_calls")]
    names = [c["name"] for c in calls]
    assert names[-1] == "submit" and "str_replace_editor" in names and 4 <= len(calls) <= 20
    edit_call = next(json.loads(c["arguments"]) for c in calls if '"str_replace"' in c["arguments"])
    assert BUGGY in edit_call["old_str"] and FIXED in edit_call["new_str"]
    mutation = {
        "kind": "flip_comparison",
        "module": "inflection/__init__.py",
        "function": "ordinal",
        "line": 226,
        "original": FIXED,
        "text": BUGGY,
        "start": (materialize(task) / "inflection/__init__.py").read_text().index(BUGGY),
    }
    recorded = replace(task, extra={"mutation": mutation})  # fmt: skip
    again = [run_sync(demonstrate(env, recorded, seed=s)) for s in (1, 1, 2)]
    from pivotgym.core.replay import normalizer
    from pivotgym.envs.swe.env import VARYING

    masked = [normalizer(VARYING)(json.dumps(t.messages)) for t in again]
    assert masked[0] == masked[1]  # rebuilt from its seed, but for pytest's durations
    assert all(t.messages[-1]["role"] == "tool" for t in again)
    env.close()


def test_pivotgym_run_takes_instances_of_ones_own_and_names_a_bad_one(
    task: SWETask, tmp_path: Path, capsys
) -> None:
    from dataclasses import replace

    from pivotgym.cli import main

    gold = replace(task, patch=_reverse(task))
    data = tmp_path / "instances.jsonl"
    data.write_text(json.dumps(gold.to_json()) + "\n")
    out = tmp_path / "run"
    argv = ["run", "--env", "swe", "--data", str(data), "--out", str(out),
            "--set", f"data.eval_task_file='{data}'", "--set", "data.max_candidates=2",
            "--set", "profile.k=2", "--set", "data.ood_questions=2",
            "--set", "train.steps=1", "--set", "train.pivots_per_step=1",
            "--set", "train.group_size=2"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    (demonstration,) = (out / "demonstrations.jsonl").read_text().splitlines()
    assert json.loads(demonstration)["task"]["instance_id"] == "inflection-ordinal"
    report = json.loads((out / "report.json").read_text())
    assert report["env"] == "swe" and report["candidates"] == 2
    # An instance whose tests do not fail before its fix: refused, naming it, and the
    # first instance's demonstration, made before, is kept.
    bad = replace(gold, instance_id="no-failure", fail_to_pass=(PASSING[0],),
                  pass_to_pass=PASSING[1:])  # fmt: skip
    data.write_text(json.dumps(gold.to_json()) + "\n\n" + json.dumps(bad.to_json()) + "\n")
    argv[argv.index(str(out))] = str(tmp_path / "run2")
    assert main(argv) == 2
    assert "instances.jsonl:3: no-failure: FAIL_TO_PASS: 1 of them pass before the fix" in (
        capsys.readouterr().err
    )
    assert len((tmp_path / "run2" / "demonstrations.jsonl").read_text().splitlines()) == 1


def test_an_equivalent_rewrite_swaps_only_the_sides_of_a_simple_comparison() -> None:
    from pivotgym.envs.swe.expert import swapped_comparison

    source = 'if x == 1 and "mailto:" + text == url or a < b == c:\n    y = s.a != "é"\n'

    def swap(operator: str) -> str | None:
        at = source.index(operator)
        found = swapped_comparison(source, at, at + 2)
        return None if found is None else source[: found[0][0]] + found[1] + source[found[0][1] :]

    assert swap("== 1") == source.replace("x == 1", "1 == x")
    assert swap('!= "') == source.replace('s.a != "é"', '"é" != s.a')
    # The sum is the left side (swapping text and url would change the code); chains stay.
    assert swap("== url") is None
    assert swap("== c") is None
