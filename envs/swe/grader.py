"""SWE episodes graded as SWE-bench grades a prediction, where the agent cannot reach.

The agent's sandbox is never graded in place. The grader reads its repository from the
host side (without following any link the agent made), takes the changes the agent
made to the task's tree, and applies those that a fix may make to a clean copy of the
tree in a fresh sandbox, with the task's ``test_patch`` over it, as SWE-bench applies
its test patch over the model's. There it runs the task's test files with pytest and
reads the outcome of the ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` tests from its report.
The reward is 1 when every one of them passes (SWE-bench's *resolved*), else 0; the
info is SWE-bench's report (``tests_status`` with the ``success`` and ``failure`` of
each list) with the patch graded and what was left out.

What a fix may change (:func:`graded_change`): the repository's source files. Left
out, and listed in ``ignored`` with the reason:

- the tests (any file in a ``tests``/``test``/``testing`` folder, ``test_*.py``,
  ``*_test.py``, ``conftest.py``): the tests run as the task has them;
- files that configure how Python or pytest run (``pytest.ini``, ``tox.ini``,
  ``setup.cfg``, ``setup.py``, ``pyproject.toml``, ``*.pth``, ``sitecustomize.py``,
  ``usercustomize.py``);
- packaging metadata (an ``*.egg-info`` or ``*.dist-info`` folder: an
  ``entry_points.txt`` there loads a pytest plugin);
- a new file that is not a Python module in one of the repository's packages (a folder
  with an ``__init__.py``): anywhere else, at the top, under ``src/``, or in a new
  folder, a module could shadow the standard library's or pytest itself;
- git's folder, and anything that is not a regular file (links, FIFOs).

So editing a test, planting a ``conftest.py`` or a ``pytest.ini``, or shadowing a module
changes nothing. What remains is the task's own nature: the tests run the code the
agent wrote, in the same process as pytest, so they judge what that code does.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pivotgym.core.grader import Episode
from pivotgym.envs.swe.tasks import WORKDIR, SWETask, apply_diff, materialize
from pivotgym.errors import DataError
from pivotgym.sandbox.state import read_tree

TEST_DIRS = frozenset({"tests", "test", "testing"})
CONFIG_FILES = frozenset({"pytest.ini", "tox.ini", "setup.cfg", "setup.py", "pyproject.toml",
                          "sitecustomize.py", "usercustomize.py"})  # fmt: skip
METADATA = re.compile(r"(^|/)[^/]+\.(egg|dist)-info(/|$)")
# What running the code leaves behind, which no fix is made of: pytest's cache, byte code.
CACHES = re.compile(r"(^|/)(\.pytest_cache|__pycache__)(/|$)|\.pyc$")
REPORT = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED) (\S.*?)(?: - .*)?$", re.M)
# Room the graded run has: every test's report line must come back whole.
GRADER_OUTPUT_BYTES = 4 << 20


def is_test_file(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        bool(TEST_DIRS & set(parts[:-1]))
        or name == "conftest.py"
        or (name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")))
    )


def graded_change(path: str, clean: dict[str, Any], kind: str) -> str | None:
    """``None`` when a fix may make this change to ``path`` (module docstring), else why
    it is left out. ``kind`` is the entry's kind in the agent's tree (``""``: deleted)."""
    if path == ".git" or path.startswith(".git/"):
        return "git's own folder"
    if kind not in ("", "f"):
        return "not a regular file"
    if is_test_file(path):
        return "a test: the tests run as the task has them"
    name = path.rsplit("/", 1)[-1]
    if name in CONFIG_FILES or name.endswith(".pth"):
        return "configures how Python or pytest run"
    if METADATA.search(path):
        return "packaging metadata (its entry points load pytest plugins)"
    if path not in clean:
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        if not name.endswith(".py") or f"{folder}/__init__.py" not in clean:
            return "a new file outside the repository's packages (it could shadow a module)"
    return None


@dataclass(frozen=True)
class Change:
    """The agent's tree against the task's: files changed, added, deleted (with data),
    and what the grader left out."""

    files: dict[str, bytes | None]  # path -> new bytes, None: deleted
    ignored: dict[str, str]

    def patch(self, clean_root: Path) -> str:
        """The graded change as a unified diff (SWE-bench's ``model_patch``)."""
        out = []
        for path, data in sorted(self.files.items()):
            before_path = clean_root / path
            before = before_path.read_bytes() if before_path.is_file() else None
            a = [] if before is None else before.decode("utf-8", "replace").splitlines(True)
            b = [] if data is None else data.decode("utf-8", "replace").splitlines(True)
            out.extend(difflib.unified_diff(
                a, b, "/dev/null" if before is None else f"a/{path}",
                "/dev/null" if data is None else f"b/{path}",
            ))  # fmt: skip
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def agent_change(agent_root: Path, clean_root: Path) -> Change:
    """What the agent changed below ``agent_root`` (its sandbox's workdir, read from the
    host) against the task's clean tree."""
    agent = read_tree(agent_root, lambda rel, head: not rel.startswith(".git/"))
    clean = read_tree(clean_root, lambda rel, head: False)
    files: dict[str, bytes | None] = {}
    ignored: dict[str, str] = {}
    for path, entry in agent.items():
        if entry.kind == "d" or CACHES.search(path):
            continue
        before = clean.get(path)
        if (
            before is not None
            and before.kind == entry.kind == "f"
            and before.sha256 == entry.sha256
        ):
            continue
        why = graded_change(path, clean, entry.kind)
        if why is None and entry.data is None:
            why = "too large to grade"
        if why is None:
            files[path] = entry.data
        elif not path.startswith(".git/"):
            ignored[path] = why
    for path, entry in clean.items():
        if entry.kind != "d" and path not in agent:
            why = graded_change(path, clean, "")
            if why is None:
                files[path] = None
            elif not path.startswith(".git/"):
                ignored[path] = why
    return Change(files, ignored)


def _apply(tree: Path, change: Change) -> None:
    """Write ``change`` over ``tree``: deletions first, then files, each replacing
    whatever stands at its path or in the way of its folder."""
    for path, data in sorted(change.files.items(), key=lambda item: item[1] is not None):
        target = tree / path
        if data is None:
            _remove(target)
            continue
        for parent in reversed(target.relative_to(tree).parents[:-1]):
            if (tree / parent).is_file() or (tree / parent).is_symlink():
                (tree / parent).unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(target)
        target.write_bytes(data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def statuses(output: str) -> dict[str, str]:
    """Each test's outcome from pytest's ``-rA`` summary; a test reported failed or in
    error anywhere counts as such, whatever else was printed."""
    found: dict[str, str] = {}
    for outcome, node in REPORT.findall(output):
        if found.get(node) in ("FAILED", "ERROR"):
            continue
        found[node] = outcome
    return found


class SWEGrader:
    """SWE-bench's verdict on the episode's end state (module docstring); ``env`` makes
    the fresh sandbox (its backend and its tasks' sandbox spec)."""

    def __init__(self, env: Any) -> None:
        self.env = env

    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        task: SWETask = episode.task
        clean_root = materialize(task)
        sandbox = episode.world.sandbox  # type: ignore[attr-defined]
        change = agent_change(sandbox.host_dir(WORKDIR), clean_root)
        return await self.run_tests(task, change, clean_root)

    async def check_instance(self, task: SWETask) -> None:
        """Refuse (``DataError``, naming the instance and field) an instance whose
        ``FAIL_TO_PASS`` tests do not all fail on its tree, or whose gold ``patch`` does
        not make every ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` test pass."""
        clean_root = materialize(task)
        _, before = await self.run_tests(task, Change({}, {}), clean_root)
        if "note" in before:
            raise DataError(f"{before['note']} before the fix",
                            field=f"{task.instance_id}: FAIL_TO_PASS")  # fmt: skip
        passing = before.get("tests_status", {}).get("FAIL_TO_PASS", {}).get("success")
        if passing:
            raise DataError(f"{len(passing)} of them pass before the fix, {passing[0]!r} first",
                            field=f"{task.instance_id}: FAIL_TO_PASS")  # fmt: skip
        if not task.patch:
            raise DataError("no gold patch to check the tests with",
                            field=f"{task.instance_id}: patch")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="pivotgym-swe-check-") as scratch:
            fixed = Path(scratch) / "testbed"
            shutil.copytree(clean_root, fixed, symlinks=True)
            apply_diff(fixed, task.patch, f"{task.instance_id}: patch")
            change = agent_change(fixed, clean_root)
        reward, after = await self.run_tests(task, change, clean_root)
        if "note" in after:
            raise DataError(f"{after['note']} after the gold patch",
                            field=f"{task.instance_id}: patch")  # fmt: skip
        if reward != 1.0:
            status = after.get("tests_status", {})
            failing = [t for k in ("FAIL_TO_PASS", "PASS_TO_PASS")
                       for t in status.get(k, {}).get("failure", [])]  # fmt: skip
            raise DataError(
                f"the gold patch leaves {len(failing)} test(s) failing, {failing[:1]} first",
                field=f"{task.instance_id}: patch",
            )

    async def clean_box(self, task: SWETask, clean_root: Path) -> Any:
        """A fresh grading sandbox of the task's clean tree, for :meth:`run_tests` to apply
        a change to (a verifier makes one while its sample still runs)."""
        spec = self.env.spec_for(task)
        limits = replace(spec.limits, max_output_bytes=GRADER_OUTPUT_BYTES)
        spec = replace(spec, files=clean_root, limits=limits,
                       env={**spec.env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                       labels={**spec.labels, "role": "grader"})  # fmt: skip
        return await self.env.backend.create(spec)

    async def run_tests(
        self, task: SWETask, change: Change, clean_root: Path, box: Any = None
    ) -> tuple[float, dict[str, Any]]:
        """Apply ``change`` (and the task's test patch) to a clean tree, run the task's
        tests there in a fresh sandbox (``box``, from :meth:`clean_box`, or a new one),
        and give SWE-bench's verdict."""
        box = box or await self.clean_box(task, clean_root)
        try:
            # Written from the host into the fresh sandbox's own copy of the clean tree:
            # nothing of the agent's sandbox, and nothing it ran, takes part.
            tree = box.host_dir(WORKDIR)
            try:
                _apply(tree, change)
            except OSError as exc:  # a file where the clean tree has a folder, or the reverse
                return self._unresolved(f"the change cannot be applied: {exc}", change, clean_root)
            if task.test_patch:
                apply_diff(tree, task.test_patch, "test_patch")
            # The test files, not the ids: pytest does not take every id it prints back
            # (parameters with quotes or spaces), and SWE-bench too reads a log. A line a
            # test, and no captured output: what the agent's code prints cannot crowd the
            # report out.
            result = await box.exec(["python3", "-m", "pytest", "-p", "no:cacheprovider",
                                     "-q", "--no-header", "--tb=no", "--show-capture=no",
                                     "-rfEsxXp", *task.test_files])  # fmt: skip
        finally:
            await box.close()
        if result.timed_out or result.truncated:
            why = "the tests timed out" if result.timed_out else "the test run's report was cut"
            return self._unresolved(why, change, clean_root)
        found = statuses(result.output)

        def split(tests: tuple[str, ...]) -> dict[str, list[str]]:
            ok = [t for t in tests if found.get(t) in ("PASSED", "XPASS")]
            return {"success": ok, "failure": [t for t in tests if t not in ok]}

        status = {
            "FAIL_TO_PASS": split(task.fail_to_pass),
            "PASS_TO_PASS": split(task.pass_to_pass),
        }
        resolved = not status["FAIL_TO_PASS"]["failure"] and not status["PASS_TO_PASS"]["failure"]
        return float(resolved), {
            "resolved": resolved,
            "tests_status": status,
            "patch": change.patch(clean_root),
            "ignored": change.ignored,
        }

    @staticmethod
    def _unresolved(note: str, change: Change, clean_root: Path) -> tuple[float, dict[str, Any]]:
        return 0.0, {"resolved": False, "note": note, "patch": change.patch(clean_root),
                     "ignored": change.ignored}  # fmt: skip
