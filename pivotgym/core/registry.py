"""Environment registry: built-in and third-party environments, found the same way.

An environment package exposes an :class:`EnvSpec` and either calls
:func:`register` or declares it in the ``pivotgym.envs`` entry-point group::

    [project.entry-points."pivotgym.envs"]
    myenv = "mypackage.envs:ENV"

pivotgym's own terminal environment is declared exactly so. Every environment is also
registered with Gymnasium as ``pivotgym/<Name>-v0`` (``gymnasium.make`` works once
``pivotgym`` is imported), and its bundled data load by name through
:func:`load_trajectories` and :func:`load_tasks`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import gymnasium

from pivotgym.core.env import AsyncEnv
from pivotgym.core.task import Task, TaskFormat
from pivotgym.core.trajectory import Trajectory, iter_trajectories
from pivotgym.errors import DataError

GROUP = "pivotgym.envs"


# Tasks of an env that names no format of its own, and task files read without an env.
DEFAULT_TASK_FORMAT = "pivotgym.harbor.task:HARBOR"


class Provided(Mapping[str, Path]):
    """Split files an environment makes the first time they are asked for, where its
    data cannot ship with it (they derive from a dependency's data, which the project
    does not copy): ``make(split)`` (a callable or its ``"module:attr"`` path) returns
    the split's file, building it if need be. Listing the splits builds nothing."""

    def __init__(self, splits: Sequence[str], make: str | Callable[[str], Path]) -> None:
        self._splits = tuple(splits)
        self._make = make

    def __getitem__(self, split: str) -> Path:
        if split not in self._splits:
            raise KeyError(split)
        return _resolve(self._make)(split)

    def __iter__(self) -> Any:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    def __contains__(self, split: object) -> bool:
        return split in self._splits

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Provided) and (self._splits, self._make) == (
            other._splits,
            other._make,
        )

    def __hash__(self) -> int:
        return hash((self._splits, str(self._make)))


@dataclass(frozen=True)
class EnvSpec:
    """How to build an environment and where its bundled data lie.

    ``entry_point`` is the environment class (or factory) or its ``"module:attr"`` path;
    it is called with ``tasks=`` and the keyword options of :func:`make`, which it checks
    into its typed options.
    ``trajectories`` and ``tasks`` map split names to a JSONL file and a folder of task
    directories (or a :class:`Provided` mapping, whose files are made on first use). A
    split with trajectories but no task folder (their tasks are inline) still loads its
    tasks from the trajectories. ``lambda_diff`` is the pivot filter's
    default difficulty threshold for this environment (keep candidates whose mean
    profiled reward is below it). ``candidate_rule`` (a callable or its
    ``"module:attr"`` path; default: every turn) says which assistant turns are PivotRL
    candidates (:mod:`pivotgym.core.candidates`), ``verifier`` and ``verifier_options`` the
    one-turn verifier they are scored with by default (:mod:`pivotgym.verifiers`).
    ``task_format`` (an object or its path) reads the env's task files and the tasks
    that its trajectories carry (default: Harbor's, :data:`pivotgym.harbor.task.HARBOR`).
    ``expert`` (a callable or its path), where the env has one, demonstrates a task of
    the user's: ``await expert(env, task, seed)`` is a trajectory that solves it, or a
    ``DataError`` saying why it cannot; a run given tasks and no trajectories
    (``[data] tasks``) trains on its demonstrations.
    """

    name: str
    entry_point: str | Callable[..., AsyncEnv]
    description: str = ""
    trajectories: Mapping[str, Path] = field(default_factory=dict)
    tasks: Mapping[str, Path] = field(default_factory=dict)
    default_split: str = "train"
    lambda_diff: float = 0.75
    candidate_rule: str | Callable[..., bool] | None = None
    verifier: str = "tool_call"
    verifier_options: Mapping[str, Any] = field(default_factory=dict)
    task_format: str | TaskFormat = DEFAULT_TASK_FORMAT
    expert: str | Callable[..., Any] | None = None

    def demonstrator(self) -> Callable[..., Any] | None:
        """The env's expert, ``async (env, task, seed) -> Trajectory`` (``None``: none)."""
        return None if self.expert is None else _resolve(self.expert)

    @property
    def gym_id(self) -> str:
        return gym_id(self.name)

    def factory(self) -> Callable[..., AsyncEnv]:
        return _resolve(self.entry_point)

    def format(self) -> TaskFormat:
        return _resolve(self.task_format) if isinstance(self.task_format, str) else self.task_format

    def candidates(self) -> Callable[..., bool]:
        """The candidate rule (every turn when the spec names none)."""
        from pivotgym.core.candidates import all_turns

        return all_turns if self.candidate_rule is None else _resolve(self.candidate_rule)

    @property
    def splits(self) -> list[str]:
        return sorted(set(self.trajectories) | set(self.tasks))


def _resolve(target: Any) -> Any:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def gym_id(name: str) -> str:
    return "pivotgym/" + "".join(p.capitalize() for p in name.replace("-", "_").split("_")) + "-v0"


_specs: dict[str, EnvSpec] = {}
_discovered = False


def register(spec: EnvSpec, *, replace: bool = False) -> EnvSpec:
    """Add an environment; ``replace`` allows redefining a name already taken."""
    if spec.name in _specs and not replace and _specs[spec.name] != spec:
        raise DataError(f"environment {spec.name!r} is already registered")
    _specs[spec.name] = spec
    _register_gym(spec.name)
    return spec


def _register_gym(name: str) -> None:
    if gym_id(name) not in gymnasium.registry:
        gymnasium.register(
            id=gym_id(name),
            entry_point=_gymnasium_entry_point,
            kwargs={"env_name": name},
            disable_env_checker=True,  # it runs its own check on reset; ours passes check_env
        )


def _gymnasium_entry_point(env_name: str, **kwargs: Any) -> AsyncEnv:
    return make(env_name, **kwargs)


def declare_entry_points() -> None:
    """Register Gymnasium ids for every installed environment, without importing them."""
    for ep in entry_points(group=GROUP):
        _register_gym(ep.name)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=GROUP):
        if ep.name in _specs:
            continue
        spec = ep.load()
        if not isinstance(spec, EnvSpec):
            raise DataError(f"entry point {ep.value!r} of group {GROUP} is not an EnvSpec")
        register(spec)


def registered() -> dict[str, EnvSpec]:
    """All environments: those registered in-process and those installed as entry points."""
    _discover()
    return dict(sorted(_specs.items()))


def get_spec(name: str) -> EnvSpec:
    specs = registered()
    if name not in specs:
        known = ", ".join(specs) or "none"
        raise DataError(f"unknown environment {name!r} (registered: {known})")
    return specs[name]


def make(name: str, *, split: str | None = None, tasks: Any = None, **options: Any) -> AsyncEnv:
    """Build environment ``name``.

    Fresh episodes draw from ``tasks`` (a list of :class:`Task`, or a folder of task
    directories), else from the bundled ``split`` (default: the spec's default split).
    Other keyword options go to the environment (sandbox, limits, divergence, ...).
    """
    spec = get_spec(name)
    if tasks is None:
        tasks = load_tasks(name, split=split or spec.default_split) if spec.splits else []
    elif isinstance(tasks, str | Path):
        tasks = spec.format().load(tasks)
    return spec.factory()(tasks=tasks, **options)


def _split_of(spec: EnvSpec, split: str | None, kind: str) -> str:
    split = split or spec.default_split
    if split not in spec.splits:
        raise DataError(
            f"environment {spec.name!r} has no {kind} split {split!r} "
            f"(splits: {', '.join(spec.splits) or 'none'})"
        )
    return split


def load_trajectories(source: str | Path, split: str | None = None) -> list[Trajectory]:
    """Trajectories from a JSONL file, or a registered environment's bundled ``split``."""
    path = Path(source)
    if not path.exists() and isinstance(source, str) and "/" not in source:
        spec = get_spec(source)
        split = _split_of(spec, split, "trajectory")
        if split not in spec.trajectories:
            raise DataError(
                f"environment {spec.name!r} bundles no trajectories for split {split!r}"
            )
        path = spec.trajectories[split]
    return list(iter_trajectories(path))


def load_tasks(
    source: str | Path, split: str | None = None, *, env: str | None = None
) -> Sequence[Task]:
    """Tasks from a file or folder (in environment ``env``'s task format; default
    Harbor's folders), or a registered environment's ``split`` in its own format."""
    path = Path(source)
    if path.exists() or not isinstance(source, str) or "/" in source:
        return (get_spec(env).format() if env else _resolve(DEFAULT_TASK_FORMAT)).load(path)
    spec = get_spec(source)
    split = _split_of(spec, split, "task")
    task_format = spec.format()
    if split in spec.tasks:
        return task_format.load(spec.tasks[split])
    return task_format.from_trajectories(load_trajectories(source, split))
