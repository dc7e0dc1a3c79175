"""fork(8) of a Docker sandbox against eight bare ``docker run`` of the same image.

Each side ends with ``true`` executed in all eight containers, so both measure "eight
containers ready to take a command". The fork side also pays for copying the parent's
state eight times and for the hardened settings of its containers (read-only root,
seccomp profile, state binds, an attached stdin), which the bare side does not have.
Rounds alternate between the sides; the table shows medians, and the JSON keeps every
round.

    python bench/bench_docker_fork.py [--rounds 5] [--n 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from report import print_table, ratio_line, timing_rows, write_json

from pivotgym.sandbox.base import SandboxSpec
from pivotgym.sandbox.docker import DockerBackend
from pivotgym.sandbox.docker_images import BASE_IMAGE

TARGET = 2.0


async def fork_side(backend: DockerBackend, n: int) -> float:
    """Seconds from fork(n) of a warm parent to ``true`` having run in every fork."""
    async with await backend.create(SandboxSpec()) as parent:
        await parent.exec(["sh", "-c", "mkdir -p /app/work && seq 1000 > /app/work/data"])
        started = time.perf_counter()
        forks = await parent.fork(n)
        results = await asyncio.gather(*(f.exec(["true"]) for f in forks))
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results)
        await asyncio.gather(*(f.close() for f in forks))
    return elapsed


def _cli(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def bare_cli_side(n: int) -> float:
    """Seconds for n concurrent ``docker run -d`` + ``docker exec true`` (CLI)."""

    def one(_: int) -> str:
        cid = _cli("run", "-d", "--network", "none", BASE_IMAGE, "sleep", "infinity")
        _cli("exec", cid, "true")
        return cid

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - started
    _cli("rm", "-f", *ids)
    return elapsed


def bare_cli_sequential_side(n: int) -> float:
    """The same n runs one after another, as a shell loop would do them."""
    started = time.perf_counter()
    ids = []
    for _ in range(n):
        ids.append(_cli("run", "-d", "--network", "none", BASE_IMAGE, "sleep", "infinity"))
        _cli("exec", ids[-1], "true")
    elapsed = time.perf_counter() - started
    _cli("rm", "-f", *ids)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    why = DockerBackend.available()
    if why is not None:
        raise SystemExit(f"docker backend unavailable: {why}")

    backend = DockerBackend()
    sides = {
        f"fork({args.n}) + true": lambda: asyncio.run(fork_side(backend, args.n)),
        f"{args.n}x docker run + exec true, concurrent": lambda: bare_cli_side(args.n),
        f"{args.n}x docker run + exec true, sequential": lambda: bare_cli_sequential_side(args.n),
    }
    for run in sides.values():  # warm caches and the daemon once, unmeasured
        run()
    rounds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            rounds[name].append(run())

    fork_name, baseline = list(sides)[:2]
    headers, rows = timing_rows(rounds, baseline)
    print_table(headers, rows)
    ratio = statistics.median(rounds[fork_name]) / statistics.median(rounds[baseline])
    print(ratio_line("fork/bare", ratio, TARGET))
    write_json("docker_fork", {
        "n": args.n,
        "rounds": args.rounds,
        "seconds": rounds,
        "median_s": {name: statistics.median(times) for name, times in rounds.items()},
        "baseline": baseline,
        "ratio_to_baseline": ratio,
        "target_ratio": TARGET,
    })  # fmt: skip


if __name__ == "__main__":
    main()
