"""Run configuration: a TOML file, then ``section.key=value`` overrides, all checked.

Every key has a default, so an empty file (or none) is a valid configuration. An
unknown key or a value of the wrong type is a :class:`~pivotgym.errors.DataError`
naming the file, the line (see :mod:`pivotgym.core.toml_lines`) and the field; the resolved
configuration is saved with every run.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from pivotgym.core import toml_lines
from pivotgym.errors import DataError


def at_least(minimum: int, default: int) -> Any:
    """A count field that a file or override may not set below ``minimum``: a zero
    sample count or step count would otherwise fail deep inside a run, or silently
    measure nothing."""
    return field(default=default, metadata={"min": minimum})


@dataclass
class EnvConfig:
    """The environment of a run: ``name`` (a registered one) and the options it is made
    with, the ``[env]`` keys beside ``name`` (``domain = "airline"``, or ``--set
    env.domain=airline``), checked by the environment's own typed options when the run
    starts. ``env = "NAME"`` (or ``--env NAME``) names it and keeps the options."""

    name: str = "terminal"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``tau2[domain=airline]``, or the bare name without options."""
        if not self.options:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in sorted(self.options.items()))}]"

    def set(self, value: Any, where: str, source: str | None) -> None:
        if isinstance(value, str):
            self.name = value
            return
        if not isinstance(value, dict):
            raise DataError("must be an environment name or a table", file=source, field=where)
        for key, option in value.items():
            if key == "name":
                self.name = _check(option, str, f"{where}.name", source)
            elif isinstance(option, dict | list):
                raise DataError("an option's value is a string, number or boolean",
                                file=source, field=f"{where}.{key}")  # fmt: skip
            else:
                self.options[key] = option


@dataclass
class DataConfig:
    """Which trajectories to profile and which tasks to evaluate on.

    ``trajectories`` (a JSONL file) and ``eval_task_file`` (a task file or folder in the
    env's format) replace the env's bundled ``split`` and ``eval_split``: a domain of
    one's own trains on its own data. ``tasks`` (a task file) instead of trajectories
    has the env's expert demonstrate each task first (``pivotgym run --env swe --data
    FILE``: one's own repository's instances). ``max_candidates`` of 0 profiles every candidate
    turn, and ``eval_tasks`` of 0 evaluates on every task of ``eval_split``: with a few
    dozen tasks the success rate moves by several points from sampling alone.
    """

    split: str = "train"
    trajectories: str = ""
    tasks: str = ""
    max_candidates: int = at_least(0, 384)
    eval_split: str = "test"
    eval_task_file: str = ""
    eval_tasks: int = at_least(0, 0)
    eval_attempts: int = at_least(1, 1)
    ood_questions: int = at_least(1, 100)


@dataclass
class ProfileConfig:
    """Offline profiling with the frozen π0 (see :mod:`pivotgym.pivotrl.profiling`).

    ``verifier`` and ``lambda_diff`` default to the environment's own settings.
    """

    k: int = at_least(2, 8)
    temperature: float = 1.0
    max_new_tokens: int = at_least(1, 160)
    engine_batch: int = at_least(1, 8)
    sandbox_slots: int = at_least(1, 4)
    verifier: str = ""
    lambda_diff: float = 0.0


@dataclass
class TrainConfig:
    """GRPO on one-turn actions at the pivots (see :mod:`pivotgym.rl`).

    ``pivot_source`` is ``filter`` (the PivotRL filter) or ``random`` (as many candidates
    as the filter keeps, drawn at random: the no-filter ablation). ``eval_every`` records
    a point of the cost curves every so many steps (0: none): an evaluation like π0's,
    on the same tasks, so that the curves start and end on the reported numbers.
    """

    steps: int = at_least(1, 32)
    pivots_per_step: int = at_least(1, 8)
    group_size: int = at_least(2, 8)
    lr: float = 1e-4
    warmup_steps: int = at_least(0, 2)
    schedule: str = "constant"
    clip_low: float = 0.2
    clip_high: float = 0.28
    beta: float = 0.0
    aggregation: str = "token-mean"
    scale_std: bool = True
    leave_one_out: bool = False
    micro_batch_size: int = at_least(1, 16)
    max_grad_norm: float = 1.0
    checkpoint_every: int = at_least(1, 8)
    max_new_tokens: int = at_least(1, 160)
    eval_every: int = at_least(0, 0)
    pivot_source: str = "filter"


@dataclass
class E2EConfig:
    """The E2E RL baseline: whole on-policy episodes from each task's start, rewarded by
    the task's test, trained with the same learner and loss (optimiser settings are
    ``[train]``'s).

    Only a task whose episodes both pass and fail teaches anything, and at π0's success
    rate about half do: with 2 tasks a step, E2E RL did not move from π0 in 24 steps;
    with 8 it learns (both measured on seed 0)."""

    steps: int = at_least(1, 24)
    tasks_per_step: int = at_least(1, 8)
    group_size: int = at_least(2, 8)
    max_turns: int = at_least(1, 8)
    max_tokens: int = at_least(1, 3072)


@dataclass
class SFTConfig:
    """The SFT baseline on the same trajectories (``pivotgym sft``)."""

    steps: int = at_least(1, 60)
    batch_size: int = at_least(1, 8)
    lr: float = 5e-5
    warmup_steps: int = at_least(0, 4)
    micro_batch_size: int = at_least(1, 8)


@dataclass
class EvalConfig:
    """Full episodes with the policy acting."""

    temperature: float = 0.7
    max_new_tokens: int = at_least(1, 192)


@dataclass
class RunConfig:
    """Everything ``pivotgym run`` needs; see each section's class."""

    env: EnvConfig = field(default_factory=EnvConfig)
    model: str = "pivotgym-tiny"
    engine: str = "torch"
    engine_url: str = "http://127.0.0.1:30000"
    # Env servers (``pivotgym serve-envs``), comma-separated: empty runs envs in-process.
    env_url: str = ""
    sandbox: str = ""
    device: str = "cpu"
    seed: int = 0
    out: str = "runs/pivotrl"
    data: DataConfig = field(default_factory=DataConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    e2e: E2EConfig = field(default_factory=E2EConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def dump_toml(self) -> str:
        lines = []
        sections = []
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                sections.append((f.name, value))
            else:
                lines.append(f"{f.name} = {_toml(value)}")
        for name, section in sections:
            lines.append(f"\n[{name}]")
            if isinstance(section, EnvConfig):
                lines.append(f"name = {_toml(section.name)}")
                lines.extend(f"{k} = {_toml(v)}" for k, v in sorted(section.options.items()))
                continue
            lines.extend(f"{f.name} = {_toml(getattr(section, f.name))}" for f in fields(section))
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _check(value: Any, kind: type, where: str, source: str | None) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DataError(f"expected {kind.__name__}, got {value!r}", file=source, field=where)
    return value


def _apply(target: Any, table: dict[str, Any], prefix: str, source: str | None) -> None:
    hints = get_type_hints(type(target))
    known = {f.name: f for f in fields(target)}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise DataError(
                f"unknown key (known: {', '.join(sorted(known))})", file=source, field=where
            )
        current = getattr(target, key)
        if isinstance(current, EnvConfig):
            current.set(value, where, source)
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise DataError("must be a table", file=source, field=where)
            _apply(current, value, where + ".", source)
        else:
            value = _check(value, hints[key], where, source)
            minimum = known[key].metadata.get("min")
            if minimum is not None and value < minimum:
                raise DataError(
                    f"must be at least {minimum}, got {value}", file=source, field=where
                )
            setattr(target, key, value)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=12"`` as ``(["train", "steps"], 12)``; the value is read as TOML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DataError(f"override {text!r} is not KEY=VALUE", field="--set")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    return key.strip().split("."), value


# Where a run executes, not what it computes: a run may resume on another device.
PLACEMENT = frozenset({"device", "engine_url", "env_url", "out"})


def check_resume(folder: str | Path, config: RunConfig) -> None:
    """Refuse to continue the run in ``folder`` under settings other than those it was
    made with (its ``config.toml``): its artifacts would be mixed with the new ones."""
    path = Path(folder) / "config.toml"
    if not path.is_file():
        return
    saved, text = toml_lines.read(path)
    if isinstance(saved.get("env"), str):  # written before environments took options
        saved["env"] = {"name": saved["env"]}
    for key, was, now in _differences(saved, tomllib.loads(config.dump_toml())):
        if key not in PLACEMENT:
            error = DataError(
                f"this run was made with {was!r}, now {now!r}: resume it with the same "
                "settings, or give another output folder",
                file=path,
                field=key,
            )
            raise toml_lines.locate(error, text)


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = ""):
    for key in sorted(a.keys() | b.keys()):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            yield f"{prefix}{key}", x, y


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The defaults, updated by the TOML file at ``path`` and then by ``overrides``."""
    config = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError("no such config file", file=path)
        table, text = toml_lines.read(path)
        try:
            _apply(config, table, "", str(path))
        except DataError as exc:
            raise toml_lines.locate(exc, text) from None
    apply_overrides(config, overrides or [])
    return config


def apply_overrides(config: RunConfig, overrides: list[str], source: str = "--set") -> None:
    """Apply ``section.key=value`` overrides in order, checked like the file's keys."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        _apply(config, nested, "", source)
