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
  once a state), where the expert's edit resolves the issue. So an equivalent rewrite
  of the fix passes, and so does another edit that makes every test pass; a change to
  the tests never counts. Where the expert's edit does not resolve the issue alone (a
  wrong guess it takes back, one hunk of a longer fix) only the first two rules hold:
  there the tests' outcome would be shared by any edit that changes nothing they see.
- **a test run** (a command that runs pytest and changes no file) passes when one of
  its pytest runs takes in a test the issue is about and its output shows tests ran:
  the run names a ``FAIL_TO_PASS`` test, its file or a folder above it (or nothing: the
  suite where it stands), narrows nothing away (``-k``, ``-m``, ``--deselect``,
  ``--collect-only``, ``--last-failed``, ...), and the output shows tests ran (pytest's
  count of passed or failed tests, or its progress through a file). A test run is for
  seeing the bug or the fix at work; any run that exercises the failing tests shows it,
  and one that runs other tests, or only collects them, does not.
- **exploration** (a command or view that changes nothing and runs no test) passes when
  it shows the agent what the expert's showed: at least half of the informative lines
  of the expert's output (line numbers and blank lines aside) appear in the sample's.
  An exploring turn is worth what it reveals; two greps or views that bring up the
  same code are the same step, and one that reveals other code is not.
- ``submit`` passes only where the expert submits.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from pivotgym.envs.swe.grader import CACHES, Change, agent_change
from pivotgym.envs.swe.tasks import WORKDIR, SWETask, materialize
from pivotgym.sandbox.state import read_tree
from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, infra, passed

GIT = re.compile(r"^\.git(/|$)")  # git's own records: no change of the code
_PYTHON = re.compile(r"^python(\d(\.\d+)?)?$")
# What pytest prints when tests ran: "3 failed, 40 passed in 0.5s", or the progress of
# each file ("..F.  [ 40%]") where the output was cut before the count.
_RAN = re.compile(r"\b\d+ (passed|failed)\b|\[\s*\d+%\]$", re.M)
# Options that leave tests out of a run, or run none.
NARROWING = frozenset({"-k", "-m", "--deselect", "--ignore", "--ignore-glob", "--co",
                       "--collect-only", "--lf", "--last-failed", "--sw", "--stepwise",
                       "--setup-only", "--setup-plan", "--fixtures", "--markers", "--version",
                       "-h", "--help"})  # fmt: skip
# Options whose value is the next word, not a test to run.
VALUED = frozenset({"-k", "-m", "-p", "-c", "-o", "-r", "-W", "--deselect", "--ignore",
                    "--ignore-glob", "--rootdir", "--tb", "--maxfail", "--durations",
                    "--confcutdir", "--basetemp", "--import-mode", "--capture", "--color",
                    "--override-ini", "--log-level", "--junitxml", "--junit-xml"})  # fmt: skip
_NUMBERED = re.compile(r"^\s*\d+[\t:-]")
SHARE = 0.5  # of the expert's informative lines an exploring turn must show
MAX_AST_BYTES = 1 << 20  # larger than any module of the bundled repositories
KEPT = 256  # states whose expert turn and outcome are kept


def _tree(env: Any) -> dict[str, str | None]:
    entries = read_tree(env.sandbox.host_dir(WORKDIR))
    return {p: e.sha256 or e.kind for p, e in entries.items()
            if e.kind != "d" and not CACHES.search(p) and not GIT.search(p)}  # fmt: skip


def pytest_runs(command: str) -> list[tuple[list[str], bool]]:
    """Each pytest run in a shell command (``pytest``, ``py.test``, ``python -m pytest``):
    the tests it names, and whether it narrows (:data:`NARROWING`)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the shell would not run it either
        return []
    runs: list[tuple[list[str], bool]] = []
    segment: list[str] = []
    for word in [*words, ";"]:
        if word and all(c in "();<>|&" for c in word):
            if ">" in word or "<" in word:
                segment.append(word)  # a redirection: its target follows
                continue
            runs.extend(_pytest_run(segment))
            segment = []
        else:
            segment.append(word)
    return runs


def _pytest_run(words: list[str]) -> list[tuple[list[str], bool]]:
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value before the program
    if not words:
        return []
    program = words[0].rsplit("/", 1)[-1]
    if program in ("pytest", "py.test"):
        rest = words[1:]
    elif _PYTHON.match(program) and words[1:3] == ["-m", "pytest"]:
        rest = words[3:]
    else:
        return []
    tests: list[str] = []
    narrows = skip = False
    for word in rest:
        if skip:  # an option's value, or a redirection's target
            skip = False
        elif word.startswith("-"):
            short = not word.startswith("--")
            narrows |= word.split("=", 1)[0] in NARROWING or (short and word[:2] in ("-k", "-m"))
            skip = word in VALUED  # "-k EXPR", "--tb short"; "-kEXPR", "--tb=short" hold theirs
        elif ">" in word or "<" in word:
            skip = True
        elif not word.isdigit():  # a number is the stream a redirection moves ("2>&1")
            tests.append(word)
    return [(tests, narrows)]


def takes_in(tests: list[str], node: str) -> bool:
    """Whether a pytest run naming ``tests`` (paths or node ids, from the repository's
    top or a folder below it) runs the test ``node``."""
    if not tests:
        return True
    file = node.split("::")[0]
    for test in tests:
        test = test.removeprefix(f"{WORKDIR}/").removeprefix("./").rstrip("/")
        if test in ("", ".", WORKDIR) or test in (node, file):
            return True
        if file.startswith(test + "/") or node.startswith((test + "::", test + "[")):
            return True  # a folder above the file, or a class or function of it
        if node.endswith("/" + test) or file.endswith("/" + test):
            return True  # from a folder below the top
    return False


def _normal_ast(data: bytes | None) -> str | None:
    """The syntax tree of a Python file, as text; ``None`` for what does not parse (or
    is too large or too deep to: the agent may write any file)."""
    if data is None or len(data) > MAX_AST_BYTES:
        return None
    try:
        return ast.dump(ast.parse(data.decode("utf-8", "replace")), annotate_fields=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _command(call: Call) -> str:
    command = call.arguments.get("command") if call.name == "bash" else None
    return command if isinstance(command, str) else ""


def _lines(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        line = _NUMBERED.sub("", line).strip()
        if len(line) > 3 and not line.startswith("Here's the result of running"):
            out.add(line)
    return out


@dataclass(frozen=True)
class _ExpertTurn:
    """What the expert's turn does at a state: the same for every sample of it."""

    outputs: list[str]
    tree: dict[str, str | None]  # the workdir after it (:func:`_tree`)
    change: Change  # against the task's clean tree


class SWEVerifier(Verifier):
    """See the module docstring."""

    name = "swe"

    def __init__(self) -> None:
        # A profiling pass visits a state's samples together: the expert's turn and its
        # graded outcome are made once a state, and the last few states' kept.
        self._expert_turns: dict[str, _ExpertTurn] = {}
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
        key = json.dumps([state.key, [[c.name, c.arguments] for c in reference_calls]],
                         sort_keys=True)  # fmt: skip
        expert = self._expert_turns.get(key)
        forks = await env.afork(1 if expert else 2)
        sample = forks[0]
        box: asyncio.Task[Any] | None = None
        try:
            before = _tree(sample)
            if expert is None:
                got, expert = await asyncio.gather(
                    self._run_all(sample, calls), self._expert_turn(env.task, forks[1],
                                                                    reference_calls))  # fmt: skip
                _remember(self._expert_turns, key, expert)
            else:
                if self._grades_edits(env.task, expert, before):
                    # An edit that differs from the expert's will be graded: its sandbox
                    # starts while the sample runs.
                    box = asyncio.create_task(
                        sample.grader.clean_box(env.task, materialize(env.task))
                    )
                got = await self._run_all(sample, calls)
            mine, theirs = _tree(sample), expert.tree
            if theirs != before:
                if mine == before:
                    return failed("the expert edits the code; the sample changes nothing")
                owned, box = box, None  # _same_edit uses or discards it
                return await self._same_edit(env.task, sample, expert, mine, owned)
            if mine != before:
                return failed("changes files where the expert only looked")
            if any(pytest_runs(_command(c)) for c in reference_calls):
                return self._test_run(env.task, calls, got)
            shown, wanted = _lines("\n".join(got)), _lines("\n".join(expert.outputs))
            if not wanted:
                return passed("reads, as the expert's turn that shows nothing")
            share = len(shown & wanted) / len(wanted)
            if share >= SHARE:
                return passed(f"shows {share:.0%} of what the expert's turn shows")
            return failed(f"shows {share:.0%} of what the expert's turn shows", share=share)
        finally:
            if box is not None:  # made for a grading that was not needed
                await _discard(box)
            for fork in forks:
                await fork.aclose()

    def _grades_edits(self, task: SWETask, expert: _ExpertTurn, before: dict[str, Any]) -> bool:
        """Whether an edit other than the expert's is graded at this state: the expert's
        turn edits, and its graded outcome (known) resolves the issue."""
        if expert.tree == before:
            return False
        outcome = self._expert_outcomes.get(json.dumps([task.key, sorted(expert.tree.items())]))
        return bool(outcome and outcome.get("resolved"))

    async def _expert_turn(self, task: SWETask, env: Any, calls: list[Call]) -> _ExpertTurn:
        outputs = await self._run_all(env, calls)
        change = agent_change(env.sandbox.host_dir(WORKDIR), materialize(task))
        return _ExpertTurn(outputs, _tree(env), change)

    @staticmethod
    async def _run_all(env: Any, calls: list[Call]) -> list[str]:
        out = []
        for call in calls:
            try:
                content, _ = await env.call_tool(call.name, call.arguments)
            except ValueError as exc:
                content = f"Error: {exc}"
            out.append(content)
        return out

    @staticmethod
    def _test_run(task: SWETask, calls: list[Call], outputs: list[str]) -> Verdict:
        runs = [run for c in calls for run in pytest_runs(_command(c))]
        if not runs:
            return failed("the expert runs the tests; the sample does not")
        if not any(not narrows and any(takes_in(tests, t) for t in task.fail_to_pass)
                   for tests, narrows in runs):  # fmt: skip
            return failed("runs no test the issue is about")
        if not _RAN.search("\n".join(outputs)):
            return failed("its output shows no test ran")
        return passed("runs a test the issue is about")

    async def _same_edit(
        self,
        task: SWETask,
        sample: Any,
        expert: _ExpertTurn,
        mine: dict[str, str | None],
        box: asyncio.Task[Any] | None,
    ) -> Verdict:
        """Judge an edit (module docstring); ``box``, a grading sandbox made ahead, is
        used or discarded."""
        used: list[bool] = []
        try:
            return await self._judge_edit(task, sample, expert, mine, box, used)
        finally:
            if box is not None and not used:
                await _discard(box)

    async def _judge_edit(
        self,
        task: SWETask,
        sample: Any,
        expert: _ExpertTurn,
        mine: dict[str, str | None],
        box: asyncio.Task[Any] | None,
        used: list[bool],
    ) -> Verdict:
        if mine == expert.tree:
            return passed("leaves the same files as the expert's edit")
        clean = materialize(task)
        a, b = agent_change(sample.sandbox.host_dir(WORKDIR), clean), expert.change
        same_code = a.files.keys() == b.files.keys() and all(
            _normal_ast(a.files[p]) is not None
            and _normal_ast(a.files[p]) == _normal_ast(b.files[p])
            for p in a.files
        )
        if same_code:
            return passed("the same code as the expert's edit, up to formatting")
        grader = sample.grader
        key = json.dumps([task.key, sorted(expert.tree.items())])
        if key not in self._expert_outcomes:
            _remember(self._expert_outcomes, key, (await grader.run_tests(task, b, clean))[1])
        want = self._expert_outcomes[key]
        if not want.get("resolved"):
            # A wrong guess, or one step of a longer fix: the tests' outcome does not
            # stand for what the edit is, and any harmless edit would share it.
            return failed("other code than the expert's edit, which does not resolve alone")
        if box is not None:
            used.append(True)  # run_tests closes it
        # The sample's fork has given its change: it is closed while the tests run.
        (_, got), _ = await asyncio.gather(
            grader.run_tests(task, a, clean, await box if box is not None else None),
            sample.aclose(),
        )
        if "tests_status" not in got or "tests_status" not in want:
            return failed("its tests do not finish as the expert's do")
        if got["tests_status"] == want["tests_status"]:
            return passed("the same tests pass and fail as after the expert's edit")
        return failed("other tests pass and fail than after the expert's edit")


async def _discard(box: asyncio.Task[Any]) -> None:
    """Close a grading sandbox made ahead and not used (or stop its making)."""
    try:
        made = await box
    except Exception:  # a sandbox that failed to start, and was not needed, matters not
        return
    await made.close()


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= KEPT:
        del cache[next(iter(cache))]  # the oldest
    cache[key] = value
