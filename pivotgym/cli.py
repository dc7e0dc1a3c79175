"""The ``pivotgym`` command line.

Exit status: 0 success, 2 bad usage or bad data (a one-line error naming the problem),
3 infrastructure failure (sandbox backend unavailable or broken).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pivotgym.core.registry import get_spec, load_trajectories, make, registered
from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox import BACKENDS, backend_class

console = Console()


def cmd_envs(args: argparse.Namespace) -> int:
    table = Table(title="registered environments")
    # Names and ids are what a user types: never cut; splits and descriptions wrap.
    for column in ("name", "gymnasium id"):
        table.add_column(column, no_wrap=True)
    for column in ("splits", "description"):
        table.add_column(column)
    for name, spec in registered().items():
        table.add_row(name, spec.gym_id, ", ".join(spec.splits), spec.description)
    console.print(table)
    backends = Table(title="sandbox backends")
    backends.add_column("backend")
    backends.add_column("status")
    for backend in BACKENDS:
        reason = backend_class(backend).available()
        backends.add_row(backend, "ready" if reason is None else reason)
    console.print(backends)
    return 0


def _summarize(text: str | None, width: int = 70) -> str:
    text = (text or "").strip().replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


async def _demo(env_name: str, sandbox: str | None, turn: int, branches: int) -> int:
    if branches < 1:
        raise DataError(f"must be at least 1, got {branches}", field="--branches")
    spec = get_spec(env_name)
    trajectories = load_trajectories(env_name, split=spec.default_split)
    # Branch 0 goes on with the recorded turns after the restored one, so that turn
    # cannot be a trajectory's last.
    trajectory = next((t for t in trajectories if 0 <= turn < t.num_turns - 1), None)
    if trajectory is None:
        longest = max(trajectories, key=lambda t: t.num_turns, default=None)
        if longest is None or longest.num_turns < 2:
            raise DataError(
                f"no bundled trajectory of {env_name!r} has a turn after another", field="--turn"
            )
        raise DataError(
            f"{turn} is out of range: the longest bundled trajectory of {env_name!r} "
            f"({longest.id}) has {longest.num_turns} assistant turns, and the demo steps the "
            f"turn after the one it restores: use 0..{longest.num_turns - 2}",
            field="--turn",
        )
    env = make(env_name, tasks=[], **({"sandbox": sandbox} if sandbox else {}))
    try:
        obs, info = await env.areset(options={"trajectory": trajectory, "turn": turn})
        console.rule(f"[bold]{trajectory.id}[/]: state before assistant turn {turn}")
        request = next((m["content"] for m in obs if m["role"] == "user"), "")
        console.print(f"[dim]task:[/] {_summarize(request, 200)}")
        console.print(
            f"[dim]restored by replaying {info['replayed_steps']} recorded step(s) "
            f"in {env.stats.reset_s * 1000:.0f} ms on a {type(env.world).__name__}[/]"
        )
        forks = await env.afork(branches)
        # The other branches take calls drawn from the env's action space (its tools,
        # arguments filled from their schemas), seeded so the demo repeats.
        env.action_space.seed(0)
        actions = [trajectory.action(turn)] + [env.action_space.sample() for _ in range(3)]
        table = Table(title=f"{branches} forks of one state, one different action each")
        for column in ("branch", "action", "observation", "error / exit"):
            table.add_column(column)
        results = await asyncio.gather(
            *(fork.astep(actions[i % len(actions)]) for i, fork in enumerate(forks))
        )
        for i, (obs_i, _r, _term, _trunc, step_info) in enumerate(results):
            action = actions[i % len(actions)]
            call = (action.get("tool_calls") or [{}])[0].get("function", {})
            said = f"{call['name']}({call.get('arguments', '')})" if call else action["content"]
            label = "expert: " if i == 0 else ""
            calls = step_info["calls"]
            error = (calls[0].get("error") or calls[0].get("exit_code", "-")) if calls else "-"
            table.add_row(
                str(i), label + _summarize(said, 40), _summarize(obs_i[-1]["content"]), str(error)
            )
        console.print(table)
        # Branch 0 took the expert's action: finish its episode with the rest of the record.
        reward, done = 0.0, False
        for t in range(turn + 1, trajectory.num_turns):
            _, reward, terminated, truncated, _ = await forks[0].astep(trajectory.action(t))
            done = terminated or truncated
        console.print(
            f"branch 0 finished the recorded episode: done={done}, episode reward={reward}"
        )
        for fork in forks:
            await fork.aclose()
    finally:
        await env.aclose()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.env, args.sandbox, args.turn, args.branches))


def cmd_reap(args: argparse.Namespace) -> int:
    for name in BACKENDS:
        cls = backend_class(name)
        if cls.available() is None:
            console.print(f"{name}: removed {cls().reap()} leftover(s) of dead runs")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pivotgym.server import launch

    if args.engine == "torch":
        launch.serve_torch(
            args.model, host=args.host, port=args.port, dtype=args.dtype, log_level=args.log_level
        )
        return 0
    command = launch.sglang_command(
        args.model,
        host=args.host,
        port=args.port,
        dtype=args.dtype,
        mem_fraction_static=args.mem_fraction_static,
        weight_version=args.weight_version,
        deterministic=args.deterministic,
    )
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    return launch.run_sglang(command, url=url, startup_timeout=args.startup_timeout)


def cmd_serve_envs(args: argparse.Namespace) -> int:
    from pivotgym.server import launch
    from pivotgym.server.env_sessions import ServiceLimits

    limits = ServiceLimits(
        max_sessions=args.max_sessions,
        max_sessions_per_token=args.max_sessions_per_token,
        lease_s=args.lease,
    )
    launch.serve_envs(host=args.host, port=args.port, tokens=launch.read_tokens(args.tokens),
                      limits=limits, sandbox=args.sandbox, log_level=args.log_level)  # fmt: skip
    return 0


def _config(args: argparse.Namespace):
    from pivotgym.runs.config import load_config

    overrides = list(args.set or [])
    keys = ("env", "model", "engine", "engine_url", "env_url", "sandbox", "out", "seed", "device")
    for key in keys:
        value = getattr(args, key, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "data", None) is not None:
        overrides.append(f"data.tasks={json.dumps(args.data)}")
    return load_config(args.config, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from pivotgym.runs.pivotrl import PivotRL

    asyncio.run(PivotRL(_config(args)).execute())
    return 0


def _baseline(method: str):
    def command(args: argparse.Namespace) -> int:
        from pivotgym.runs.methods import METHODS

        config = _config(args)
        if args.out is None:
            config.out = config.out.rstrip("/") + f"-{method}"
        asyncio.run(METHODS[method](config).execute())
        return 0

    return command


def cmd_profile(args: argparse.Namespace) -> int:
    from pivotgym.runs.pivotrl import PivotRL

    async def go() -> None:
        run = PivotRL(_config(args))
        pool = run.candidates()
        run.out.mkdir(parents=True, exist_ok=True)
        rows = await run.profile(pool)
        run.select(rows, pool)
        r = run.filter_report
        console.print(
            f"{r.candidates} candidates profiled, {r.kept} pivots kept ({r.kept_fraction:.0%}, "
            f"λ_diff={r.lambda_diff}); μ histogram {list(r.mean_histogram)} -> {run.out}"
        )

    asyncio.run(go())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pivotgym.runs.run import Run

    async def go() -> dict:
        run = Run(_config(args))
        run.out.mkdir(parents=True, exist_ok=True)
        return await run.evaluate(args.name)

    result = asyncio.run(go())
    in_domain = result["in_domain"]
    table = Table(title=f"evaluation of {args.model or 'pivotgym-tiny'}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("in-domain success", f"{in_domain['success_rate']:.1%}")
    table.add_row("episodes", str(in_domain["episodes"]))
    # Left out of the success rate: they say nothing of the policy, and are shown so.
    table.add_row("infrastructure failures", str(in_domain["infra_errors"]))
    table.add_row("mean turns", f"{in_domain['mean_turns']:.2f}")
    table.add_row("out-of-domain accuracy", f"{result['ood']['accuracy']:.1%}")
    console.print(table)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pivotgym.runs.bench import QUICK, run_bench

    if args.quick:
        args.set = QUICK + list(args.set or [])
    config = _config(args)
    root = Path(args.out or "runs/bench")
    methods = [m for m in args.methods.split(",") if m]
    ablations = [a for a in (args.ablations or "").split(",") if a]
    run_bench(
        config,
        methods=methods,
        seeds=args.seeds,
        ablations=ablations,
        root=root,
        target_gain=args.target_gain / 100 if args.target_gain is not None else None,
        command="pivotgym " + " ".join(sys.argv[1:]),
    )
    console.print(f"report: {root / 'index.html'}")
    return 0


RUN_COMMANDS = ("run", "profile", "sft", "e2e", "eval", "bench", "serve")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file (see pivotgym.runs.config for every key)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.steps=12 (repeatable)",
    )
    parser.add_argument("--env")
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="tasks of one's own (e.g. SWE-bench instances) for the env's expert to "
        "demonstrate and the run to train on (data.tasks)",
    )
    parser.add_argument("--model", help="bundled model name or local checkpoint path")
    parser.add_argument("--engine", choices=("torch", "sglang"))
    parser.add_argument("--engine-url", dest="engine_url")
    parser.add_argument(
        "--env-url",
        dest="env_url",
        metavar="URL[,URL...]",
        help="run the environments on env servers (pivotgym serve-envs)",
    )
    parser.add_argument("--sandbox", choices=BACKENDS)
    parser.add_argument("--out")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pivotgym", description="Turn-level RL on SFT agent trajectories."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("envs", help="list registered environments and sandbox backends").set_defaults(
        func=cmd_envs
    )
    demo = sub.add_parser("demo", help="reset to a recorded turn, fork, step each branch")
    demo.add_argument("--env", default="terminal")
    demo.add_argument("--sandbox", choices=BACKENDS, default=None)
    demo.add_argument("--turn", type=int, default=2, help="assistant turn to restore (from 0)")
    demo.add_argument("--branches", type=int, default=4, help="forks of that state (1 or more)")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("reap", help="remove sandboxes left by crashed runs").set_defaults(func=cmd_reap)
    serve = sub.add_parser("serve", help="run an SGLang-compatible sampling server")
    serve.add_argument("--engine", choices=("torch", "sglang"), default="torch")
    serve.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=30000)
    serve.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    serve.add_argument("--log-level", default="warning", help="torch engine: uvicorn log level")
    serve.add_argument(
        "--mem-fraction-static", type=float, default=None, help="sglang: GPU memory share"
    )
    serve.add_argument("--weight-version", default=None, help="sglang: initial weight version")
    serve.add_argument(
        "--deterministic",
        action="store_true",
        help="sglang: --enable-deterministic-inference (needed for seeded sampling)",
    )
    serve.add_argument("--startup-timeout", type=float, default=1800.0, help="sglang: seconds")
    serve.set_defaults(func=cmd_serve)
    envs = sub.add_parser("serve-envs", help="serve pivotgym's environments over HTTP")
    envs.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    envs.add_argument("--port", type=int, default=30100)
    envs.add_argument(
        "--tokens",
        default=None,
        help="file of bearer tokens, one a line (also $PIVOTGYM_ENV_TOKENS)",
    )
    envs.add_argument(
        "--sandbox",
        choices=BACKENDS,
        default=None,
        help="backend of every session's sandboxes (default: the first available)",
    )
    envs.add_argument("--max-sessions", type=int, default=64, help="sandbox slots")
    envs.add_argument(
        "--max-sessions-per-token",
        type=int,
        default=None,
        help="live sessions a token may hold (default: --max-sessions)",
    )
    envs.add_argument(
        "--lease", type=float, default=300.0, help="seconds a session lives without a call"
    )
    envs.add_argument("--log-level", default="warning", help="uvicorn log level")
    envs.set_defaults(func=cmd_serve_envs)
    for name, func, text in (
        ("run", cmd_run, "PivotRL: profile, filter, train and evaluate"),
        ("profile", cmd_profile, "profile candidates with the frozen policy and keep pivots"),
        ("sft", _baseline("sft"), "the SFT baseline on the same trajectories, then evaluate"),
        ("e2e", _baseline("e2e"), "the E2E RL baseline: whole episodes on the same tasks"),
        ("eval", cmd_eval, "evaluate a checkpoint: held-out episodes and the OOD skill"),
    ):
        command = sub.add_parser(name, help=text)
        _run_options(command)
        command.set_defaults(func=func)
        if name == "eval":
            command.add_argument("--name", default="checkpoint", help="label of the result file")
    bench = sub.add_parser("bench", help="compare PivotRL, E2E RL and SFT on one cost ledger")
    _run_options(bench)
    bench.add_argument("--methods", default="pivotrl,e2e,sft")
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--quick", action="store_true", help="small sizes: minutes, not an hour")
    bench.add_argument("--ablations", help="e.g. no-filter,exact-reward,lambda=0.5,k=4,group=4")
    bench.add_argument(
        "--target-gain",
        type=float,
        metavar="PTS",
        help="target: this many points over each seed's π0 (default: E2E RL's mean final change)",
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The console shows pivotgym's own progress; per-file loading bars would bury it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules or args.command in RUN_COMMANDS:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return args.func(args)
    except DataError as exc:
        print(f"pivotgym: error: {exc}", file=sys.stderr)
        return 2
    except InfraError as exc:
        print(f"pivotgym: infrastructure error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
