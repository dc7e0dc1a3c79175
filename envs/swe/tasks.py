"""SWE task instances: SWE-bench's fields, and where a task's repository comes from.

A :class:`SWETask` carries SWE-bench's fields (``instance_id``, ``repo``,
``problem_statement``, ``patch`` the gold fix, ``test_patch``, ``FAIL_TO_PASS``,
``PASS_TO_PASS``, ``base_commit``) and what pivotgym adds:

- ``bug_patch``: for a bundled repository, the diff that makes the task's tree from the
  release (SWE-smith's ``patch``: the bug); the gold fix is its reverse;
- ``repo_path``: for an instance of a repository of one's own, the local repository
  whose ``base_commit`` is checked out;
- ``test_files``: the test files the grader runs (those of the targeted tests);
- ``family``: the kind of bug (results are broken down by it).

:func:`materialize` makes a task's tree on the host, once (``$PIVOTGYM_CACHE/swe``):
the bundled release with the bug committed on it, by the sandboxes' fixed identity and
date so that its commit id is the same everywhere, or the local repository at
``base_commit``. Sandboxes start from a copy of it at ``/testbed``.

Task files are JSON Lines of SWE-bench instances (:data:`FORMAT`); ``FAIL_TO_PASS`` and
``PASS_TO_PASS`` may be lists or JSON-encoded lists, as the published datasets store
them. A bad instance is a one-line error naming the file, line and field.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.envs.swe.repos import REPOS, Repo, clone, get_repo, git
from pivotgym.errors import DataError, InfraError

WORKDIR = "/testbed"
MAX_TURNS = 30
# SWE-bench's instance fields that pivotgym reads; others (hints_text, created_at,
# version, environment_setup_commit, ...) are kept as they came.
FIELDS = ("instance_id", "repo", "problem_statement", "patch", "test_patch", "FAIL_TO_PASS",
          "PASS_TO_PASS", "base_commit")  # fmt: skip


@dataclass(frozen=True)
class SWETask:
    instance_id: str
    repo: str
    problem_statement: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    patch: str = ""
    test_patch: str = ""
    bug_patch: str = ""
    base_commit: str = ""
    repo_path: str = ""
    test_files: tuple[str, ...] = ()
    family: str | None = None
    max_turns: int = MAX_TURNS
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.instance_id

    @functools.cached_property
    def key(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True)
        return f"swe/{self.instance_id}/{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    @property
    def instruction(self) -> str:
        return self.problem_statement

    @property
    def bundled(self) -> Repo | None:
        """The bundled release the task is made from (``None``: a local repository)."""
        return None if self.repo_path else get_repo(self.repo)

    @property
    def python_path(self) -> str:
        """Where the package is imported from, inside the sandbox."""
        repo = self.bundled
        return f"{WORKDIR}/src" if repo is not None and repo.python_path == "src" else WORKDIR

    @property
    def pytest_addopts(self) -> str:
        """What every pytest run of the task's repository adds (:attr:`Repo.timed`)."""
        repo = self.bundled
        return repo.pytest_addopts if repo is not None else ""

    def to_json(self) -> dict[str, Any]:
        """The task as a SWE-bench instance, with pivotgym's fields beside."""
        out = {
            **self.extra,
            "instance_id": self.instance_id,
            "repo": self.repo,
            "problem_statement": self.problem_statement,
            "patch": self.patch,
            "test_patch": self.test_patch,
            "FAIL_TO_PASS": list(self.fail_to_pass),
            "PASS_TO_PASS": list(self.pass_to_pass),
            "base_commit": self.base_commit,
            "test_files": list(self.test_files),
            "max_turns": self.max_turns,
        }
        if self.bug_patch:
            out["bug_patch"] = self.bug_patch
        if self.repo_path:
            out["repo_path"] = self.repo_path
        if self.family is not None:
            out["family"] = self.family
        return out


def _tests(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):  # the published datasets store the list JSON-encoded
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError("must be a list of test ids, or one JSON-encoded",
                            field=where) from None  # fmt: skip
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise DataError("must be a list of test ids (strings)", field=where)
    return tuple(value)


def _string(data: dict[str, Any], key: str, required: bool = True) -> str:
    value = data.get(key, None if required else "")
    if not isinstance(value, str):
        raise DataError("missing" if value is None else "must be a string", field=key)
    return value


def task_from_json(data: Any, *, base: Path | None = None) -> SWETask:
    """A task from a SWE-bench instance (with pivotgym's fields, or without them, then
    with ``repo_path`` naming a local repository; a relative one is taken from
    ``base``). A bad instance is a ``DataError`` naming the field."""
    if not isinstance(data, dict):
        raise DataError("must be a JSON object (a SWE-bench instance)")
    instance = _string(data, "instance_id")
    repo = _string(data, "repo")
    repo_path = _string(data, "repo_path", required=False)
    if repo_path:
        path = Path(repo_path) if base is None else (base / repo_path)
        repo_path = str(path.resolve())
        if not _string(data, "base_commit"):
            raise DataError("an instance of a local repository needs its commit",
                            field="base_commit")  # fmt: skip
    elif repo not in REPOS:
        raise DataError(
            f"{repo!r} is not a bundled repository ({', '.join(REPOS)}): give the instance a "
            "'repo_path' to a local checkout of it",
            field="repo",
        )
    fail, passing = (
        _tests(data.get("FAIL_TO_PASS"), "FAIL_TO_PASS"),
        _tests(data.get("PASS_TO_PASS", []), "PASS_TO_PASS"),
    )
    if not fail:
        raise DataError("an instance needs at least one test that its fix makes pass",
                        field="FAIL_TO_PASS")  # fmt: skip
    files = (_tests(data["test_files"], "test_files") if data.get("test_files")
             else sorted({t.split("::")[0] for t in (*fail, *passing)}))  # fmt: skip
    known = {*FIELDS, "bug_patch", "repo_path", "test_files", "family", "max_turns"}
    try:
        return SWETask(
            instance_id=instance,
            repo=repo,
            problem_statement=_string(data, "problem_statement"),
            fail_to_pass=fail,
            pass_to_pass=passing,
            patch=_string(data, "patch", required=False),
            test_patch=_string(data, "test_patch", required=False),
            bug_patch=_string(data, "bug_patch", required=False),
            base_commit=_string(data, "base_commit", required=False),
            repo_path=repo_path,
            test_files=tuple(files),
            family=data.get("family"),
            max_turns=int(data.get("max_turns", MAX_TURNS)),
            extra={k: v for k, v in data.items() if k not in known},
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"malformed ({exc})") from None


def load_task_file(path: str | Path) -> list[SWETask]:
    path = Path(path)
    out = []
    for lineno, row in jsonl.rows(path):
        try:
            out.append(task_from_json(row, base=path.parent))
        except DataError as exc:
            raise DataError(exc.problem, file=path, line=lineno, field=exc.field) from None
    return out


def encode_tasks(tasks: Sequence[SWETask]) -> bytes:
    return "".join(json.dumps(t.to_json(), sort_keys=True) + "\n" for t in tasks).encode()


class SWETaskFormat:
    """JSON Lines files of SWE-bench instances (``.jsonl`` or ``.jsonl.gz``), or a JSON
    list of them as SWE-bench publishes; and the tasks trajectories carry inline."""

    def load(self, path: str | Path) -> Sequence[SWETask]:
        path = Path(path)
        if path.suffix == ".json":
            try:
                rows = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read SWE-bench instances: {exc}", file=path) from None
            if not isinstance(rows, list):
                raise DataError("must be a list of SWE-bench instances", file=path)
            out = []
            for i, row in enumerate(rows):
                try:
                    out.append(task_from_json(row, base=path.parent))
                except DataError as exc:
                    raise DataError(exc.problem, file=path, field=f"[{i}].{exc.field}"
                                    if exc.field else f"[{i}]") from None  # fmt: skip
            return out
        return load_task_file(path)

    def from_trajectories(self, trajectories: Sequence[Any]) -> Sequence[SWETask]:
        seen: dict[str, SWETask] = {}
        for t in trajectories:
            try:
                task = task_from_json(t.task, base=t.base_dir)
            except DataError as exc:
                raise DataError(exc.problem, field=f"{t.id}: task.{exc.field}") from None
            seen.setdefault(task.key, task)
        return list(seen.values())


FORMAT = SWETaskFormat()


# -------------------------------------------------------------------------- trees


def cache_root() -> Path:
    root = Path(os.environ.get("PIVOTGYM_CACHE") or Path.home() / ".cache" / "pivotgym")
    return root / "swe" / "trees"


def materialize(task: SWETask) -> Path:
    """The task's tree on the host (module docstring), made once and then reused."""
    digest = hashlib.sha256(
        json.dumps([task.repo, task.repo_path, task.base_commit, task.bug_patch]).encode()
    ).hexdigest()[:20]
    out = cache_root() / f"{task.repo.replace('/', '__')}-{digest}"
    if (out / ".git").is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=out.parent))
    tree = scratch / "testbed"
    try:
        if task.repo_path:
            _checkout(task, tree)
        else:
            clone(get_repo(task.repo), tree)
            if task.bug_patch:
                apply_diff(tree, task.bug_patch, "bug_patch")
                git("commit", "-q", "-a", "-m", "the task's state", cwd=tree)
        if task.base_commit and not task.repo_path:
            head = git("rev-parse", "HEAD", cwd=tree).strip()
            if head != task.base_commit:
                raise DataError(f"the tree's commit is {head}, the task says {task.base_commit}",
                                field=f"{task.instance_id}: base_commit")  # fmt: skip
        # Made meanwhile by another process, the tree is there already, and the same.
        with contextlib.suppress(OSError):
            tree.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _checkout(task: SWETask, tree: Path) -> None:
    source = Path(task.repo_path)
    if not (source / ".git").exists():
        raise DataError("no git repository there", file=source, field="repo_path")
    if git("status", "--porcelain", cwd=source).strip():
        raise DataError("the repository has uncommitted changes: commit or stash them",
                        file=source, field="repo_path")  # fmt: skip
    git("clone", "-q", "--no-hardlinks", "--no-checkout", str(source), str(tree), cwd=tree.parent)
    try:
        git("checkout", "-q", task.base_commit, cwd=tree)
    except InfraError:
        raise DataError(f"no commit {task.base_commit!r} in {source}",
                        field=f"{task.instance_id}: base_commit") from None  # fmt: skip
    shutil.rmtree(tree / ".git" / "hooks", ignore_errors=True)


def apply_diff(tree: Path, diff: str, name: str) -> None:
    """Apply the unified diff ``diff`` (the task's field ``name``) to ``tree``."""
    patch = tree.parent / f"{name}.diff"
    patch.write_text(diff)
    try:
        git("apply", str(patch), cwd=tree)
    except InfraError as exc:
        raise DataError(f"does not apply: {exc}", field=name) from None
    finally:
        patch.unlink()
