"""Build the SWE env's bundled data from a seed.

::

    python -m pivotgym.envs.swe.build --repos      # fetch the releases, write data/repos/
    python -m pivotgym.envs.swe.build              # instances and trajectories: data/
    python -m pivotgym.envs.swe.build --scale 0.05 --out /tmp/swe   # a small build
    python -m pivotgym.envs.swe.build --check      # rebuild in memory, compare with data/
    python -m pivotgym.envs.swe.build --trajectories   # the expert's part again, same instances

Per repository, bug candidates (:mod:`pivotgym.envs.swe.bugs`) are drawn with the seed and
validated by the repository's tests until half again the repository's share is reached
(or its candidates run out); the instances are then taken from the repositories in turn:
the train repositories give :data:`TEST` test instances and :data:`TRAIN` train
instances between them, the held-out ones :data:`OOD` out-of-repository instances.
Each train instance gets one expert trajectory, recorded live in a bwrap sandbox
(:mod:`pivotgym.envs.swe.expert`). Repositories are built two at a time, one
process each. Files written:

- ``tasks-train.jsonl.gz``, ``tasks-test.jsonl.gz``, ``tasks-ood.jsonl.gz``: instances in
  SWE-bench's shape (:mod:`pivotgym.envs.swe.tasks`);
- ``train.jsonl.gz``: the expert's trajectories;
- ``report.json``: per repository, candidates tried and kept, instances per kind of
  bug, and the instances the expert failed on, with why.

A rebuild makes the same instances and the same trajectories, but for the durations and
object addresses pytest prints, which ``--check`` masks as replay does.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gzip
import json
import random
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pivotgym.core.bundled import gzipped, write_or_check
from pivotgym.core.replay import normalizer
from pivotgym.core.trajectory import Trajectory, dumps
from pivotgym.envs.swe import bugs
from pivotgym.envs.swe.repos import (
    BUNDLES,
    DATA,
    REPOS,
    Repo,
    clone,
    fetch,
    git,
    make_bundle,
    unpack,
)
from pivotgym.envs.swe.tasks import SWETask, encode_tasks, materialize

TRAIN, TEST, OOD = 1000, 150, 75
WORKERS = 2


def build_repos(cache: Path) -> None:
    """Fetch every release and write its bundle and licence (``data/repos``)."""
    for repo in REPOS.values():
        data = fetch(repo, cache)
        with tempfile.TemporaryDirectory() as scratch:
            tree = Path(scratch) / repo.name
            tree.mkdir()
            unpack(repo, data, tree)
            commit = make_bundle(repo, tree, repo.bundle)
            shutil.copyfile(tree / repo.licence_file, BUNDLES / f"{repo.name}.LICENSE")
        size = repo.bundle.stat().st_size
        print(f"{repo.name} {repo.version}: commit {commit[:12]}, {size:,} bytes")


def instances(repo: Repo, wanted: int, seed: int) -> tuple[list[SWETask], dict[str, Any]]:
    """``wanted`` validated bug instances of ``repo`` (module docstring) and a report."""
    rng = random.Random(f"swe-{repo.name}-{seed}")
    with tempfile.TemporaryDirectory(prefix="pivotgym-swe-build-") as scratch:
        tree = Path(scratch) / repo.name
        clone(repo, tree)
        baseline = bugs.run_tests(tree, repo, bugs.test_files(tree, repo))
        found: list[SWETask] = []
        tried = 0
        for candidate in bugs.candidates(tree, repo, rng):
            if len(found) == wanted:
                break
            tried += 1
            valid = bugs.validate(tree, repo, candidate, baseline)
            if valid is not None:
                found.append(_task(tree, repo, valid, len(found), rng))
    kinds = Counter(t.family for t in found)
    return found, {"tried": tried, "kept": len(found), "kinds": dict(sorted(kinds.items()))}


def _task(tree: Path, repo: Repo, valid: bugs.Validated, index: int, rng: random.Random) -> SWETask:
    candidate, mutation = valid.candidate, valid.candidate.mutation
    path = tree / candidate.module
    original = path.read_text()
    path.write_text(mutation.apply(original))
    try:
        bug_patch = git("diff", "--no-color", cwd=tree)
        fix = git("diff", "--no-color", "-R", cwd=tree)
        error = bugs.failure_report(tree, repo, valid.fail_to_pass[0])
        text = bugs.statement(tree, repo, valid.fail_to_pass[0], error, rng)
    finally:
        path.write_text(original)
    task = SWETask(
        instance_id=f"{repo.name}-{index:04d}",
        repo=repo.name,
        problem_statement=text,
        fail_to_pass=valid.fail_to_pass,
        pass_to_pass=valid.pass_to_pass,
        patch=fix,
        bug_patch=bug_patch,
        test_files=candidate.test_files,
        family=mutation.kind,
        extra={"mutation": {"kind": mutation.kind, "module": candidate.module,
                            "function": mutation.function, "line": mutation.line,
                            "start": mutation.start, "original": mutation.original,
                            "text": mutation.text}},
    )  # fmt: skip
    commit = git("rev-parse", "HEAD", cwd=materialize(task)).strip()
    return SWETask(**{**task.__dict__, "base_commit": commit})


def _repo_job(name: str, wanted: int, seed: int) -> tuple[str, list[dict], dict]:
    """One repository's instances, as JSON (run in a worker process)."""
    found, report = instances(REPOS[name], wanted, seed)
    return name, [t.to_json() for t in found], report


async def _demonstrations(tasks: list[SWETask], seed: int) -> tuple[list[Trajectory], list[dict]]:
    from pivotgym.envs.swe.env import SWEEnv
    from pivotgym.envs.swe.expert import ExpertError, demonstrate
    from pivotgym.errors import InfraError

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(tasks)):
        queue.put_nowait(i)
    done: dict[int, Trajectory] = {}
    failed: list[dict] = []

    async def worker() -> None:
        env = SWEEnv(sandbox="bwrap")
        try:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    done[i] = await demonstrate(env, tasks[i], seed)
                except (ExpertError, InfraError) as exc:
                    # One instance the expert cannot play does not cost the build: it is
                    # reported, and the next is played.
                    failed.append({"task": tasks[i].instance_id, "why": str(exc)[:300]})
                finished = len(done) + len(failed)
                if finished % 25 == 0 or finished == len(tasks):
                    print(f"expert: {finished}/{len(tasks)} instances, {len(failed)} failed",
                          file=sys.stderr)  # fmt: skip
        finally:
            await env.aclose()

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return [done[i] for i in sorted(done)], sorted(failed, key=lambda f: f["task"])


def _round_robin(pools: list[list[Any]], total: int) -> list[list[Any]]:
    """``total`` items taken in turn from the front of each pool (a pool that runs out is
    passed over), as one list a pool, in the pools' order."""
    taken: list[list[Any]] = [[] for _ in pools]
    while sum(map(len, taken)) < total:
        moved = False
        for pool, took in zip(pools, taken, strict=True):
            if len(took) < len(pool) and sum(map(len, taken)) < total:
                took.append(pool[len(took)])
                moved = True
        if not moved:
            break
    return taken


def build(seed: int = 0, scale: float = 1.0) -> dict[str, bytes]:
    """Every file by name, as bytes (module docstring). Each repository is asked for
    half again its share, so that one with few bugs to give (inflection is a single
    module) is made up for by the others, taken in turn."""
    from pivotgym.envs.swe.tasks import task_from_json

    train_repos = [r for r in REPOS.values() if not r.held_out]
    held_out = [r for r in REPOS.values() if r.held_out]
    train_n, test_n, ood_n = round(TRAIN * scale), round(TEST * scale), round(OOD * scale)
    ask = -(-3 * (train_n + test_n) // (2 * len(train_repos)))
    ask_ood = -(-3 * ood_n // (2 * len(held_out)))
    jobs = [(r.name, ask, seed) for r in train_repos] + [(r.name, ask_ood, seed) for r in held_out]
    found: dict[str, list[dict]] = {}
    reports: dict[str, dict] = {}
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as pool:
        for name, made, report in pool.map(_repo_job, *zip(*jobs, strict=True)):
            found[name], reports[name] = made, report
            print(f"{name}: kept {report['kept']} of {report['tried']} candidates", file=sys.stderr)
    pools = [found[r.name] for r in train_repos]
    tests = _round_robin(pools, test_n)
    rest = [pool[len(t) :] for pool, t in zip(pools, tests, strict=True)]
    # A few more than asked for: the expert fails on one in hundreds, and a train
    # instance is one with its trajectory.
    trains = _round_robin(rest, train_n + -(-train_n // 50))
    oods = _round_robin([found[r.name] for r in held_out], ood_n)
    train_tasks = [task_from_json(t) for group in trains for t in group]
    test_tasks = [task_from_json(t) for group in tests for t in group]
    ood_tasks = [task_from_json(t) for group in oods for t in group]
    trajectories, failed = asyncio.run(_demonstrations(train_tasks, seed))
    # A train instance is one with its trajectory: those the expert failed are reported.
    trajectories = trajectories[:train_n]
    shown = {t.task["instance_id"] for t in trajectories}
    train_tasks = [t for t in train_tasks if t.instance_id in shown]
    report = {
        "seed": seed,
        "scale": scale,
        "repositories": reports,
        "instances": {"train": len(train_tasks), "test": len(test_tasks), "ood": len(ood_tasks)},
        "trajectories": len(trajectories),
        "expert_failed": failed,
        "turns": dict(sorted(Counter(t.num_turns for t in trajectories).items())),
    }
    return {
        "tasks-train.jsonl.gz": gzipped(encode_tasks(train_tasks)),
        "tasks-test.jsonl.gz": gzipped(encode_tasks(test_tasks)),
        "tasks-ood.jsonl.gz": gzipped(encode_tasks(ood_tasks)),
        "train.jsonl.gz": gzipped("".join(dumps(t) + "\n" for t in trajectories).encode()),
        "report.json": (json.dumps(report, indent=2) + "\n").encode(),
    }


def rerecord(data: Path, seed: int = 0) -> dict[str, bytes]:
    """The files of :func:`build` whose content is the expert's: its trajectories over
    the train instances already in ``data`` (after a change of the expert or of the
    sandbox), the report's counts brought up to date. A build from the seed makes the
    same instances, so this is what it would give, unless the expert now fails on one."""
    from pivotgym.envs.swe.tasks import load_task_file

    train_tasks = load_task_file(data / "tasks-train.jsonl.gz")
    trajectories, failed = asyncio.run(_demonstrations(train_tasks, seed))
    shown = {t.task["instance_id"] for t in trajectories}
    report = json.loads((data / "report.json").read_text())
    report.update({
        "instances": {**report["instances"], "train": len(shown)},
        "trajectories": len(trajectories),
        "expert_failed": failed,
        "turns": dict(sorted(Counter(t.num_turns for t in trajectories).items())),
    })  # fmt: skip
    return {
        "tasks-train.jsonl.gz": gzipped(
            encode_tasks([t for t in train_tasks if t.instance_id in shown])
        ),
        "train.jsonl.gz": gzipped("".join(dumps(t) + "\n" for t in trajectories).encode()),
        "report.json": (json.dumps(report, indent=2) + "\n").encode(),
    }


def _masked(data: bytes) -> str:
    """A file's text with what varies between runs masked, as replay compares outputs."""
    from pivotgym.envs.swe.env import VARYING

    text = gzip.decompress(data).decode() if data[:2] == b"\x1f\x8b" else data.decode()
    return normalizer(VARYING)(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="a share of the full counts")
    parser.add_argument("--repos", action="store_true", help="fetch the releases (bundles)")
    parser.add_argument("--sdists", type=Path, help="where fetched releases are kept",
                        default=Path(tempfile.gettempdir()) / "pivotgym-sdists")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="compare a rebuild with --out")
    again = "record the expert's trajectories again over --out's instances"
    parser.add_argument("--trajectories", action="store_true", help=again)
    args = parser.parse_args(argv)
    if args.repos:
        build_repos(args.sdists)
        return 0
    files = rerecord(args.out, args.seed) if args.trajectories else build(args.seed, args.scale)
    return write_or_check(files, args.out, check=args.check,
                          same=lambda a, b: _masked(a) == _masked(b))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
