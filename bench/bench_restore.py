"""Restore every turn of the bundled train trajectories through one shared snapshot cache.

For each trajectory, every turn ``t`` (the state just before assistant turn ``t``) is
restored in order by ``reset(options={"trajectory": ..., "turn": t})``. Reported beside
each other: the replayed-steps ratio, ``sum(info["replayed_steps"]) / resets``, which the
cache keeps at 1.0 or less, and the naive ratio ``sum(t) / resets`` that replaying every
prefix from scratch would cost; then wall-clock per restore.

    python bench/bench_restore.py [--limit 200 | --all] [--backend bwrap]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from report import print_table, write_json
from tqdm import tqdm

import pivotgym
from pivotgym.core.replay import SnapshotCache
from pivotgym.envs.terminal import DATA as TERMINAL_DATA
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.errors import DivergenceError

DATA = TERMINAL_DATA / "train.jsonl.gz"


def wait_for_data(poll_s: float = 10.0, give_up_s: float = 3600.0) -> None:
    waited = 0.0
    while not DATA.exists():
        if waited >= give_up_s:
            raise SystemExit(f"{DATA} did not appear within {give_up_s:g} s")
        print(f"waiting for {DATA} ...", flush=True)
        time.sleep(poll_s)
        waited += poll_s


async def restore_all(trajectories, backend: str) -> dict:
    cache = SnapshotCache()
    env = TerminalEnv(tasks=[], sandbox=backend, cache=cache)
    replayed = naive = resets = 0
    per_restore: list[float] = []
    divergences: list[str] = []
    try:
        for trajectory in tqdm(trajectories, desc="trajectories", unit="traj"):
            for turn in range(trajectory.num_turns):
                started = time.perf_counter()
                try:
                    _, info = await env.areset(options={"trajectory": trajectory, "turn": turn})
                except DivergenceError as exc:
                    divergences.append(f"{trajectory.id} turn {turn}: {exc}"[:300])
                    break
                per_restore.append(time.perf_counter() - started)
                replayed += info["replayed_steps"]
                naive += turn
                resets += 1
    finally:
        await env.aclose()
    return {"resets": resets, "replayed_steps": replayed, "naive_steps": naive,
            "per_restore_s": per_restore, "divergences": divergences,
            "cache_hits": cache.hits, "cache_misses": cache.misses}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--all", action="store_true", help="every train trajectory")
    parser.add_argument("--backend", default="bwrap")
    args = parser.parse_args()

    wait_for_data()
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    if not args.all:
        trajectories = trajectories[: args.limit]
    started = time.perf_counter()
    r = asyncio.run(restore_all(trajectories, args.backend))
    wall = time.perf_counter() - started

    resets = max(r["resets"], 1)
    ratio, naive = r["replayed_steps"] / resets, r["naive_steps"] / resets
    times = r["per_restore_s"] or [0.0]
    print_table(
        ["trajectories", "resets", "replayed/turns", "naive/turns", "ms/restore (median)",
         "ms/restore (p95)", "divergences", "wall s"],
        [[len(trajectories), r["resets"], f"{ratio:.3f}", f"{naive:.3f}",
          statistics.median(times) * 1e3, sorted(times)[int(0.95 * (len(times) - 1))] * 1e3,
          len(r["divergences"]), wall]],
    )  # fmt: skip
    verdict = "meets" if ratio <= 1.0 else "misses"
    print(f"replayed steps per restore {ratio:.3f} vs naive {naive:.3f} ({verdict} the 1.0 bound)")
    for line in r["divergences"][:5]:
        print("divergence:", line)
    write_json("restore", {"backend": args.backend, "trajectories": len(trajectories),
                           "replayed_ratio": ratio, "naive_ratio": naive, "wall_s": wall,
                           **r})  # fmt: skip


if __name__ == "__main__":
    main()
