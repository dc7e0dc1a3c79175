"""What only the Docker backend does: images, a dead container, the container's settings.

The contract both backends keep is ``test_sandbox_contract.py``; attacks are
``test_sandbox_security.py``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from conftest import own_backend
from sandbox_checks import run

from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox.base import SandboxSpec
from pivotgym.sandbox.docker import DockerBackend

_UNAVAILABLE = DockerBackend.available()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"docker backend: {_UNAVAILABLE}"),
]


@pytest.fixture
def backend(runtime_dir: Path) -> DockerBackend:
    yield from own_backend("docker", runtime_dir)


def _api():
    import docker

    return docker.from_env().api


def test_a_dead_container_is_an_infra_error(backend):
    async def go():
        sb = await backend.create(SandboxSpec())
        try:
            _api().kill(sb.id)
            with pytest.raises(InfraError):
                await sb.exec(["true"])
        finally:
            await sb.close()

    run(go())


def test_the_container_is_read_only_confined_and_logs_nothing(backend):
    async def go():
        async with await backend.create(SandboxSpec()) as sb:
            return _api().inspect_container(sb.id)

    host = run(go())["HostConfig"]
    assert host["ReadonlyRootfs"] and host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and "SYS_ADMIN" not in host["CapAdd"]
    assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
    assert host["LogConfig"]["Type"] == "none" and host["AutoRemove"]
    assert "/dev" in host["ReadonlyPaths"] and host["NanoCpus"] == 1_000_000_000


def test_task_dockerfile_is_built_once_without_pulling_and_seeds_the_workdir(backend, tmp_path):
    env = tmp_path / "environment"
    env.mkdir()
    (env / "data.txt").write_text(f"payload {uuid.uuid4().hex}\n")
    (env / "Dockerfile").write_text(
        "FROM pivotgym/base:bookworm\nCOPY data.txt /opt/data.txt\nRUN echo built > /opt/built\n"
        "RUN mkdir -p /app/from-image && echo baked > /app/from-image/f\n"
    )
    spec = SandboxSpec(dockerfile=env / "Dockerfile", files=env)

    def task_images() -> set[str]:
        return {i["Id"] for i in _api().images(name="pivotgym/task")}

    before = task_images()

    async def go():
        async with await backend.create(spec) as sb:
            res = await sb.exec(["cat", "/opt/built", "/opt/data.txt", "/app/data.txt"])
            assert res.output.splitlines()[0] == "built"
            assert res.output.splitlines()[1] == res.output.splitlines()[2]
            # The image's own workdir content is there under the state's tmpfs, as the
            # task's files are; the Dockerfile itself is not copied.
            res = await sb.exec(["sh", "-c", "cat /app/from-image/f; ls /app"])
            assert res.output.split() == ["baked", "data.txt", "from-image"]
        built = task_images() - before
        assert len(built) == 1
        started = time.monotonic()
        async with await backend.create(spec) as sb:
            assert (await sb.exec(["cat", "/opt/built"])).output == "built\n"
        assert time.monotonic() - started < 3  # a cache hit, not a rebuild
        assert task_images() - before == built

        (env / "Dockerfile").write_text("FROM pivotgym/never-built:latest\n")
        with pytest.raises(DataError, match="never pulls"):
            await backend.create(spec)

    try:
        run(go())
    finally:
        for image_id in task_images() - before:
            _api().remove_image(image_id, force=True)
