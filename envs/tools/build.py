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
import gzip
import io
import sys
from pathlib import Path

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


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buffer.getvalue()


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
    files = {"train.jsonl.gz": _gzip("".join(dumps(t) + "\n" for t in train).encode())}
    files["tasks-test.jsonl.gz"] = _gzip(encode_tasks(test))
    files["tasks-ood.jsonl.gz"] = _gzip(encode_tasks(ood))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    files = asyncio.run(build(args.seed))
    if args.check:
        differ = [n for n, data in files.items() if (args.out / n).read_bytes() != data]
        for name in differ:
            print(f"{args.out / name}: differs from a rebuild", file=sys.stderr)
        return 1 if differ else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"{args.out / name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
