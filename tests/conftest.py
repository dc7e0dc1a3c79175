"""Fixtures of the sandbox suites: every backend that runs here, each test with its own
runtime directory, so that what a test checks on the host (states, tmpfs mounts,
containers, cgroups, processes) is its own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_tasks import BACKENDS, make_task

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.sandbox import Backend, backend_class


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Under /tmp, which the sandbox's user may pass (pytest's own folders are private).
    path = Path(tempfile.mkdtemp(prefix="pivotgym-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def own_backend(name: str, runtime_dir: Path) -> Iterator[Backend]:
    """A backend of its own for one test; on the way out it closes what it made and
    reaps what the test's killed drivers left, so no mount outlives the test."""
    made = backend_class(name)(runtime_dir=runtime_dir / name)
    yield made
    made.close_all_sync()
    made.reap()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, runtime_dir: Path) -> Iterator[Backend]:
    yield from own_backend(request.param, runtime_dir)


@pytest.fixture(params=BACKENDS)
def terminal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """``make(**task)`` -> a terminal env, as ``pivotgym.make`` builds it, reset on a
    fresh task (see ``terminal_tasks.make_task``), on each backend."""
    envs: list[TerminalEnv] = []

    def make(**task_options: object) -> TerminalEnv:
        task = pivotgym.load_task(make_task(tmp_path / f"t{len(envs)}", **task_options))
        env = pivotgym.make("terminal", tasks=[task], sandbox=request.param)
        envs.append(env)
        env.reset(seed=0)
        return env

    yield make
    for env in envs:
        env.close()
