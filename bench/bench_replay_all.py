"""Every bundled trajectory of an environment replays, strictly, from a cold start.

Each trajectory of the split is reset to its last turn in a fresh environment with an
empty cache, so every recorded action runs again and every output is compared with the
recording under the strict policy. Reported: how many replayed, and each that diverged
or failed, with its first difference; the wall-clock. Trajectories are shared among
``--workers`` processes.

    python bench/bench_replay_all.py --env swe [--split train] [--workers 2] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
from typing import Any

from report import print_table, write_json

import pivotgym
from pivotgym.errors import DivergenceError, InfraError


def _replay(env_name: str, split: str, ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(ids)
    trajectories = [t for t in pivotgym.load_trajectories(env_name, split=split) if t.id in wanted]

    async def run() -> list[dict[str, Any]]:
        out = []
        for trajectory in trajectories:
            env = pivotgym.make(env_name, tasks=[])
            try:
                await env.areset(options={"trajectory": trajectory, "turn": trajectory.num_turns})
                out.append({"id": trajectory.id, "result": "replayed"})
            except DivergenceError as exc:
                out.append(
                    {
                        "id": trajectory.id,
                        "result": "diverged",
                        "turn": exc.turn,
                        "recorded": exc.expected[:300],
                        "replayed": exc.actual[:300],
                    }
                )
            except InfraError as exc:
                out.append({"id": trajectory.id, "result": "infra", "why": str(exc)[:300]})
            finally:
                await env.aclose()
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    ids = [t.id for t in pivotgym.load_trajectories(args.env, split=args.split)]
    ids = ids[: args.limit] if args.limit else ids
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        jobs = [
            pool.submit(_replay, args.env, args.split, ids[i :: args.workers])
            for i in range(args.workers)
        ]
        for job in jobs:
            results.extend(job.result())
    wall = time.perf_counter() - start
    bad = [r for r in results if r["result"] != "replayed"]
    print_table(
        ["env", "split", "trajectories", "replayed", "diverged", "infra", "wall (s)"],
        [
            [
                args.env,
                args.split,
                len(results),
                len(results) - len(bad),
                sum(r["result"] == "diverged" for r in bad),
                sum(r["result"] == "infra" for r in bad),
                round(wall, 1),
            ]
        ],
    )
    for r in bad:
        print(f"{r['id']}: {r['result']} {r.get('turn', '')} {r.get('why', '')}")
    write_json(
        f"replay_all_{args.env}_{args.split}",
        {"trajectories": len(results), "not_replayed": bad, "wall_s": wall},
    )


if __name__ == "__main__":
    main()
