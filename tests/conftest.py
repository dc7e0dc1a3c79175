"""Fixtures of the sandbox suites: every backend that runs here, each test with its own
runtime directory, so that what a test checks on the host (states, tmpfs mounts,
containers, cgroups, processes) is its own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_tasks import BACKENDS

from pivotgym.sandbox import Backend, backend_class


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Under /tmp, which the sandbox's user may pass (pytest's own folders are private).
    path = Path(tempfile.mkdtemp(prefix="pivotgym-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, runtime_dir: Path) -> Iterator[Backend]:
    made = backend_class(request.param)(runtime_dir=runtime_dir / request.param)
    yield made
    made.close_all_sync()
