"""``pivotgym run``: profile → filter → train → evaluate, with every artifact on disk.

The output folder holds::

    config.toml            the resolved configuration
    profile.jsonl          one row per candidate (append-only, resumable)
    pivots.jsonl           the kept pivots in pivotgym's format
    pivots.nemo.jsonl      the same as NeMo-Gym pivot rows
    eval_base.json         π0 on held-out tasks and the out-of-domain skill
    metrics.jsonl          one row per optimiser step
    checkpoint/            the learner's resumable state (every ``checkpoint_every``)
    policy/                the trained policy as a Hugging Face checkpoint
    eval_final.json        the trained policy, evaluated as π0 was
    report.json, report.md the summary table

Every stage skips work already on disk, so a run interrupted anywhere continues where it
stopped when started again with the same output folder and settings, and loses nothing
(other settings are refused, naming the first that differs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pivotgym import registry
from pivotgym.candidates import Candidate, candidates
from pivotgym.chat import ChatFormat
from pivotgym.config import RunConfig, check_resume
from pivotgym.engines.base import Engine, SamplingParams
from pivotgym.env import AsyncEnv
from pivotgym.errors import DataError
from pivotgym.evaluation import episode_sampling, ood_accuracy, run_episodes
from pivotgym.ledger import CountingEngine, Ledger, load_ledger
from pivotgym.pivots import select_pivots, to_nemo_row, write_rows
from pivotgym.profiling import Profiler, ProfileSettings
from pivotgym.replay import SnapshotCache
from pivotgym.rl.batch import TrainSample
from pivotgym.rl.learner import Learner, RLConfig
from pivotgym.rl.sft import SFTTrainer, sft_sample
from pivotgym.rl.training import BatchCursor, OptimConfig
from pivotgym.rollouts import collect
from pivotgym.sandbox import get_backend
from pivotgym.seeds import derive_seed
from pivotgym.task import Task
from pivotgym.trajectory import Trajectory
from pivotgym.verifiers import Verifier, get_verifier
from pivotgym.verifiers.base import restore

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
    from pivotgym import models

    path = models.resolve(config.model)
    if config.engine == "torch":
        from pivotgym.engines.torch import TorchEngine

        sampler, tokenizer = models.load(path, device=config.device)
        engine: Engine = TorchEngine(sampler, tokenizer, device=config.device)
    elif config.engine == "sglang":
        from transformers import AutoTokenizer

        from pivotgym.engines.sglang import SGLangEngine

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        engine = SGLangEngine(config.engine_url)
    else:
        raise DataError(f"unknown engine {config.engine!r} (torch or sglang)", field="engine")
    policy, _ = models.load(path, device=config.device)
    return Stack(engine, ChatFormat(tokenizer), tokenizer, policy)


def env_defaults(env: str) -> tuple[list[dict[str, Any]], set[str]]:
    """The tools of environment ``env`` and the names of its options."""
    probe = registry.make(env, tasks=[])
    try:
        return list(probe.tools), {f.name for f in dataclasses.fields(probe.options)}
    finally:
        probe.close()


def resolve(config: RunConfig, env_options: set[str] | None = None) -> RunConfig:
    """``config`` with every default the environment decides filled in (the verifier,
    λ_diff, the sandbox backend), as the run's ``config.toml`` records it;
    ``env_options`` are the env's option names when the caller has them already."""
    spec = registry.get_spec(config.env)
    if env_options is None:
        _, env_options = env_defaults(config.env)
    sandbox = config.sandbox
    if "sandbox" in env_options:
        sandbox = sandbox or get_backend(None).name
    elif sandbox:
        raise DataError(f"environment {spec.name!r} runs no sandbox", field="sandbox")
    profile = dataclasses.replace(
        config.profile,
        verifier=config.profile.verifier or spec.verifier,
        lambda_diff=config.profile.lambda_diff or spec.lambda_diff,
    )
    return dataclasses.replace(config, sandbox=sandbox, profile=profile)


class Run:
    """One configured run; each stage is a method, skipping what is already on disk."""

    def __init__(self, config: RunConfig, stack: Stack | None = None) -> None:
        self.spec = registry.get_spec(config.env)
        # The env's own tools; a trajectory may record others (see Candidate.tools_or).
        self.tools, self.env_options = env_defaults(config.env)
        self.config = config = resolve(config, self.env_options)
        self.out = Path(config.out)
        self.lambda_diff = config.profile.lambda_diff
        name = config.profile.verifier
        options = self.spec.verifier_options if name == self.spec.verifier else {}
        self.verifier: Verifier = get_verifier(name, **options)
        self.cache = SnapshotCache()
        self.stack = stack or build_stack(config)
        self.ledger = load_ledger(self.out / "ledger.json")
        self.engine = CountingEngine(self.stack.engine, self.ledger)
        self.timings: dict[str, float] = {}

    def make_env(self, ledger: Ledger | None = None) -> AsyncEnv:
        """An environment sharing the run's snapshot cache, charging ``ledger`` (default:
        the run's)."""
        sandbox = {"sandbox": self.config.sandbox} if "sandbox" in self.env_options else {}
        return registry.make(
            self.config.env,
            tasks=[],
            **sandbox,
            cache=self.cache,
            ledger=self.ledger if ledger is None else ledger,
        )

    def trajectories(self) -> list[Trajectory]:
        """``[data] trajectories`` (a JSONL file) or the env's bundled ``[data] split``."""
        data = self.config.data
        if data.trajectories:
            return registry.load_trajectories(Path(data.trajectories))
        return registry.load_trajectories(self.config.env, data.split)

    def save_ledger(self) -> None:
        (self.out / "ledger.json").write_text(json.dumps(self.ledger.to_json(), indent=2))

    # -------------------------------------------------------------------------- stages

    def candidates(self) -> list[Candidate]:
        trajectories = self.trajectories()
        pool = list(candidates(trajectories))
        limit = self.config.data.max_candidates
        if 0 < limit < len(pool):
            chosen = set(random.Random(self.config.seed).sample(range(len(pool)), limit))
            pool = [c for i, c in enumerate(pool) if i in chosen]
        return pool

    async def profile(self, pool: Sequence[Candidate]) -> list[dict[str, Any]]:
        p = self.config.profile
        settings = ProfileSettings(
            k=p.k,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            seed=self.config.seed,
            engine_batch=p.engine_batch,
            sandbox_slots=p.sandbox_slots,
        )
        profiler = Profiler(
            engine=self.engine,
            chat=self.stack.chat,
            verifier=self.verifier,
            make_env=self.make_env,
            tools=self.tools,
            settings=settings,
        )
        with self.ledger.stage("profiling"):
            rows = await profiler.run(pool, self.out / "profile.jsonl")
        self.save_ledger()
        return rows

    def select(self, rows: list[dict[str, Any]], pool: Sequence[Candidate]) -> list[Candidate]:
        kept, report = select_pivots(rows, self.lambda_diff)
        by_id = {c.id: c for c in pool}
        pivots = [by_id[r["candidate_id"]] for r in kept if r["candidate_id"] in by_id]
        ours = [
            {
                "pivot_id": c.id,
                "trajectory_id": c.trajectory.id,
                "turn": c.turn,
                "env": c.env,
                "task": c.trajectory.task,
                "prefix": c.prefix,
                "reference": c.reference,
                "tools": c.tools_or(self.tools),
                "profile": {k: r[k] for k in ("mean", "variance", "k", "rewards")},
            }
            for c, r in zip(pivots, kept, strict=True)
        ]
        write_rows(ours, self.out / "pivots.jsonl")
        write_rows((to_nemo_row(p) for p in ours), self.out / "pivots.nemo.jsonl")
        (self.out / "filter.json").write_text(json.dumps(report.to_json(), indent=2))
        self.filter_report = report
        return pivots

    async def evaluate(self, name: str) -> dict[str, Any]:
        path = self.out / f"eval_{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        data, ev = self.config.data, self.config.eval
        every = (
            registry.load_tasks(data.eval_task_file, env=self.config.env)
            if data.eval_task_file
            else registry.load_tasks(self.config.env, data.eval_split)
        )
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

    async def _rewards(
        self, candidate: Candidate, actions: list[dict[str, Any]], envs: asyncio.Queue
    ):
        env = await envs.get()
        try:
            with self.ledger.stage("verification"):
                state = await restore(env, candidate)
                return await self.verifier.verify_many(state, actions, candidate.reference)
        finally:
            envs.put_nowait(env)

    def learner(self, n_items: int, per_step: int) -> Learner:
        t, p = self.config.train, self.config.profile
        optim = OptimConfig(
            lr=t.lr,
            warmup_steps=t.warmup_steps,
            schedule=t.schedule,  # type: ignore[arg-type]
            total_steps=max(t.steps, self.config.e2e.steps),
            max_grad_norm=t.max_grad_norm,
            micro_batch_size=t.micro_batch_size,
        )
        rl = RLConfig(
            temperature=p.temperature,
            clip_low=t.clip_low,
            clip_high=t.clip_high,
            beta=t.beta,
            aggregation=t.aggregation,  # type: ignore[arg-type]
            scale_std=t.scale_std,
            leave_one_out=t.leave_one_out,
        )
        reference = None
        if t.beta > 0:
            from pivotgym import models

            reference, _ = models.load(models.resolve(self.config.model), device=self.config.device)
        return Learner(
            self.stack.policy,
            optim=optim,
            rl=rl,
            engine=self.engine,
            reference=reference,
            device=self.config.device,
            cursor=BatchCursor(n_items, per_step, seed=self.config.seed),
            weights_dir=self.out / "weights",
            pad_id=self.stack.tokenizer.pad_token_id or 0,
        )

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        """How the policy samples while training: π0's profiling temperature."""
        return SamplingParams(
            temperature=self.config.profile.temperature,
            top_p=1.0,
            top_k=-1,
            max_new_tokens=max_new_tokens,
            stop_token_ids=tuple(self.stack.chat.stop_ids),
            seed=0,
        )

    async def pivot_step(
        self, learner: Learner, pivots: Sequence[Candidate], envs: asyncio.Queue[AsyncEnv]
    ) -> dict[str, float]:
        """Sample a group at each of the next pivots with the current policy, score the
        groups with the profiling verifier, and take one GRPO step on them."""
        t, chat = self.config.train, self.stack.chat
        assert learner.state.cursor is not None
        step = len(learner.history)
        batch = [pivots[i] for i in learner.state.cursor.next()]
        prompts = chat.batch_prompt_ids(
            [c.prefix for c in batch], each_tools=[c.tools_or(self.tools) for c in batch]
        )
        seeds = [derive_seed(self.config.seed, "train", step, c.id) for c in batch]
        sampling = self.sampling(t.max_new_tokens)
        started = time.perf_counter()
        groups = await self.engine.generate_batch(prompts, t.group_size, sampling, seeds=seeds)
        sampled = time.perf_counter()
        verdicts = await asyncio.gather(
            *(
                self._rewards(c, [chat.parse(s) for s in g], envs)
                for c, g in zip(batch, groups, strict=True)
            )
        )
        verified = time.perf_counter()
        samples = [
            TrainSample.turn(prompt, s, reward=v.reward, group=c.id, infra_failed=v.infra_error)
            for c, prompt, g, vs in zip(batch, prompts, groups, verdicts, strict=True)
            for s, v in zip(g, vs, strict=True)
        ]
        metrics = await self.learn(learner, samples)
        metrics.update(sample_s=sampled - started, verify_s=verified - sampled)
        return metrics

    async def episode_step(
        self, learner: Learner, tasks: Sequence[Task], envs: asyncio.Queue[AsyncEnv]
    ) -> dict[str, float]:
        """E2E RL: a group of whole episodes for each of the next tasks, one GRPO step."""
        e = self.config.e2e
        assert learner.state.cursor is not None
        batch = [tasks[i] for i in learner.state.cursor.next()]
        started = time.perf_counter()
        rollouts = await collect(
            self.engine,
            self.stack.chat,
            self.make_env,
            batch,
            e.group_size,
            self.sampling(self.config.train.max_new_tokens),
            max_turns=e.max_turns,
            max_tokens=e.max_tokens,
            seed=derive_seed(self.config.seed, "e2e", len(learner.history)),
        )
        rolled = time.perf_counter()
        metrics = await self.learn(learner, [r.train_sample() for r in rollouts])
        metrics.update(
            rollout_s=rolled - started,
            episode_turns=sum(r.turns for r in rollouts) / len(rollouts),
        )
        return metrics

    async def learn(self, learner: Learner, samples: list[TrainSample]) -> dict[str, float]:
        metrics = await learner.astep(samples)
        self.ledger.count(learner_tokens=metrics["tokens"], optimizer_steps=metrics["updated"])
        self.ledger.seconds["learning"] += metrics["time_s"]
        metrics["ledger"] = self.ledger.snapshot()
        return metrics

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

    async def train(self, items: Sequence[Any], per_step: int, steps: int, step_fn: Any) -> Learner:
        """The training loop both RL methods share: ``step_fn`` makes one optimiser step."""
        t = self.config.train
        learner = self.learner(len(items), per_step)
        checkpoint = self.out / "checkpoint"
        if checkpoint.exists():
            learner.load(checkpoint)
            if self.engine.weight_sync.needs_checkpoint:  # an in-process one loaded already
                path = learner.save_weights()
                await self.engine.update_weights(str(path), str(learner.version))
        # Steps after the last checkpoint are redone: their log lines go with them.
        done = len(learner.history)
        keep_lines(self.out / "metrics.jsonl", lambda i, row: i < done)
        keep_lines(self.out / "curve.jsonl", lambda i, row: row["step"] <= done)
        envs: asyncio.Queue[AsyncEnv] = asyncio.Queue()
        for _ in range(self.config.profile.sandbox_slots):
            envs.put_nowait(self.make_env())
        try:
            # A step whose groups all lacked variance updates nothing but still counts:
            # the loop runs on the learner's history (saved with its checkpoint).
            if t.eval_every:
                await self.curve_point(len(learner.history), len(learner.history) == steps)
            with (self.out / "metrics.jsonl").open("a") as log:
                while len(learner.history) < steps:
                    metrics = await step_fn(learner, items, envs)
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                    step = len(learner.history)
                    console.print(
                        f"step {step:>3}/{steps}  reward {metrics['reward_mean']:.3f}"
                        f"  loss {metrics.get('loss', float('nan')):+.4f}"
                        f"  zero-variance groups {metrics['zero_variance_groups']:.0f}"
                    )
                    if step % t.checkpoint_every == 0 or step == steps:
                        learner.save(checkpoint)
                        self.save_ledger()
                    if t.eval_every and (step % t.eval_every == 0 or step == steps):
                        await self.curve_point(step, step == steps)
        finally:
            while not envs.empty():
                await envs.get_nowait().aclose()
        return learner

    async def push_weights(self, model: Any, version: str) -> None:
        """Bring the engine to ``model``'s weights (in memory, or through a checkpoint)."""

        def weights() -> dict[str, Any]:
            return {k: v.detach() for k, v in model.state_dict().items()}

        def save() -> Path:
            path = self.out / "weights" / f"v{version}"
            model.save_pretrained(path)
            return path

        await self.engine.weight_sync.push(self.engine, weights, save, version)

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
        self, method: str, model: Any, base: dict[str, Any], start: float, **extra: Any
    ) -> dict[str, Any]:
        """Save the trained policy, evaluate it as π0 was, and write the report."""
        self.charge_wall()
        model.save_pretrained(self.out / "policy")
        self.stack.tokenizer.save_pretrained(self.out / "policy")
        final = await self.timed_eval("final")  # made already by a last curve point
        self.timings["total_s"] = time.perf_counter() - start
        report = {
            "env": self.config.env,
            "method": method,
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

    async def timed_eval(self, name: str) -> dict[str, Any]:
        """:meth:`evaluate`, uncharged, its time recorded when it had to be made."""
        made = (self.out / f"eval_{name}.json").exists()
        mark = time.perf_counter()
        result = await self.uncharged(self.evaluate(name))
        if not made:
            self.timings[f"eval_{name}_s"] = time.perf_counter() - mark
        return result

    async def run(self) -> dict[str, Any]:
        """PivotRL: profile → filter → train on pivots → evaluate."""
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        console.print(
            f"[bold]{len(pool)} candidates[/] from {self.config.env}/{self.config.data.split}"
        )
        rows = await self.profile(pool)
        self.timings["profile_s"] = time.perf_counter() - start
        pivots = self.select(rows, pool)
        r = self.filter_report
        if self.config.train.pivot_source == "random":
            pivots = random.Random(self.config.seed).sample(pool, len(pivots))
        elif self.config.train.pivot_source != "filter":
            raise DataError("must be 'filter' or 'random'", field="train.pivot_source")
        console.print(
            f"[bold]{r.kept} pivots[/] kept of {r.candidates} ({r.kept_fraction:.0%}); "
            f"μ histogram {list(r.mean_histogram)}"
        )
        found = dict(
            candidates=r.candidates,
            pivots=r.kept,
            kept_fraction=r.kept_fraction,
            lambda_diff=self.lambda_diff,
        )
        base = await self.timed_eval("base")
        if not pivots:
            # A result, not a failure: π0 is never right (or always right) at every
            # candidate, so no turn teaches anything and the policy stays π0. The run
            # reports it as trained for no step, beside the profiling it cost.
            console.print(
                "[yellow]no candidate passed the pivot filter: nothing to train on "
                f"(λ_diff={self.lambda_diff}, see {self.out / 'filter.json'}); "
                "the policy stays π0[/]"
            )
            final = self.out / "eval_final.json"
            if not final.exists():  # the same weights: their evaluation is π0's
                shutil.copyfile(self.out / "eval_base.json", final)
            return await self.finish(
                "pivotrl", self.stack.policy, base, start, **found, train_steps=0
            )
        mark = time.perf_counter()
        t = self.config.train
        learner = await self.train(pivots, t.pivots_per_step, t.steps, self.pivot_step)
        self.timings["train_s"] = time.perf_counter() - mark
        return await self.finish(
            "pivotrl", learner.model, base, start, **found, train_steps=t.steps
        )

    async def e2e(self) -> dict[str, Any]:
        """The E2E RL baseline on the tasks of the same trajectories."""
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        behind = {c.trajectory.id: c.trajectory for c in pool}  # in order of first turn
        items = list(
            registry.get_spec(self.config.env).format().from_trajectories(list(behind.values()))
        )
        base = await self.timed_eval("base")
        mark = time.perf_counter()
        e = self.config.e2e
        learner = await self.train(items, e.tasks_per_step, e.steps, self.episode_step)
        self.timings["train_s"] = time.perf_counter() - mark
        return await self.finish("e2e", learner.model, base, start, tasks=len(items))

    async def sft(self) -> dict[str, Any]:
        """The SFT baseline: the trajectories behind the candidate pool, assistant turns only."""
        pool = self.candidates()  # bad data fails here, before the output folder exists
        start = self.begin()
        wanted = {c.trajectory.id for c in pool}
        trajectories = [t for t in self.trajectories() if t.id in wanted]
        examples = [
            sft_sample(self.stack.chat, t.messages, t.tools if t.tools is not None else self.tools)
            for t in trajectories
        ]
        s = self.config.sft
        optim = OptimConfig(
            lr=s.lr, warmup_steps=s.warmup_steps, micro_batch_size=s.micro_batch_size
        )
        trainer = SFTTrainer(
            self.stack.policy,
            examples,
            optim=optim,
            batch_size=s.batch_size,
            seed=self.config.seed,
            device=self.config.device,
            pad_id=self.stack.tokenizer.pad_token_id or 0,
        )
        base = await self.timed_eval("base")
        checkpoint = self.out / "checkpoint"
        if checkpoint.exists():
            trainer.load(checkpoint)
        done = trainer.state.step
        keep_lines(self.out / "metrics.jsonl", lambda i, row: i < done)
        mark = time.perf_counter()
        with (self.out / "metrics.jsonl").open("a") as log:
            while trainer.state.step < s.steps:
                metrics = await asyncio.to_thread(trainer.step)
                self.ledger.count(learner_tokens=metrics["tokens"], optimizer_steps=1)
                self.ledger.seconds["learning"] += metrics["time_s"]
                log.write(json.dumps(metrics) + "\n")
                log.flush()
                console.print(
                    f"sft step {trainer.state.step:>3}/{s.steps}  loss {metrics['loss']:.4f}"
                )
                if trainer.state.step % self.config.train.checkpoint_every == 0:
                    trainer.save(checkpoint)
                    self.save_ledger()
        trainer.save(checkpoint)
        self.timings["train_s"] = time.perf_counter() - mark
        await self.push_weights(trainer.model, f"sft-{trainer.state.step}")
        return await self.finish("sft", trainer.model, base, start, trajectories=len(examples))


def keep_lines(path: Path, keep: Any) -> None:
    """Rewrite the JSONL file ``path`` with the rows ``keep(index, row)`` accepts."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [row for i, row in enumerate(rows) if keep(i, row)]
    if len(kept) != len(rows):
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, label in (
        ("candidates", "candidates"),
        ("tasks", "tasks"),
        ("trajectories", "trajectories"),
        ("train_steps", "training steps"),
    ):
        if key in report:
            rows.append((label, str(report[key])))
    if "pivots" in report:
        rows.append(("pivots kept", f"{report['pivots']} ({report['kept_fraction']:.0%})"))
    ledger = report.get("ledger", {})
    rows.append(("rollout turns", str(ledger.get("model_calls", 0))))
    rows.append(("wall-clock", f"{report['timings']['total_s']:.0f} s"))
    return rows


def _changes(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    return [
        (label, report[f"{key}_base"], report[f"{key}_final"])
        for label, key in (("in-domain success", "in_domain"), ("out-of-domain accuracy", "ood"))
    ]


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['method']} on {report['env']}")
    for column in ("", "π0", "trained", "change"):
        table.add_column(column, justify="right")
    for label, value in _summary_rows(report):
        table.add_row(label, value, "", "")
    for label, before, after in _changes(report):
        table.add_row(label, f"{before:.1%}", f"{after:.1%}", f"{100 * (after - before):+.1f} pts")
    table.add_row(_INFRA_LABEL, *(str(n) for n in _infra(report)), "")
    return table


_INFRA_LABEL = "infrastructure failures (episodes not scored)"


def _infra(report: dict[str, Any]) -> tuple[int, int]:
    return report.get("infra_errors_base", 0), report.get("infra_errors_final", 0)


def report_markdown(report: dict[str, Any]) -> str:
    rows = ["| | π0 | trained | change |", "|---|---|---|---|"]
    rows += [f"| {label} | {value} | | |" for label, value in _summary_rows(report)]
    rows += [
        f"| {label} | {before:.1%} | {after:.1%} | {100 * (after - before):+.1f} pts |"
        for label, before, after in _changes(report)
    ]
    rows.append("| {} | {} | {} | |".format(_INFRA_LABEL, *_infra(report)))
    timings = ", ".join(f"{k} {v:.0f}" for k, v in report["timings"].items())
    title = f"# {report['method']} on {report['env']}"
    return title + "\n\n" + "\n".join(rows) + f"\n\nSeconds: {timings}\n"
