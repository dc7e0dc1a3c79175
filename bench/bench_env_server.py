"""The environment server's costs beside the same calls in-process, in one run.

The server runs as its own process (``pivotgym serve-envs`` on a loopback port), as it
would beside a trainer; the client is :class:`~pivotgym.remote.RemoteEnv`.

1. a step (``true`` in the terminal env's shell) and a no-op step (a call of a tool the
   env does not have: no sandbox work), remote vs in-process: p50 and p99, and the
   overhead at p50 (target: at most 2 ms);
2. ``fork(1)`` and closing the branch, remote vs in-process: p50 and p99;
3. no-op steps per second, ``--clients`` sessions stepping at once;
4. ``--sessions`` sessions at once (default 256), each reset to a bundled trajectory's
   turn, stepped three times, graded and closed: failures (target: none), wall-clock.

    python bench/bench_env_server.py [--steps 300] [--forks 30] [--clients 32] [--sessions 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from report import print_table, write_json

import pivotgym
from pivotgym.remote import RemoteEnv, Transport

REPO = Path(__file__).resolve().parent.parent


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": "c0", "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)}}]}  # fmt: skip


TRUE = call("bash", {"command": "true"})
NOOP = call("no_such_tool", {})


def quantiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def start_server(sessions: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "pivotgym.cli", "serve-envs", "--port", str(port),
            "--max-sessions", str(sessions + 16)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the env server did not start")


async def step_latency(env: Any, trajectory: Any, action: dict[str, Any], n: int) -> list[float]:
    timed = []
    await env.areset(options={"trajectory": trajectory, "turn": 1})
    for _ in range(n):
        if env.done or env.turn >= 12:
            await env.areset(options={"trajectory": trajectory, "turn": 1})
        start = time.perf_counter()
        await env.astep(action)
        timed.append(time.perf_counter() - start)
    return timed


async def fork_latency(env: Any, trajectory: Any, n: int) -> list[float]:
    await env.areset(options={"trajectory": trajectory, "turn": 1})
    timed = []
    for _ in range(n):
        start = time.perf_counter()
        (branch,) = await env.afork(1)
        await branch.aclose()
        timed.append(time.perf_counter() - start)
    return timed


async def noop_rate(transport: Transport, trajectory: Any, clients: int, seconds: float) -> float:
    envs = [RemoteEnv(transport, "terminal") for _ in range(clients)]
    for env in envs:
        await env.areset(options={"trajectory": trajectory, "turn": 1})
    done = 0
    stop = time.perf_counter() + seconds

    async def client(env: RemoteEnv) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            if env.done or env.turn >= 12:
                await env.areset(options={"trajectory": trajectory, "turn": 1})
            await env.astep(NOOP)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(e) for e in envs))
    rate = done / (time.perf_counter() - start)
    for env in envs:
        await env.aclose()
    return rate


async def many(transport: Transport, trajectories: list[Any], n: int) -> dict[str, Any]:
    failures: list[str] = []

    async def one(i: int) -> None:
        trajectory = trajectories[i % len(trajectories)]
        env = RemoteEnv(transport, "terminal")
        try:
            await env.areset(options={"trajectory": trajectory, "turn": 1})
            for command in ("pwd", "ls | head -3", "echo done"):
                *_, info = await env.astep(call("bash", {"command": command}))
                if info.get("infra_error"):
                    failures.append(info["infra_error"])
                    return
            await env.aevaluate(terminated=False)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            await env.aclose()

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return {"sessions": n, "failures": failures, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--forks", type=int, default=30)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=256)
    args = parser.parse_args()
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    trajectory = trajectories[0]
    server, url = start_server(max(args.sessions, args.clients))

    async def everything() -> dict[str, Any]:
        transport = Transport(url)
        local = pivotgym.make("terminal", tasks=[])
        remote = RemoteEnv(transport, "terminal")
        out: dict[str, Any] = {}
        try:
            for name, action in (("step", TRUE), ("noop_step", NOOP)):
                out[name] = {
                    "local": quantiles(await step_latency(local, trajectory, action, args.steps)),
                    "remote": quantiles(await step_latency(remote, trajectory, action, args.steps)),
                }
            out["fork"] = {
                "local": quantiles(await fork_latency(local, trajectory, args.forks)),
                "remote": quantiles(await fork_latency(remote, trajectory, args.forks)),
            }
            await remote.aclose()
            out["noop_steps_per_s"] = await noop_rate(transport, trajectory, args.clients,
                                                      args.seconds)  # fmt: skip
            out["concurrent"] = await many(transport, trajectories[:16], args.sessions)
        finally:
            await local.aclose()
            await transport.aclose()
        return out

    try:
        report = asyncio.run(everything())
    finally:
        server.terminate()
        server.wait(timeout=120)
    rows = []
    for name in ("step", "noop_step", "fork"):
        local, remote = report[name]["local"], report[name]["remote"]
        report[name]["overhead_p50_ms"] = remote["p50_ms"] - local["p50_ms"]
        rows.append([f"{name} p50 (ms)", remote["p50_ms"], local["p50_ms"],
                     remote["p50_ms"] - local["p50_ms"]])  # fmt: skip
        rows.append([f"{name} p99 (ms)", remote["p99_ms"], local["p99_ms"],
                     remote["p99_ms"] - local["p99_ms"]])  # fmt: skip
    print_table(["measure", "remote", "in-process", "overhead"], rows)
    overhead = report["noop_step"]["overhead_p50_ms"]
    verdict = "meets" if overhead <= 2.0 else "misses"
    print(f"no-op step overhead at p50: {overhead:.2f} ms ({verdict} the 2 ms target)")
    print(f"no-op steps per second, {args.clients} clients: {report['noop_steps_per_s']:.0f}")
    c = report["concurrent"]
    print(f"{c['sessions']} concurrent sessions: {len(c['failures'])} failures, "
          f"{c['wall_s']:.1f} s")  # fmt: skip
    write_json("env_server", report)


if __name__ == "__main__":
    main()
