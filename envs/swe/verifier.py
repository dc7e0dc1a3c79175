"""The SWE env's one-turn functional verifier (its default: ``swe``).

The sampled turn and the expert's run in two forks of the restored sandbox, and what
each did decides: whether it changed the repository's files (an *edit*), ran tests, or
only read (*exploration*). The sampled turn must do the same kind of thing, and:

- **an edit** passes when it leaves the repository as the expert's does: the same
  files; or Python files whose syntax trees are equal once normalised (formatting,
  comments, quotes and parentheses do not matter); or, failing that, the same outcome
  of the task's ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` tests when both changes are graded
  as the episode's end would be (:class:`~pivotgym.envs.swe.grader.SWEGrader`: tests
  restored, planted files left out, in a fresh sandbox; the expert's outcome is graded
  once a state). So an equivalent rewrite of the fix passes, and so does another edit
  that makes the same tests pass and fail; a change to the tests never counts.
- **a test run** (a command that runs pytest and changes no file) passes when it runs
  a test the issue is about: its output reports one of the ``FAIL_TO_PASS`` tests, or
  the command runs the whole of its test file (names it, selects nothing with ``-k``).
  A test run is for seeing the bug or the fix at work; any run that exercises the
  failing tests shows it.
- **exploration** (a command or view that changes nothing and runs no test) passes when
  it shows the agent what the expert's showed: at least half of the informative lines
  of the expert's output (line numbers and blank lines aside) appear in the sample's.
  An exploring turn is worth what it reveals; two greps or views that bring up the
  same code are the same step, and one that reveals other code is not.
- ``submit`` passes only where the expert submits.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from pivotgym.envs.swe.grader import CACHES, agent_change
from pivotgym.envs.swe.tasks import WORKDIR, SWETask, materialize
from pivotgym.sandbox.state import read_tree
from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, infra, passed

GIT = re.compile(r"^\.git(/|$)")  # git's own records: no change of the code
PYTEST = re.compile(r"\b(pytest|py\.test|unittest)\b")
_NUMBERED = re.compile(r"^\s*\d+[\t:-]")
SHARE = 0.5  # of the expert's informative lines an exploring turn must show


def _tree(env: Any) -> dict[str, str | None]:
    entries = read_tree(env.sandbox.host_dir(WORKDIR))
    return {p: e.sha256 or e.kind for p, e in entries.items()
            if e.kind != "d" and not CACHES.search(p) and not GIT.search(p)}  # fmt: skip


def _normal_ast(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return ast.dump(ast.parse(data.decode("utf-8", "replace")), annotate_fields=False)
    except SyntaxError:
        return None


def _lines(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        line = _NUMBERED.sub("", line).strip()
        if len(line) > 3 and not line.startswith("Here's the result of running"):
            out.add(line)
    return out


class SWEVerifier(Verifier):
    """See the module docstring."""

    name = "swe"

    def __init__(self) -> None:
        self._expert_outcomes: dict[str, dict[str, Any]] = {}

    async def check(
        self,
        state: State,
        action: dict[str, Any],
        calls: list[Call],
        reference: dict[str, Any],
        reference_calls: list[Call],
    ) -> Verdict:
        env = state.env
        if getattr(env, "sandbox", None) is None:
            return infra("swe needs an SWE environment restored at s_t")
        if not reference_calls:
            return (
                failed("the expert called no tool") if calls else passed("no call, as the expert")
            )
        if not calls:
            return failed("the expert called a tool; the sample did not")
        theirs_submit = any(c.name == "submit" for c in reference_calls)
        if theirs_submit or any(c.name == "submit" for c in calls):
            same = theirs_submit == any(c.name == "submit" for c in calls)
            return passed("submits, as the expert") if same else failed("submits otherwise")
        sample, expert = await env.afork(2)
        try:
            before = _tree(sample)
            got = [await self._run(sample, c) for c in calls]
            want = [await self._run(expert, c) for c in reference_calls]
            mine, theirs = _tree(sample), _tree(expert)
            if theirs != before:
                if mine == before:
                    return failed("the expert edits the code; the sample changes nothing")
                return await self._same_edit(env.task, sample, expert, mine, theirs)
            if mine != before:
                return failed("changes files where the expert only looked")
            if any(PYTEST.search(c.arguments.get("command", "")) for c in reference_calls):
                return self._test_run(env.task, calls, got)
            shown, wanted = _lines("\n".join(got)), _lines("\n".join(want))
            if not wanted:
                return passed("reads, as the expert's turn that shows nothing")
            share = len(shown & wanted) / len(wanted)
            if share >= SHARE:
                return passed(f"shows {share:.0%} of what the expert's turn shows")
            return failed(f"shows {share:.0%} of what the expert's turn shows", share=share)
        finally:
            await sample.aclose()
            await expert.aclose()

    @staticmethod
    async def _run(env: Any, call: Call) -> str:
        try:
            content, _ = await env.call_tool(call.name, call.arguments)
        except ValueError as exc:
            return f"Error: {exc}"
        return content

    @staticmethod
    def _test_run(task: SWETask, calls: list[Call], outputs: list[str]) -> Verdict:
        commands = " ".join(c.arguments.get("command", "") for c in calls)
        if not PYTEST.search(commands):
            return failed("the expert runs the tests; the sample does not")
        output = "\n".join(outputs)
        names = {t.split("::")[-1].split("[")[0] for t in task.fail_to_pass}
        files = {t.split("::")[0] for t in task.fail_to_pass}
        whole_file = any(f in commands for f in files) and not re.search(r"\s-k\b", commands)
        if any(n in output for n in names) or whole_file:
            return passed("runs a test the issue is about")
        return failed("runs no test the issue is about")

    async def _same_edit(
        self,
        task: SWETask,
        sample: Any,
        expert: Any,
        mine: dict[str, str | None],
        theirs: dict[str, str | None],
    ) -> Verdict:
        if mine == theirs:
            return passed("leaves the same files as the expert's edit")
        clean = materialize(task)
        a = agent_change(sample.sandbox.host_dir(WORKDIR), clean)
        b = agent_change(expert.sandbox.host_dir(WORKDIR), clean)
        same_code = a.files.keys() == b.files.keys() and all(
            _normal_ast(a.files[p]) is not None
            and _normal_ast(a.files[p]) == _normal_ast(b.files[p])
            for p in a.files
        )
        if same_code:
            return passed("the same code as the expert's edit, up to formatting")
        grader = sample.grader
        # The expert's outcome is the same for every sample of a state: graded once.
        key = json.dumps([task.key, sorted(theirs.items())])
        if key not in self._expert_outcomes:
            self._expert_outcomes[key] = (await grader.run_tests(task, b, clean))[1]
        want = self._expert_outcomes[key]
        _, got = await grader.run_tests(task, a, clean)
        if "tests_status" not in got or "tests_status" not in want:
            return failed("its tests do not finish as the expert's do")
        if got["tests_status"] == want["tests_status"]:
            return passed("the same tests pass and fail as after the expert's edit")
        return failed("other tests pass and fail than after the expert's edit")
