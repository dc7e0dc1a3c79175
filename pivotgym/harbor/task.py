"""Tasks in Harbor's layout (the Terminal-Bench 2.0 format), on disk or inline.

A task directory holds::

    instruction.md        what the user asks
    task.toml             timeouts, resources, network, workdir (see TaskConfig)
    environment/          files the sandbox starts with; a Dockerfile for image backends
    tests/test.sh         run after the episode; writes the reward to /logs/verifier/reward.txt
    solution/solve.sh     a reference solution (optional)

An inline spec (as a trajectory's ``task`` field may carry) has the same parts as JSON:
``{"name", "instruction", "config": {task.toml as a table}, "environment": {path: text},
"tests": {path: text}, "solution": {path: text}}``; it is written once to a
content-addressed cache directory so that every backend sees an ordinary task folder.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from pivotgym.core import jsonl, toml_lines
from pivotgym.errors import DataError
from pivotgym.sandbox.base import Limits

_PIVOTGYM_KEYS = {
    "workdir": str,
    "exec_timeout_sec": (int, float),
    "max_output_bytes": int,
    "max_processes": int,
    "max_files": int,
    "max_turns": int,
    "normalize": list,
    "family": str,
}


@dataclass(frozen=True)
class TaskConfig:
    """The parts of ``task.toml`` that pivotgym acts on.

    Harbor's own tables: ``[agent] timeout_sec`` (whole episode), ``[verifier]
    timeout_sec``, ``[environment] cpus, memory_mb, storage_mb, allow_internet``.
    pivotgym's table ``[pivotgym]``: ``workdir``, ``exec_timeout_sec`` (one command),
    ``max_output_bytes``, ``max_processes``, ``max_files`` (files and folders the
    sandbox's state may hold, with ``storage_mb`` its disk quota), ``max_turns``,
    ``normalize`` (extra regular expressions whose matches are ignored when replayed
    outputs are compared), ``family``.
    """

    agent_timeout_s: float = 600.0
    verifier_timeout_s: float = 120.0
    cpus: float = 1.0
    memory_mb: int = 1024
    storage_mb: int = 256
    allow_internet: bool = False
    workdir: str = "/app"
    exec_timeout_s: float = 30.0
    max_output_bytes: int = 16_384
    max_processes: int = 128
    max_files: int = 16_384
    max_turns: int = 20
    normalize: tuple[str, ...] = ()
    family: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def limits(self, **overrides: Any) -> Limits:
        """Per-exec sandbox limits from this config; keyword overrides win when not None."""
        values = {
            "timeout_s": self.exec_timeout_s,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "max_output_bytes": self.max_output_bytes,
            "disk_mb": self.storage_mb,
            "max_files": self.max_files,
            "cpus": self.cpus,
            "network": self.allow_internet,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Limits(**values)


def parse_config(table: Mapping[str, Any], source: Path | str) -> TaskConfig:
    def get(section: str, key: str, kinds: Any, default: Any) -> Any:
        value = table.get(section, {}).get(key, default)
        if not isinstance(value, kinds) or isinstance(value, bool) != (kinds is bool):
            raise DataError(
                f"expected {getattr(kinds, '__name__', kinds)}, got {value!r}",
                file=source,
                field=f"{section}.{key}",
            )
        return value

    for section in ("agent", "verifier", "environment", "pivotgym", "metadata"):
        if not isinstance(table.get(section, {}), dict):
            raise DataError("must be a table", file=source, field=section)
    extra = table.get("pivotgym", {})
    for key, value in extra.items():
        if key not in _PIVOTGYM_KEYS:
            raise DataError(
                f"unknown key (known: {', '.join(sorted(_PIVOTGYM_KEYS))})",
                file=source,
                field=f"pivotgym.{key}",
            )
        if not isinstance(value, _PIVOTGYM_KEYS[key]) or isinstance(value, bool):
            raise DataError(
                f"wrong type {type(value).__name__}", file=source, field=f"pivotgym.{key}"
            )
    normalize = tuple(extra.get("normalize", ()))
    if not all(isinstance(p, str) for p in normalize):
        raise DataError(
            "must be a list of regular expressions", file=source, field="pivotgym.normalize"
        )
    env = table.get("environment", {})
    # A top-level allow_internet counts when [environment] has none.
    allow_key = "environment.allow_internet" if "allow_internet" in env else "allow_internet"
    allow = env.get("allow_internet", table.get("allow_internet", False))
    if not isinstance(allow, bool):
        raise DataError("must be true or false", file=source, field=allow_key)
    positive = {
        "environment.cpus": float(get("environment", "cpus", (int, float), 1.0)),
        "environment.memory_mb": get("environment", "memory_mb", int, 1024),
        "environment.storage_mb": get("environment", "storage_mb", int, 256),
        "pivotgym.max_files": extra.get("max_files", 16_384),
        "pivotgym.max_processes": extra.get("max_processes", 128),
    }
    for name, value in positive.items():
        if value <= 0:
            raise DataError(f"must be positive, got {value!r}", file=source, field=name)
    return TaskConfig(
        agent_timeout_s=float(get("agent", "timeout_sec", (int, float), 600.0)),
        verifier_timeout_s=float(get("verifier", "timeout_sec", (int, float), 120.0)),
        cpus=positive["environment.cpus"],
        memory_mb=positive["environment.memory_mb"],
        storage_mb=positive["environment.storage_mb"],
        allow_internet=allow,
        workdir=extra.get("workdir", "/app"),
        exec_timeout_s=float(extra.get("exec_timeout_sec", 30.0)),
        max_output_bytes=extra.get("max_output_bytes", 16_384),
        max_processes=positive["pivotgym.max_processes"],
        max_files=positive["pivotgym.max_files"],
        max_turns=extra.get("max_turns", 20),
        normalize=normalize,
        family=extra.get("family"),
        metadata=table.get("metadata", {}),
    )


@dataclass(frozen=True)
class HarborTask:
    """A task folder in Harbor's layout, loaded and checked."""

    name: str
    root: Path
    instruction: str
    config: TaskConfig

    @property
    def max_turns(self) -> int:
        return self.config.max_turns

    @property
    def family(self) -> str | None:
        return self.config.family

    @property
    def environment_dir(self) -> Path:
        return self.root / "environment"

    @property
    def dockerfile(self) -> Path | None:
        path = self.environment_dir / "Dockerfile"
        return path if path.is_file() else None

    @property
    def tests_dir(self) -> Path:
        return self.root / "tests"

    @property
    def solution(self) -> Path | None:
        path = self.root / "solution" / "solve.sh"
        return path if path.is_file() else None

    def to_json(self) -> dict[str, Any]:
        """The task as an inline spec (what :func:`materialize_inline` takes): how it
        travels in a trajectory or to an env server."""
        table: dict[str, Any] = {}
        if (self.root / "task.toml").is_file():
            table, _ = toml_lines.read(self.root / "task.toml")
        for section, values in table.items():
            if isinstance(values, dict) and any(isinstance(v, dict) for v in values.values()):
                raise DataError("a table nested below a section cannot travel inline",
                                file=self.root / "task.toml", field=section)  # fmt: skip
        spec: dict[str, Any] = {"name": self.name, "instruction": self.instruction,
                                "config": table}  # fmt: skip
        for part in ("environment", "tests", "solution"):
            folder = self.root / part
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            spec[part] = {str(p.relative_to(folder)): encode_file(p.read_bytes()) for p in files}
        return spec

    @functools.cached_property
    def key(self) -> str:
        """Content hash of the task folder: equal tasks share snapshots and images."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(self.root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]


def load_task(path: str | Path) -> HarborTask:
    """Load one task directory, checking that its parts are there and well formed."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("not a task directory", file=root)
    instruction_file = root / "instruction.md"
    if not instruction_file.is_file():
        raise DataError("missing instruction.md", file=root)
    toml_file = root / "task.toml"
    table: dict[str, Any] = {}
    text = ""
    if toml_file.is_file():
        table, text = toml_lines.read(toml_file)
    try:
        config = parse_config(table, toml_file)
    except DataError as exc:
        raise toml_lines.locate(exc, text) from None
    if not (root / "tests" / "test.sh").is_file():
        raise DataError("missing tests/test.sh", file=root)
    if (root / "environment").exists() and not (root / "environment").is_dir():
        raise DataError("environment must be a directory", file=root / "environment")
    return HarborTask(
        name=root.name, root=root, instruction=instruction_file.read_text(), config=config
    )


def task_cache_dir() -> Path:
    configured = os.environ.get("PIVOTGYM_CACHE_DIR")
    base = (
        Path(configured)
        if configured
        else Path(tempfile.gettempdir()) / f"pivotgym-cache-{os.getuid()}"
    )
    return base / "tasks"


def materialize_inline(spec: Mapping[str, Any], *, source: str | Path | None = None) -> HarborTask:
    """Write an inline task spec to its cache folder (once) and load it."""
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("instruction"), str):
        raise DataError(
            "inline task needs string fields 'name' and 'instruction'", file=source, field="task"
        )
    name = spec["name"]
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        # The name names the task's folder in the cache: one component, never a way out.
        raise DataError(f"a task name is one path component, not {name!r}", file=source,
                        field="task.name")  # fmt: skip
    unknown = set(spec) - {"name", "instruction", "config", "environment", "tests", "solution"}
    if unknown:
        raise DataError(f"unknown field(s) {', '.join(sorted(unknown))}", file=source, field="task")
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    root = task_cache_dir() / f"{spec['name']}-{hashlib.sha256(canonical).hexdigest()[:16]}"
    if not (root / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(dir=_ensure(root.parent)))
        (tmp / "instruction.md").write_text(spec["instruction"])
        (tmp / "task.toml").write_text(dump_toml(spec.get("config", {})))
        for part in ("environment", "tests", "solution"):
            files = spec.get(part, {})
            if not isinstance(files, dict):
                raise DataError(
                    "must map paths to file contents", file=source, field=f"task.{part}"
                )
            (tmp / part).mkdir()
            for rel, content in files.items():
                dest = (tmp / part / rel).resolve()
                if not dest.is_relative_to((tmp / part).resolve()):
                    raise DataError(
                        f"path escapes the task: {rel!r}", file=source, field=f"task.{part}"
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(_file_bytes(content, source, f"task.{part}.{rel}"))
                if part != "environment" and rel.endswith(".sh"):
                    dest.chmod(0o755)
        (tmp / ".complete").write_text("")
        try:
            tmp.rename(root)
        except OSError:  # another process materialized it first
            shutil.rmtree(tmp, ignore_errors=True)
    task = load_task(root)
    return HarborTask(
        name=spec["name"], root=root, instruction=task.instruction, config=task.config
    )


class InlineTasks(Sequence[HarborTask]):
    """Inline task specs that become task folders only when used.

    A bundled split holds thousands of tasks while an episode needs one: names are
    known at once, and ``tasks[i]`` writes (once) and loads only that task's folder.
    """

    def __init__(self, specs: Sequence[tuple[Mapping[str, Any], str]]) -> None:
        for spec, source in specs:
            if not isinstance(spec.get("name"), str):
                raise DataError("inline task needs a string 'name'", file=source, field="task")
        self._specs = list(specs)
        self._loaded: dict[int, HarborTask] = {}

    @property
    def names(self) -> list[str]:
        return [spec["name"] for spec, _ in self._specs]

    def __len__(self) -> int:
        return len(self._specs)

    @overload
    def __getitem__(self, index: int) -> HarborTask: ...
    @overload
    def __getitem__(self, index: slice) -> list[HarborTask]: ...
    def __getitem__(self, index: int | slice) -> HarborTask | list[HarborTask]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._loaded:
            spec, source = self._specs[index]
            self._loaded[index] = materialize_inline(spec, source=source)
        return self._loaded[index]


def load_task_specs(path: Path) -> InlineTasks:
    """Tasks from a JSONL file of inline specs, in file order (materialized on use)."""
    specs = []
    for lineno, spec in jsonl.rows(path):
        if not isinstance(spec, dict):
            raise DataError("a task spec must be a JSON object", file=path, line=lineno)
        specs.append((spec, f"{path}:{lineno}"))
    return InlineTasks(specs)


def encode_file(data: str | bytes) -> str | dict[str, str]:
    """A file's content as an inline spec stores it: text as is, binary as base64."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _file_bytes(content: Any, source: Any, field: str) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, dict) and set(content) == {"base64"}:
        try:
            return base64.b64decode(content["base64"], validate=True)
        except (ValueError, TypeError):
            pass
    raise DataError('must be text or {"base64": ...}', file=source, field=field)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def dump_toml(table: Mapping[str, Any]) -> str:
    """A two-level TOML document (what task.toml needs), without a writer dependency."""
    lines: list[str] = []
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    for key, value in scalars.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for section, values in table.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def resolve_task(
    task: str | Mapping[str, Any], base_dir: Path | None, *, source: Any = None
) -> HarborTask:
    """A trajectory's ``task`` field as a :class:`HarborTask`: a path (relative to ``base_dir``)
    or an inline spec."""
    if isinstance(task, str):
        path = Path(task)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return load_task(path)
    return materialize_inline(task, source=source)


def load_task_dir(path: str | Path) -> Sequence[HarborTask]:
    """Every task folder directly inside ``path``, sorted by name.

    ``path`` may also be a JSONL file (``.jsonl`` or ``.jsonl.gz``) of inline task specs,
    one a line, which is how datasets with git repositories inside their tasks travel
    (a repository cannot hold another one's ``.git`` folder).
    """
    root = Path(path)
    if root.is_file():
        return load_task_specs(root)
    if not root.is_dir():
        raise DataError("no such task directory", file=root)
    if (root / "instruction.md").is_file():
        return [load_task(root)]
    tasks = [load_task(p) for p in sorted(root.iterdir()) if p.is_dir()]
    if not tasks:
        raise DataError("no task folders found", file=root)
    return tasks


class HarborFormat:
    """Harbor's task format as a :class:`~pivotgym.core.task.TaskFormat`: folders of task
    directories (or JSONL files of inline specs), and trajectories that carry inline
    specs or paths to task folders."""

    def load(self, path: str | Path) -> Sequence[HarborTask]:
        return load_task_dir(path)

    def from_trajectories(self, trajectories: Sequence[Any]) -> Sequence[HarborTask]:
        if all(isinstance(t.task, dict) for t in trajectories):
            specs: dict[str, tuple[dict[str, Any], str]] = {}
            for t in trajectories:
                specs.setdefault(t.task["name"], (t.task, t.id))
            return InlineTasks(list(specs.values()))
        seen: dict[str, HarborTask] = {}
        for trajectory in trajectories:
            task = resolve_task(trajectory.task, trajectory.base_dir, source=trajectory.id)
            seen.setdefault(task.name, task)
        return list(seen.values())


HARBOR = HarborFormat()
