"""fork(8) of a bubblewrap sandbox against eight bare ``bwrap`` starts.

The parent holds a small realistic workdir (50 files in a few folders). The fork side
is ``fork(8)`` (snapshot, eight copies, cgroups) and then ``true`` in every fork; the
bare side starts eight ``bwrap`` processes at once with exactly the command line the
backend builds for the parent (cgroup join, the sandbox's user, capabilities, seccomp
filter, launcher and rlimits), running ``true``. A third row starts bwrap the same way
but without the seccomp filter, the capabilities and the launcher: what those cost.
Rounds alternate between the sides; the table shows medians, the JSON keeps every
round.

    python bench/bench_bwrap_fork.py [--rounds 10] [--n 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from report import print_table, ratio_line, timing_rows, write_json

from pivotgym.sandbox.base import DETERMINISTIC_ENV, SandboxSpec
from pivotgym.sandbox.bwrap import (
    BwrapBackend,
    BwrapSandbox,
    _child_pid,
    _reap_namespace_init,
)

TARGET = 2.0


def make_workdir(root: Path, n_files: int = 50) -> Path:
    for i in range(n_files):
        path = root / f"pkg{i % 5}" / f"module_{i}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# module {i}\n" + "def f(x):\n    return x + 1\n" * 40)
    return root


async def fork_side(parent: BwrapSandbox, n: int) -> float:
    started = time.perf_counter()
    forks = await parent.fork(n)
    results = await asyncio.gather(*(f.exec(["true"]) for f in forks))
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results), results
    await asyncio.gather(*(f.close() for f in forks))
    return elapsed


async def _bare_once(parent: BwrapSandbox, hardened: bool, env: dict) -> int:
    info_read, info_write = os.pipe()
    if hardened:
        command, fds = parent._argv(["true"], parent.spec.workdir, info_write)
    else:
        options = [o for o in parent._options(parent.spec.workdir) if not o.startswith("CAP_")]
        options = [o for o in options if o != "--cap-add"]
        prefix = parent.backend._host_prefix(parent)
        command = [*prefix, "bwrap", "--info-fd", str(info_write), *options, "--", "true"]
        fds = []
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            pass_fds=(*fds, info_write),
            start_new_session=True,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,  # the launcher's marker byte
        )
    finally:
        for fd in (*fds, info_write):
            os.close(fd)
    code = await proc.wait()
    # As the backend does: wait for the namespace init bwrap leaves to this subreaper.
    child = _child_pid(info_read)
    os.close(info_read)
    if child is not None:
        await _reap_namespace_init(child)
    return code


async def bare_side(parent: BwrapSandbox, n: int, hardened: bool) -> float:
    env = {**DETERMINISTIC_ENV, **parent.spec.env}
    started = time.perf_counter()
    codes = await asyncio.gather(*(_bare_once(parent, hardened, env) for _ in range(n)))
    elapsed = time.perf_counter() - started
    assert codes == [0] * n, codes
    return elapsed


async def main_async(rounds: int, n: int) -> dict:
    backend = BwrapBackend(runtime_dir=Path(tempfile.mkdtemp(prefix="pivotgym-bench-")))
    with tempfile.TemporaryDirectory() as files:
        spec = SandboxSpec(files=make_workdir(Path(files)))
        parent = await backend.create(spec)
    try:
        await parent.exec(["sh", "-c", "python3 -m compileall -q . >/dev/null; ls -R | wc -l"])
        sides = {
            f"fork({n}) + true": lambda: fork_side(parent, n),
            f"{n}x bare bwrap true (backend command)": lambda: bare_side(parent, n, True),
            f"{n}x bare bwrap true (no filter, caps, launcher)": lambda: bare_side(
                parent, n, False
            ),
        }
        for run in sides.values():  # warm caches once, unmeasured
            await run()
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, run in sides.items():
                seconds[name].append(await run())
    finally:
        await parent.close()
        backend.close_all_sync()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    why = BwrapBackend.available()
    if why is not None:
        raise SystemExit(f"bwrap backend unavailable: {why}")

    seconds = asyncio.run(main_async(args.rounds, args.n))
    fork_name, baseline = list(seconds)[:2]
    headers, rows = timing_rows(seconds, baseline)
    print_table(headers, rows)
    ratio = statistics.median(seconds[fork_name]) / statistics.median(seconds[baseline])
    print(ratio_line("fork/bare", ratio, TARGET))
    write_json("bwrap_fork", {
        "n": args.n,
        "rounds": args.rounds,
        "workdir_files": 50,
        "seconds": seconds,
        "median_s": {k: statistics.median(v) for k, v in seconds.items()},
        "baseline": baseline,
        "ratio_to_baseline": ratio,
        "target_ratio": TARGET,
    })  # fmt: skip


if __name__ == "__main__":
    main()
