"""Build the browser env's data from a seed.

::

    python -m pivotgym.envs.browser.build               # the apps' data: data/
    python -m pivotgym.envs.browser.build --check       # rebuild in memory, compare with data/
    python -m pivotgym.envs.browser.build --scale 0.05 --out /tmp/browser   # a small build
    python -m pivotgym.envs.browser.build --miniwob     # MiniWoB++'s splits (the cache)
    python -m pivotgym.envs.browser.build --report      # oracle and random agents per page

The apps' data ship with the project (``data/``): for each train family of the apps
(:data:`TRAIN`), tasks drawn from consecutive seeds and the expert's trajectory of
each, recorded live; :data:`TEST` held-out tasks of the same families (other seeds);
and :data:`OOD` tasks of the held-out families. Files: ``train.jsonl.gz`` (the
trajectories, their tasks inline), ``tasks-test.jsonl.gz``, ``tasks-ood.jsonl.gz`` and
``report.json`` (per family: tasks tried, solved, the turns their trajectories take).

MiniWoB++'s part is made from the installed package the first time it is asked for
(its pages are the package's, not the project's): ``miniwob-train`` holds the experts'
trajectories of the pages they solve, ``miniwob-test`` one task per deterministic page
and seed. The report plays every deterministic page with the expert (where one exists)
and with a random agent (clicks, fills and keys on random bids), and gives each's
success rate.

Recording runs :data:`WORKERS` processes, each with one browser and a few episodes at
once; trajectories are sorted by task, so the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import importlib.metadata
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pivotgym.core.bundled import gzipped, write_or_check
from pivotgym.core.trajectory import Trajectory, dumps, parse_trajectory
from pivotgym.envs.browser.families import families, get_family
from pivotgym.envs.browser.tasks import BrowserTask, encode_tasks

DATA = Path(__file__).parent / "data"
WORKERS = 2
CONCURRENT = 3  # episodes at once in one worker's browser
# Train trajectories per family of the apps (1,540 in all).
TRAIN = {
    "shop.buy": 260,
    "shop.order-total": 180,
    "tracker.file-issue": 240,
    "tracker.close-issue": 240,
    "wiki.fact": 180,
    "wiki.two-hop": 220,
    "wiki.edit": 220,
}
TEST = 200  # held-out tasks of the train families, spread evenly
OOD = {"shop.cheapest": 25, "tracker.count-open": 25, "wiki.three-hop": 25}
# Seeds: train tasks from 0, test tasks from TEST_SEEDS, out-of-domain from OOD_SEEDS.
TEST_SEEDS, OOD_SEEDS = 100_000, 200_000
MINIWOB_TRAIN_PER_PAGE = 40
MINIWOB_TEST_SEEDS = (900_001, 900_002)
RANDOM_EPISODES, RANDOM_STEPS = 10, 8


def make_task(family: str, seed: int) -> BrowserTask:
    return get_family(family).generate(seed, f"{family}-{seed}")


async def _record(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each task's expert trajectory (or why there is none), as JSON."""
    import pivotgym
    from pivotgym.envs.browser.expert import ExpertError, demonstrate
    from pivotgym.envs.browser.runtime import runtime
    from pivotgym.envs.browser.tasks import task_from_json

    out: list[dict[str, Any]] = []
    slots = asyncio.Semaphore(CONCURRENT)

    async def one(data: dict[str, Any]) -> None:
        task = task_from_json(data)
        async with slots:
            env = pivotgym.make("browser", tasks=[])
            try:
                trajectory = await demonstrate(env, task, task.seed)
                out.append({"task": data, "trajectory": trajectory.to_json()})
            except ExpertError as exc:
                out.append({"task": data, "failed": str(exc)})
            finally:
                await env.aclose()
            if len(out) % 50 == 0:
                print(
                    f"worker {os.getpid()}: {len(out)}/{len(tasks)} tasks",
                    file=sys.stderr,
                    flush=True,
                )

    # The worker's browser stays up between its episodes.
    held = runtime()
    await held.acquire()
    try:
        await asyncio.gather(*(one(t) for t in tasks))
    finally:
        await held.release()
    return out


def _record_job(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return asyncio.run(_record(tasks))


def record(tasks: list[BrowserTask], workers: int = WORKERS) -> tuple[list[Trajectory], list]:
    """The expert trajectories of ``tasks`` (sorted by task), and the failures."""
    chunks = [[t.to_json() for t in tasks[i::workers]] for i in range(workers)]
    done: list[dict[str, Any]] = []
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_record_job, chunks):
            done.extend(part)
    done.sort(key=lambda d: d["task"]["task_id"])
    trajectories = [parse_trajectory(d["trajectory"]) for d in done if "trajectory" in d]
    failures = [{"task": d["task"]["task_id"], "why": d["failed"]} for d in done if "failed" in d]
    return trajectories, failures


def _spread(total: int, names: list[str]) -> dict[str, int]:
    share = {n: total // len(names) for n in names}
    for name in names[: total - sum(share.values())]:
        share[name] += 1
    return share


def apps_data(scale: float) -> dict[str, bytes]:
    """The shipped files (module docstring)."""
    train: list[BrowserTask] = []
    for family, count in TRAIN.items():
        train += [make_task(family, seed) for seed in range(max(1, round(count * scale)))]
    trajectories, failures = record(train)
    test = [
        make_task(family, TEST_SEEDS + i)
        for family, count in _spread(max(1, round(TEST * scale)), list(TRAIN)).items()
        for i in range(count)
    ]
    ood = [
        make_task(family, OOD_SEEDS + i)
        for family, count in OOD.items()
        for i in range(max(1, round(count * scale)))
    ]
    turns: dict[str, list[int]] = {}
    for t in trajectories:
        turns.setdefault(t.task["family"], []).append(t.num_turns)
    report = {
        "families": {
            f: {
                "tasks": round(c * scale) or 1,
                "solved": len(turns.get(f, [])),
                "turns": [min(turns.get(f, [0])), max(turns.get(f, [0]))],
            }
            for f, c in TRAIN.items()
        },
        "failures": failures,
        "test": dict(Counter(t.family for t in test)),
        "ood": dict(Counter(t.family for t in ood)),
    }
    return {
        "train.jsonl.gz": gzipped("".join(dumps(t) + "\n" for t in trajectories).encode()),
        "tasks-test.jsonl.gz": gzipped(encode_tasks(test)),
        "tasks-ood.jsonl.gz": gzipped(encode_tasks(ood)),
        "report.json": (json.dumps(report, indent=1, sort_keys=True) + "\n").encode(),
    }


# ------------------------------------------------------------------------ MiniWoB++


def cache_dir(per_page: int = MINIWOB_TRAIN_PER_PAGE) -> Path:
    """Where MiniWoB++'s splits are made: ``$PIVOTGYM_CACHE/browser/miniwob-VERSION-CODE``,
    CODE a digest of this env's code, the browser and the split's size, so that splits
    made by other code, another browser or at another size are never read as these."""
    from pivotgym.envs.browser.runtime import CHROMIUM

    root = Path(os.environ.get("PIVOTGYM_CACHE") or Path.home() / ".cache" / "pivotgym")
    code = hashlib.sha256(f"{CHROMIUM}\0{per_page}\0".encode())
    here = Path(__file__).parent
    for path in sorted([*here.rglob("*.py"), *here.glob("*.js")]):
        code.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes())
    version = importlib.metadata.version("miniwob")
    return root / "browser" / f"miniwob-{version}-{code.hexdigest()[:12]}"


def miniwob_pages() -> list[str]:
    from pivotgym.envs.browser.families.miniwob import SOLVERS, MiniWobFamily

    return [f.page for f in families().values()
            if isinstance(f, MiniWobFamily) and f.page in SOLVERS]  # fmt: skip


def miniwob_files(per_page: int = MINIWOB_TRAIN_PER_PAGE) -> dict[str, bytes]:
    train = [make_task(f"miniwob.{page}", seed) for page in miniwob_pages()
             for seed in range(per_page)]  # fmt: skip
    trajectories, failures = record(train)
    for failure in failures:
        print(f"miniwob: {failure['task']}: {failure['why']}", file=sys.stderr)
    from pivotgym.envs.browser.miniwob import task_names

    test = [make_task(f"miniwob.{page}", seed) for page in task_names()
            for seed in MINIWOB_TEST_SEEDS]  # fmt: skip
    return {
        "miniwob-train.jsonl.gz": gzipped("".join(dumps(t) + "\n" for t in trajectories).encode()),
        "miniwob-test.jsonl.gz": gzipped(encode_tasks(test)),
    }


def provide_trajectories(split: str) -> Path:
    """A split's trajectories: the shipped apps' ``train``, or MiniWoB++'s, made on first use."""
    if split == "train":
        return DATA / "train.jsonl.gz"
    return _miniwob_file("miniwob-train.jsonl.gz")


def provide_tasks(split: str) -> Path:
    if split in ("test", "ood"):
        return DATA / f"tasks-{split}.jsonl.gz"
    return _miniwob_file("miniwob-test.jsonl.gz")


def _miniwob_file(name: str) -> Path:
    folder = cache_dir()
    if not (folder / name).exists():
        print(f"making MiniWoB++'s browser splits in {folder} (once)...", file=sys.stderr)
        files = miniwob_files()
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in files.items():
            partial = folder / f"{file}.partial"
            partial.write_bytes(data)
            partial.replace(folder / file)
    return folder / name


# --------------------------------------------------------------------------- report


async def _play(page: str, seed: int, agent: str) -> tuple[float, bool]:
    """The reward ``agent`` earns on the page at ``seed``, and whether the page loaded.
    The expert plays as it records its trajectories (:func:`.expert.demonstrate`), with
    the task's turns; the random agent has a few steps (it only needs a chance)."""
    import pivotgym
    from pivotgym.envs.browser.expert import ExpertError, call, demonstrate
    from pivotgym.envs.browser.families.page_text import parse

    task = make_task(f"miniwob.{page}", seed)
    env = pivotgym.make("browser", tasks=[])
    try:
        if agent == "expert":
            try:
                await demonstrate(env, task, seed)
                reward = 1.0
            except ExpertError:
                reward = 0.0
            return reward, env.world is not None and not env.world.load_errors
        await env.areset(options={"task": task})
        loaded = not env.world.load_errors
        rng = random.Random(f"random-agent-{page}-{seed}")
        reward, done = 0.0, False
        for turn in range(RANDOM_STEPS):
            text = (await env.world.mark(max_chars=env.options.max_page_chars))["text"]
            elements = parse(text)
            if not elements:
                break
            target = rng.choice(elements)
            kind = rng.random()
            if target.role == "textbox" and kind < 0.5:
                action = ("fill", {"bid": target.bid, "value": rng.choice(text.split("'"))[:12]})
            elif kind < 0.9:
                action = ("click", {"bid": target.bid})
            else:
                action = ("press", {"bid": target.bid, "key_comb": "Enter"})
            _, reward, terminated, truncated, _ = await env.astep(call(action[0], turn, action[1]))
            if terminated or truncated:
                done = True
                break
        if not done:
            reward, _ = await env.aevaluate(terminated=False)
        return reward, loaded
    finally:
        await env.aclose()


def _report_job(pages: list[str]) -> dict[str, dict[str, Any]]:
    from pivotgym.envs.browser.families.miniwob import SOLVERS

    async def run() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for page in pages:
            seeds = range(800_000, 800_000 + RANDOM_EPISODES)
            rand = [await _play(page, s, "random") for s in seeds]
            # A page with no scripted expert has no oracle rate, not a rate of 0.
            oracle = [await _play(page, s, "expert") for s in seeds] if page in SOLVERS else []
            out[page] = {
                "random": sum(r for r, _ in rand) / len(rand),
                "expert": sum(r for r, _ in oracle) / len(oracle) if oracle else None,
                "loaded": all(ok for _, ok in rand + oracle),
            }
            expert = "-" if not oracle else f"{out[page]['expert']:.2f}"
            print(f"{page}: expert {expert}, random {out[page]['random']:.2f}", flush=True)
        return out

    return asyncio.run(run())


def miniwob_report(workers: int = WORKERS) -> dict[str, Any]:
    from pivotgym.envs.browser.miniwob import registered, task_names

    pages = task_names()
    found: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_report_job, [pages[i::workers] for i in range(workers)]):
            found.update(part)
    refused = sorted(n for n, nondeterministic in registered().items() if nondeterministic)
    return {
        "pages": dict(sorted(found.items())),
        "refused_nondeterministic": refused,
        "episodes_per_page": RANDOM_EPISODES,
        "random_steps": RANDOM_STEPS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pivotgym.envs.browser.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--check", action="store_true", help="compare a rebuild with --out")
    parser.add_argument("--miniwob", action="store_true", help="make MiniWoB++'s splits")
    parser.add_argument(
        "--report",
        action="store_true",
        help="oracle and random success per MiniWoB++ page (miniwob-report.json)",
    )
    args = parser.parse_args(argv)
    if args.miniwob:
        per_page = max(1, round(MINIWOB_TRAIN_PER_PAGE * args.scale))
        files = miniwob_files(per_page)
        return write_or_check(
            files, args.out if args.out != DATA else cache_dir(per_page), check=args.check
        )
    if args.report:
        report = miniwob_report()
        data = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode()
        return write_or_check({"miniwob-report.json": data}, args.out, check=args.check)
    return write_or_check(apps_data(args.scale), args.out, check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
