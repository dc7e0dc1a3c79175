"""Throughput of the execution verifier on real terminal candidates, and where time goes.

For each of the first ``--candidates`` candidates of the bundled train trajectories, the
environment is restored at ``s_t`` (timed: ``restore``) and K actions are scored against
the expert's: the expert's own command, the same command in a ``{ ...; }`` group (an
equivalent), and real commands that mostly are not (``ls``, ``pwd``, the trajectory's
previous and next commands, ``true``, ``cat /dev/null``). Three ways are run on the same
candidates, side by side:

- ``group``: ``verify_many`` (one ``afork`` for the K samples and the expert; K + 1 runs);
- ``single``: K concurrent ``verify`` calls (a fork each; the expert effect still shared);
- ``naive``: as ``single`` with the expert cache off, so each sample re-runs the expert (2K).

Reported: verdicts per second of verification wall-clock, the restore cost, seconds per
phase (summed over calls and branches, which run concurrently, so a sum can exceed the
wall-clock), executions, and the self-consistency rate (the expert's command scored
against itself: what nondeterminism costs).

    python bench/bench_verifiers.py [--candidates 60] [--k 8] [--backend bwrap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from report import print_table, ratio_line, write_json
from tqdm import tqdm

import pivotgym
from pivotgym.core.candidates import Candidate, candidates
from pivotgym.core.replay import SnapshotCache
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.verifier import Execution
from pivotgym.verifiers import restore


def bash(command: str) -> dict[str, Any]:
    arguments = json.dumps({"command": command})
    call = {"id": "b0", "type": "function", "function": {"name": "bash", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def command_of(action: dict[str, Any]) -> str | None:
    calls = action.get("tool_calls") or []
    return json.loads(calls[0]["function"]["arguments"]).get("command") if calls else None


def samples_for(c: Candidate, k: int) -> list[dict[str, Any]]:
    command = command_of(c.reference) or "true"
    t = c.trajectory
    previous = command_of(t.action(c.turn - 1)) if c.turn > 0 else None
    following = command_of(t.action(c.turn + 1)) if c.turn + 1 < t.num_turns else None
    pool = [c.reference, bash("{ " + command + "\n}"), bash("ls"), bash("pwd"),
            bash(following or "echo next"), bash(previous or "echo previous"),
            bash("true"), bash("cat /dev/null")]  # fmt: skip
    return (pool * (k // len(pool) + 1))[:k]


async def run_side(side: str, found: list[Candidate], k: int, backend: str) -> dict[str, Any]:
    env = TerminalEnv(tasks=[], sandbox=backend, cache=SnapshotCache())
    verifier = Execution(cache_size=0 if side == "naive" else 4096)
    restore_s: list[float] = []
    verify_s: list[float] = []
    rewards: list[list[float]] = []
    infra = 0
    try:
        for c in tqdm(found, desc=side, unit="cand", leave=False):
            started = time.perf_counter()
            state = await restore(env, c)
            restore_s.append(time.perf_counter() - started)
            actions = samples_for(c, k)
            started = time.perf_counter()
            if side == "group":
                verdicts = await verifier.verify_many(state, actions, c.reference)
            else:
                verdicts = await asyncio.gather(
                    *(verifier.verify(state, a, c.reference) for a in actions)
                )
            verify_s.append(time.perf_counter() - started)
            infra += sum(v.infra_error for v in verdicts)
            rewards.append([v.reward for v in verdicts])
    finally:
        await env.aclose()
    s = verifier.stats
    n_verdicts = len(found) * k
    return {
        "side": side,
        "verdicts": n_verdicts,
        "verdicts_per_s": n_verdicts / sum(verify_s),
        "verify_s_per_candidate": statistics.mean(verify_s),
        "restore_s_per_candidate": statistics.mean(restore_s),
        "executions": s.executions,
        "expert_executions": s.expert_executions,
        "branches": s.branches,
        "fork_s": s.fork_s,
        "exec_s_per_run": s.exec_s / max(1, s.executions + s.expert_executions),
        "measure_s": s.measure_s,
        "close_s": s.close_s,
        "infra_errors": infra,
        "self_consistency": statistics.mean(r[0] for r in rewards),
        "equivalent_pass_rate": statistics.mean(r[1] for r in rewards),
        "mean_reward": statistics.mean(x for r in rewards for x in r),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=60)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--backend", default="bwrap")
    args = parser.parse_args()

    trajectories = pivotgym.load_trajectories("terminal", split="train")
    # Spread over task families: every 20th trajectory.
    found = candidates(trajectories[::20])[: args.candidates]
    sides = [
        asyncio.run(run_side(side, found, args.k, args.backend))
        for side in ("group", "single", "naive")
    ]
    print(f"{len(found)} candidates x K={args.k}, backend {args.backend}")
    print_table(
        ["side", "verdicts/s", "verify s/cand", "restore s/cand", "runs", "expert runs",
         "branches", "fork s", "exec s/run", "measure s", "close s", "infra"],
        [[r["side"], r["verdicts_per_s"], r["verify_s_per_candidate"], r["restore_s_per_candidate"],
          r["executions"], r["expert_executions"], r["branches"], r["fork_s"], r["exec_s_per_run"],
          r["measure_s"], r["close_s"], r["infra_errors"]] for r in sides],
    )  # fmt: skip
    group = sides[0]
    print(f"self-consistency (expert vs itself): {group['self_consistency']:.3f}; "
          f"'{{ cmd; }}' equivalent passes: {group['equivalent_pass_rate']:.3f}; "
          f"mean reward: {group['mean_reward']:.3f}")  # fmt: skip
    naive = sides[2]
    print(ratio_line("group/naive verify time", group["verify_s_per_candidate"]
                     / naive["verify_s_per_candidate"], 1.0))  # fmt: skip
    write_json(
        "verifiers",
        {"candidates": len(found), "k": args.k, "backend": args.backend, "sides": sides},
    )


if __name__ == "__main__":
    main()
