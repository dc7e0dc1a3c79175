"""What every method's run shares: the policy stack, the env, evaluation, the cost
ledger, the one resumable training loop, and the report.

A run's output folder holds::

    config.toml            the resolved configuration
    eval_base.json         π0 on held-out tasks and the out-of-domain skill
    metrics.jsonl          one row per optimiser step
    curve.jsonl            evaluations along training, beside the ledger so far
    checkpoint/            the trainer's resumable state (every ``checkpoint_every``)
    ledger.json            the method's cost so far
    policy/                the trained policy as a Hugging Face checkpoint
    eval_final.json        the trained policy, evaluated as π0 was
    report.json, report.md the summary table

and what the method adds (PivotRL's profile and pivots: :mod:`pivotgym.runs.pivotrl`).
Every stage skips work already on disk, so a run interrupted anywhere continues where it
stopped when started again with the same output folder and settings, and loses nothing
(other settings are refused, naming the first that differs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from pivotgym.core import jsonl, registry
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.core.env import AsyncEnv, run_sync
from pivotgym.core.ledger import Ledger, load_ledger
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory, dumps, iter_trajectories
from pivotgym.errors import DataError, InfraError
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine
from pivotgym.policy.engines.counting import CountingEngine
from pivotgym.remote import RemoteEnv, Transport
from pivotgym.runs.config import EnvConfig, RunConfig, check_resume
from pivotgym.runs.evaluation import episode_sampling, ood_accuracy, run_episodes
from pivotgym.runs.report import report_markdown, report_table
from pivotgym.sandbox import get_backend

console = Console()


@dataclass
class Stack:
    """The policy side of a run: the sampling engine, the chat layer, the trainable model."""

    engine: Engine
    chat: ChatFormat
    tokenizer: Any
    policy: Any  # the model the learner trains (its weights are pushed to the engine)


def build_stack(config: RunConfig) -> Stack:
    """Load the model (bundled name or local path) and start the configured engine."""
    from pivotgym.policy import models

    path = models.resolve(config.model)
    if config.engine == "torch":
        from pivotgym.policy.engines.torch import TorchEngine

        sampler, tokenizer = models.load(path, device=config.device)
        engine: Engine = TorchEngine(sampler, tokenizer, device=config.device)
    elif config.engine == "sglang":
        from transformers import AutoTokenizer

        from pivotgym.policy.engines.sglang import SGLangEngine

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        engine = SGLangEngine(config.engine_url)
    else:
        raise DataError(f"unknown engine {config.engine!r} (torch or sglang)", field="engine")
    policy, _ = models.load(path, device=config.device)
    return Stack(engine, ChatFormat(tokenizer), tokenizer, policy)


@dataclass(frozen=True)
class EnvFacts:
    """What a run learns of its environment, as its options make it: the tools, the
    names of the options it takes, and which tasks it runs (``admits``)."""

    tools: list[dict[str, Any]]
    option_names: set[str]
    admits: Callable[[Any], bool]


def env_facts(env: EnvConfig, env_url: str = "") -> EnvFacts:
    """The :class:`EnvFacts` of ``env`` (served at ``env_url``, where given); a bad option
    is a ``DataError`` naming it as ``env.NAME``."""
    try:
        if env_url:
            return _served_facts(env, env_url)
        probe = registry.make(env.name, tasks=[], **env.options)
    except DataError as exc:
        field = f"env.{exc.field}" if exc.field and exc.field in env.options else exc.field
        raise DataError(exc.problem, file=exc.file, line=exc.line, field=field) from None
    try:
        names = {f.name for f in dataclasses.fields(probe.options)}
        return EnvFacts(list(probe.tools), names, probe.admits)
    finally:
        probe.close()


def _served_facts(env: EnvConfig, env_url: str) -> EnvFacts:
    """The facts of an env on a server: its tools and options as the server has them;
    which tasks it runs as a local probe says where one can be made (an env that needs
    no sandbox), else every task (the served env refuses what it does not run)."""
    probe = RemoteEnv(env_url, env.name, **env.options)
    try:
        run_sync(probe.aconnect())
        tools, names = list(probe.tools), probe.option_names
    finally:
        probe.close()
    try:
        local = registry.make(env.name, tasks=[], **env.options)
    except InfraError:  # no sandbox here: the server's machine runs them
        return EnvFacts(tools, names, lambda task: True)
    local.close()
    return EnvFacts(tools, names, local.admits)


def resolve(config: RunConfig, facts: EnvFacts | None = None) -> RunConfig:
    """``config`` with every default the environment decides filled in (the verifier,
    λ_diff, the sandbox backend), as the run's ``config.toml`` records it; ``facts``
    are the env's when the caller has them already."""
    spec = registry.get_spec(config.env.name)
    env_options = (facts or env_facts(config.env, config.env_url)).option_names
    sandbox = config.sandbox
    if config.env_url:
        if sandbox:
            raise DataError("the env server's operator picks the sandbox backend "
                            "(pivotgym serve-envs --sandbox)", field="sandbox")  # fmt: skip
    elif "sandbox" in env_options:
        sandbox = sandbox or get_backend(None).name
    elif sandbox:
        raise DataError(f"environment {spec.name!r} runs no sandbox", field="sandbox")
    profile = dataclasses.replace(
        config.profile,
        verifier=config.profile.verifier or spec.verifier,
        lambda_diff=config.profile.lambda_diff or spec.lambda_diff,
    )
    return dataclasses.replace(config, sandbox=sandbox, profile=profile)


class Trainer(Protocol):
    """What the training loop drives: the RL learner and the SFT trainer both are one."""

    @property
    def history(self) -> list[dict[str, float]]: ...

    def save(self, path: str | Path) -> Path: ...

    def load(self, path: str | Path) -> None: ...


class Run:
    """One configured run. Each method is a subclass with an ``execute()`` that makes
    its report (:data:`pivotgym.runs.methods.METHODS`); the base alone evaluates a
    checkpoint (``pivotgym eval``)."""

    method = "eval"

    def __init__(self, config: RunConfig, stack: Stack | None = None) -> None:
        self.spec = registry.get_spec(config.env.name)
        # The env's own tools; a trajectory may record others (see Candidate.tools_or).
        self.env = env_facts(config.env, config.env_url)
        self.tools, self.env_options = self.env.tools, self.env.option_names
        self.config = config = resolve(config, self.env)
        self.out = Path(config.out)
        self.cache = SnapshotCache()
        self._transport: Transport | None = None  # one client of the env servers
        self.stack = stack or build_stack(config)
        self.ledger = load_ledger(self.out / "ledger.json")
        self.engine = CountingEngine(self.stack.engine, self.ledger)
        self.timings: dict[str, float] = {}

    def make_env(self, ledger: Ledger | None = None, *, local: bool = False) -> AsyncEnv:
        """An environment sharing the run's snapshot cache (on a server: the server's),
        charging ``ledger`` (default: the run's); ``local``: in-process even where the
        run's envs are served."""
        ledger = self.ledger if ledger is None else ledger
        sandbox = {"sandbox": self.config.sandbox} if "sandbox" in self.env_options else {}
        if self.config.env_url and not local:
            if self._transport is None:
                self._transport = Transport(self.config.env_url)
            return RemoteEnv(self._transport, self.config.env.name, ledger=ledger,
                             **self.config.env.options)  # fmt: skip
        if not self.config.sandbox and "sandbox" in self.env_options:  # served run, local expert
            sandbox = {"sandbox": get_backend(None).name}
        return registry.make(
            self.config.env.name,
            tasks=[],
            **sandbox,
            **self.config.env.options,
            cache=self.cache,
            ledger=ledger,
        )

    def trajectories(self) -> list[Trajectory]:
        """``[data] trajectories`` (a JSONL file) or the env's bundled ``[data] split``,
        those whose task the env admits (an env of one domain, of a file of several)."""
        data = self.config.data
        if data.tasks:
            every = self.demonstrations()
        elif data.trajectories:
            every = registry.load_trajectories(Path(data.trajectories))
        else:
            every = registry.load_trajectories(self.config.env.name, data.split)
        task_format = self.spec.format()
        if all(map(self.env.admits, task_format.from_trajectories(every))):
            return every
        kept = [t for t in every if all(map(self.env.admits, task_format.from_trajectories([t])))]
        if not kept:
            raise DataError(
                f"none of the {len(every)} trajectories is of a task that {self.config.env.label} "
                "runs",
                file=data.trajectories or None,
            )
        return kept

    def demonstrations(self) -> list[Trajectory]:
        """The env's expert's trajectories of ``[data] tasks``, made once, in the tasks'
        order, into the run's ``demonstrations.jsonl`` (append-only: a run stopped midway
        goes on where it stopped). A task the expert cannot solve (an instance whose
        tests do not tell its fix) stops the run with a ``DataError`` naming the file,
        the task's line and the field, what was made before it kept."""
        data, name = self.config.data, self.config.env.name
        expert = self.spec.demonstrator()
        if expert is None:
            raise DataError(f"environment {name!r} has no expert to demonstrate tasks with: "
                            "give trajectories instead", field="data.tasks")  # fmt: skip
        tasks = registry.load_tasks(data.tasks, env=name)
        try:  # each task's line, where the file is JSON Lines
            lines: list[int | None] = [n for n, _ in jsonl.rows(Path(data.tasks))]
        except DataError:
            lines = []
        if len(lines) != len(tasks):
            lines = [None] * len(tasks)
        path = self.out / "demonstrations.jsonl"
        made = list(iter_trajectories(path)) if path.exists() else []

        async def make_the_rest() -> None:
            # The expert reads the world (its grader, its pages): it plays in-process,
            # whatever ``env_url`` says.
            env = self.make_env(local=True)
            try:
                for i in range(len(made), len(tasks)):
                    try:
                        trajectory = await expert(env, tasks[i], self.config.seed)
                    except DataError as exc:
                        raise DataError(exc.problem, file=data.tasks, line=lines[i],
                                        field=exc.field) from None  # fmt: skip
                    with path.open("a") as fh:
                        fh.write(dumps(trajectory) + "\n")
                    made.append(trajectory)
                    console.print(f"demonstrated {i + 1}/{len(tasks)}: {trajectory.id}")
            finally:
                await env.aclose()

        if len(made) < len(tasks):
            self.out.mkdir(parents=True, exist_ok=True)
            run_sync(make_the_rest())
        return made

    def eval_tasks(self) -> list[Any]:
        """``[data] eval_task_file`` or the env's ``[data] eval_split``, the tasks the env
        admits."""
        data, env = self.config.data, self.config.env
        every = (
            registry.load_tasks(data.eval_task_file, env=env.name)
            if data.eval_task_file
            else registry.load_tasks(env.name, data.eval_split)
        )
        tasks = [t for t in every if self.env.admits(t)]
        if not tasks:
            raise DataError(f"no evaluation task of {env.label} in {len(every)} tasks",
                            file=data.eval_task_file or None)  # fmt: skip
        return tasks

    def candidates(self) -> list[Candidate]:
        """The candidate turns of the run's trajectories (``[data] max_candidates`` of
        them, drawn with the run's seed); every method works from the same pool."""
        pool = list(candidates(self.trajectories()))
        limit = self.config.data.max_candidates
        if 0 < limit < len(pool):
            chosen = set(random.Random(self.config.seed).sample(range(len(pool)), limit))
            pool = [c for i, c in enumerate(pool) if i in chosen]
        return pool

    def save_ledger(self) -> None:
        (self.out / "ledger.json").write_text(json.dumps(self.ledger.to_json(), indent=2))

    # ---------------------------------------------------------------------- evaluation

    async def evaluate(self, name: str) -> dict[str, Any]:
        """Held-out episodes and the out-of-domain skill of the engine's current weights,
        saved as ``eval_NAME.json`` (and read back from it when it exists)."""
        path = self.out / f"eval_{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        data, ev = self.config.data, self.config.eval
        every = self.eval_tasks()
        chosen = range(len(every))
        if 0 < data.eval_tasks < len(every):
            chosen = sorted(random.Random(self.config.seed).sample(chosen, data.eval_tasks))
        tasks = [every[i] for i in chosen]
        sampling = episode_sampling(self.stack.chat, ev.temperature, ev.max_new_tokens)
        # Evaluation is not training cost: it runs on a ledger of its own.
        ledger = Ledger()
        engine = CountingEngine(self.stack.engine, ledger)
        report = await run_episodes(
            engine,
            self.stack.chat,
            functools.partial(self.make_env, ledger),
            tasks,
            sampling,
            attempts=data.eval_attempts,
            seed=self.config.seed,
        )
        result = {
            "in_domain": report.to_json(),
            "ood": await ood_accuracy(
                engine, self.stack.chat, n=data.ood_questions, seed=self.config.seed
            ),
            "weight_version": engine.weight_version,
            "ledger": ledger.to_json(),
        }
        path.write_text(json.dumps(result, indent=2))
        return result

    async def timed_eval(self, name: str) -> dict[str, Any]:
        """:meth:`evaluate`, uncharged, its time recorded when it had to be made."""
        made = (self.out / f"eval_{name}.json").exists()
        mark = time.perf_counter()
        result = await self.uncharged(self.evaluate(name))
        if not made:
            self.timings[f"eval_{name}_s"] = time.perf_counter() - mark
        return result

    async def curve_point(self, step: int, last: bool) -> None:
        """One point of the cost curves: the evaluation, beside the ledger so far. Its
        first point is π0's evaluation and its last the trained policy's, so the curves
        end on the reported numbers."""
        path = self.out / "curve.jsonl"
        if path.exists() and any(json.loads(line)["step"] == step for line in path.open()):
            return
        name = "base" if step == 0 else "final" if last else f"step{step}"
        result = await self.timed_eval(name)
        point = {
            "step": step,
            "success": result["in_domain"]["success_rate"],
            "infra_errors": result["in_domain"]["infra_errors"],
            "ood": result["ood"]["accuracy"],
            "ledger": self.ledger.snapshot(),
        }
        with path.open("a") as fh:
            fh.write(json.dumps(point) + "\n")

    # ----------------------------------------------------------------- training loop

    async def loop(
        self,
        trainer: Trainer,
        steps: int,
        step: Callable[[], Awaitable[dict[str, Any]]],
        *,
        curve: bool,
        resumed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run ``step`` (one optimiser step, returning its metrics) until ``trainer`` has
        ``steps`` in its history, resuming from the last checkpoint; ``resumed`` brings
        the engine to the loaded weights. With ``curve``, a curve point is evaluated every
        ``train.eval_every`` steps (the first at the start, the last at the end)."""
        t = self.config.train
        checkpoint = self.out / "checkpoint"
        if checkpoint.exists():
            trainer.load(checkpoint)
            if resumed is not None:
                await resumed()
        # Steps after the last checkpoint are redone: their log lines go with them.
        done = len(trainer.history)
        keep_lines(self.out / "metrics.jsonl", lambda i, row: i < done)
        keep_lines(self.out / "curve.jsonl", lambda i, row: row["step"] <= done)
        every = t.eval_every if curve else 0
        if every:
            await self.curve_point(done, done == steps)
        with (self.out / "metrics.jsonl").open("a") as log:
            # A step that updates nothing (every group without variance) still counts:
            # the loop runs on the trainer's history, saved with its checkpoint.
            while len(trainer.history) < steps:
                metrics = await step()
                log.write(json.dumps(metrics) + "\n")
                log.flush()
                done = len(trainer.history)
                console.print(f"{self.method} step {done:>3}/{steps}  " + step_line(metrics))
                if done % t.checkpoint_every == 0 or done == steps:
                    trainer.save(checkpoint)
                    self.save_ledger()
                if every and (done % every == 0 or done == steps):
                    await self.curve_point(done, done == steps)

    async def push_weights(self, model: Any, version: str) -> None:
        """Bring the engine to ``model``'s weights (in memory, or through a checkpoint)."""

        def weights() -> dict[str, Any]:
            return {k: v.detach() for k, v in model.state_dict().items()}

        def save() -> Path:
            path = self.out / "weights" / f"v{version}"
            model.save_pretrained(path)
            return path

        await self.engine.weight_sync.push(self.engine, weights, save, version)

    # ------------------------------------------------------------------- wall-clock

    def begin(self) -> float:
        check_resume(self.out, self.config)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.toml").write_text(self.config.dump_toml())
        self._mark = time.perf_counter()
        return self._mark

    def charge_wall(self) -> None:
        """Add the wall-clock since the last mark to the ledger's ``wall`` (the method's
        cost: evaluations in between are not charged)."""
        now = time.perf_counter()
        self.ledger.seconds["wall"] += now - self._mark
        self._mark = now

    async def uncharged(self, work: Any) -> Any:
        """Await ``work`` (an evaluation) without charging its time to the method."""
        self.charge_wall()
        try:
            return await work
        finally:
            self._mark = time.perf_counter()

    async def finish(
        self, model: Any, base: dict[str, Any], start: float, **extra: Any
    ) -> dict[str, Any]:
        """Save the trained policy, evaluate it as π0 was, and write the report."""
        self.charge_wall()
        model.save_pretrained(self.out / "policy")
        self.stack.tokenizer.save_pretrained(self.out / "policy")
        final = await self.timed_eval("final")  # made already by a last curve point
        self.timings["total_s"] = time.perf_counter() - start
        report = {
            "env": self.config.env.label,
            "method": self.method,
            **extra,
            "in_domain_base": base["in_domain"]["success_rate"],
            "in_domain_final": final["in_domain"]["success_rate"],
            # Episodes the harness could not score, left out of the success rates above.
            "infra_errors_base": base["in_domain"]["infra_errors"],
            "infra_errors_final": final["in_domain"]["infra_errors"],
            "ood_base": base["ood"]["accuracy"],
            "ood_final": final["ood"]["accuracy"],
            "timings": self.timings,
            "ledger": self.ledger.to_json(),
        }
        self.save_ledger()
        (self.out / "report.json").write_text(json.dumps(report, indent=2))
        (self.out / "report.md").write_text(report_markdown(report))
        console.print(report_table(report))
        return report


def step_line(metrics: dict[str, Any]) -> str:
    """A training step's progress line: the RL methods' reward, loss and groups that had
    no variance, or SFT's loss."""
    if "reward_mean" not in metrics:
        return f"loss {metrics['loss']:.4f}"
    return (
        f"reward {metrics['reward_mean']:.3f}  loss {metrics.get('loss', float('nan')):+.4f}"
        f"  zero-variance groups {metrics['zero_variance_groups']:.0f}"
    )


def keep_lines(path: Path, keep: Any) -> None:
    """Rewrite the JSONL file ``path`` with the rows ``keep(index, row)`` accepts."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [row for i, row in enumerate(rows) if keep(i, row)]
    if len(kept) != len(rows):
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
