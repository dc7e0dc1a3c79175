"""Bug instances: mutations that a repository's tests catch, and the issue a user would
file about each.

- :func:`candidates` lists the mutations (:mod:`pivotgym.envs.swe.mutate`) of the
  package's modules that lie in functions the tests name: a test file that mentions a
  function by name is a test that may cover it (the *targeted* test files).
- :func:`validate` applies one to a working copy and runs its targeted test files: it
  is kept when at least one test that passes on the release fails (``FAIL_TO_PASS``,
  at most :data:`MAX_FAILING`: a bug that breaks everything makes no issue a user would
  file) while the other tests of those files pass as on the release (``PASS_TO_PASS``).
  The tests run on the host's Python and pytest, the ones sandboxes see, on the
  project's own code with a one-line change.
- :func:`statement` writes the issue from the first failing test: what the user called
  (the test's body, as their snippet), what they got (the assertion's report), and a
  title naming the function the snippet calls, in one of several wordings; never the
  file or the line of the bug.
"""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from pivotgym.envs.swe.grader import is_test_file, statuses
from pivotgym.envs.swe.mutate import Mutation, mutations
from pivotgym.envs.swe.repos import Repo
from pivotgym.sandbox import PYTHON_STARTUP, RANDOM_SEED_VAR

MAX_FAILING = 20
TEST_TIMEOUT_S = 20  # a suite runs in seconds; a mutation that makes a loop endless does not


@dataclass(frozen=True)
class Candidate:
    """A mutation of one module of a repository, and the test files that name its
    function."""

    module: str  # the module's path in the repository
    mutation: Mutation
    test_files: tuple[str, ...]


def _test_env(tree: Path, repo: Repo) -> dict[str, str]:
    """The environment of a test run on the host: the seeds the SWE sandboxes set, and
    their start-up hook, and the tests they deselect, so that outcomes and reports agree
    with theirs."""
    path = f"{PYTHON_STARTUP}:{tree / repo.python_path}"
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0", RANDOM_SEED_VAR: "0",
            "PYTEST_ADDOPTS": repo.pytest_addopts}  # fmt: skip


def run_tests(tree: Path, repo: Repo, targets: list[str], tb: str = "no") -> dict[str, str]:
    """Each test's outcome (``PASSED``, ``FAILED``, ...) when pytest runs ``targets`` in
    ``tree``; ``{}`` when the run timed out."""
    env = _test_env(tree, repo)
    try:
        done = subprocess.run(
            ["/usr/bin/python3", "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
             "--no-header", f"--tb={tb}", *targets],
            cwd=tree, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {}
    return statuses(done.stdout)


def failure_report(tree: Path, repo: Repo, test: str) -> str:
    """The ``E`` lines pytest prints for ``test`` failing (its short traceback)."""
    env = _test_env(tree, repo)
    done = subprocess.run(
        ["/usr/bin/python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
         "--tb=short", test],
        cwd=tree, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S,
    )  # fmt: skip
    errors = [line[4:].rstrip() for line in done.stdout.splitlines() if line.startswith("E   ")]
    return "\n".join(errors[:8])


def test_files(tree: Path, repo: Repo) -> list[str]:
    found = []
    for target in repo.tests:
        path = tree / target
        paths = [path] if path.is_file() else sorted(path.rglob("*.py"))
        found += [str(p.relative_to(tree)) for p in paths
                  if p.name.startswith("test_") or p.name.endswith("_test.py")]  # fmt: skip
    return found


def candidates(tree: Path, repo: Repo, rng: random.Random) -> list[Candidate]:
    """Every mutation of the package in a function some test file names, shuffled."""
    tests = {path: (tree / path).read_text(errors="replace") for path in test_files(tree, repo)}
    package = tree / repo.package
    modules = [package] if package.is_file() else sorted(package.rglob("*.py"))
    found = []
    for module in modules:
        rel = str(module.relative_to(tree))
        if is_test_file(rel):
            continue
        for mutation in mutations(module.read_text()):
            name = mutation.function.split(".")[-1]
            if name.startswith("__"):
                continue
            word = re.compile(rf"\b{re.escape(name)}\b")
            targets = tuple(p for p, text in tests.items() if word.search(text))
            if targets:
                found.append(Candidate(rel, mutation, targets))
    rng.shuffle(found)
    return found


@dataclass(frozen=True)
class Validated:
    candidate: Candidate
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]


def validate(
    tree: Path, repo: Repo, candidate: Candidate, baseline: dict[str, str]
) -> Validated | None:
    """The candidate as an instance (module docstring), or ``None`` when no test catches
    it, too many do, or the tests hang. ``tree`` is left as it was."""
    path = tree / candidate.module
    original = path.read_text()
    path.write_text(candidate.mutation.apply(original))
    try:
        found = run_tests(tree, repo, list(candidate.test_files))
    finally:
        path.write_text(original)
    if not found:
        return None
    passing = [t for t, s in found.items() if baseline.get(t) == "PASSED"]
    failing = tuple(t for t in passing if found[t] in ("FAILED", "ERROR"))
    kept = tuple(t for t in passing if found[t] == "PASSED")
    if not failing or len(failing) > MAX_FAILING:
        return None
    return Validated(candidate, failing, kept)


# ------------------------------------------------------------------------- issues

_TITLES = (
    "`{api}` gives a wrong result",
    "Unexpected behaviour of `{api}`",
    "Bug in `{api}`",
    "`{api}` no longer works as documented",
)
_BODIES = (
    "I ran into a problem with `{api}`. This code:\n\n```python\n{snippet}\n```\n\nfails "
    "with:\n\n```\n{error}\n```\n\nI expected it to work.",
    "When I run the following:\n\n```python\n{snippet}\n```\n\nI get\n\n```\n{error}\n```\n\n"
    "which is not what `{api}` should do.",
    "Steps to reproduce:\n\n```python\n{snippet}\n```\n\nActual result:\n\n```\n{error}\n```"
    "\n\nExpected: no error.",
    "It looks like `{api}` is broken. Running\n\n```python\n{snippet}\n```\n\nends in\n\n"
    "```\n{error}\n```",
)


def _snippet(tree: Path, test: str) -> str:
    """The body of the test function named by node id ``test``, dedented."""
    file, *names = test.split("::")
    name = names[-1].split("[")[0] if names else ""
    source = (tree / file).read_text(errors="replace")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = source.splitlines()[body[0].lineno - 1 : node.end_lineno]
            text = textwrap.dedent("\n".join(lines)).strip()
            return "\n".join(text.splitlines()[:15])
    return f"# {name}"


def _api(repo: Repo, snippet: str) -> str:
    top = repo.package.removeprefix("src/").split("/")[0].removesuffix(".py")
    match = re.search(rf"\b({re.escape(top)}(?:\.\w+)+)\s*\(", snippet)
    if match:
        return match.group(1)
    calls = re.findall(r"\b([A-Za-z_]\w*)\s*\(", snippet)
    builtins = {"assert", "print", "len", "list", "dict", "set", "tuple", "str", "int", "range",
                "isinstance"}  # fmt: skip
    named = [c for c in calls if c not in builtins]
    return f"{top}.{named[0]}" if named else top


def statement(tree: Path, repo: Repo, test: str, error: str, rng: random.Random) -> str:
    snippet = _snippet(tree, test)
    api = _api(repo, snippet)
    title = rng.choice(_TITLES).format(api=api)
    body = rng.choice(_BODIES).format(api=api, snippet=snippet, error=error or "(no message)")
    return f"{title}\n\n{body}"
