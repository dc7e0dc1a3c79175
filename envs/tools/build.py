"""Build the tool env's bundled data, bit for bit from a seed.

::

    python -m pivotgym.envs.tools.build            # write envs/tools/data/
    python -m pivotgym.envs.tools.build --check    # rebuild in memory, compare with it

Per train domain (those not ``held_out``) the tasks are one seeded draw
(:func:`~pivotgym.envs.tools.tasks.generate_tasks`): its first tasks are demonstrated by
the expert for ``train.jsonl.gz``, the next ones are the in-domain test tasks; the
held-out domain gives only the out-of-domain tasks. Tasks are distinct within a draw,
so no test task is a train task.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pivotgym.core.bundled import gzipped, write_or_check
from pivotgym.core.trajectory import dumps
from pivotgym.envs.tools.domain import Domain, get_domain
from pivotgym.envs.tools.env import ToolsEnv
from pivotgym.envs.tools.expert import demonstrate
from pivotgym.envs.tools.tasks import encode_tasks, generate_tasks

DATA = Path(__file__).parent / "data"
TRAIN_DOMAINS = ("clinic", "bank", "telecom")
HELD_OUT = "library"
TRAIN_TRAJECTORIES = 2000
TEST_TASKS = 200
OOD_TASKS = 100


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (index < total % parts)


async def build(seed: int = 0) -> dict[str, bytes]:
    """The bundled files by name, as bytes."""
    train, test = [], []
    for i, name in enumerate(TRAIN_DOMAINS):
        domain: Domain = get_domain(name)
        n_train = _share(TRAIN_TRAJECTORIES, len(TRAIN_DOMAINS), i)
        n_test = _share(TEST_TASKS, len(TRAIN_DOMAINS), i)
        tasks = generate_tasks(domain, n_train + n_test, seed)
        env = ToolsEnv(domain=name)
        for j, task in enumerate(tasks[:n_train]):
            train.append(await demonstrate(env, task, seed * 1_000_003 + j))
        await env.aclose()
        test.extend(tasks[n_train:])
    ood = generate_tasks(get_domain(HELD_OUT), OOD_TASKS, seed)
    files = {"train.jsonl.gz": gzipped("".join(dumps(t) + "\n" for t in train).encode())}
    files["tasks-test.jsonl.gz"] = gzipped(encode_tasks(test))
    files["tasks-ood.jsonl.gz"] = gzipped(encode_tasks(ood))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    return write_or_check(asyncio.run(build(args.seed)), args.out, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
