"""Sandboxes: one protocol (:mod:`.base`), two backends (``bwrap``, ``docker``)."""

from __future__ import annotations

from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox.base import (
    DETERMINISTIC_ENV,
    PYTHON_STARTUP,
    RANDOM_SEED_VAR,
    Backend,
    ExecResult,
    Limits,
    Sandbox,
    SandboxSpec,
    Snapshot,
)

BACKENDS = ("bwrap", "docker")
_instances: dict[str, Backend] = {}


def backend_class(name: str) -> type[Backend]:
    if name == "bwrap":
        from pivotgym.sandbox.bwrap import BwrapBackend

        return BwrapBackend
    if name == "docker":
        from pivotgym.sandbox.docker import DockerBackend

        return DockerBackend
    raise DataError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")


def get_backend(name: str | None = None) -> Backend:
    """The process-wide backend called ``name``; ``None`` picks bwrap where it runs, else docker.

    Raises :class:`InfraError` when the backend cannot run on this machine, saying why.
    """
    if name is None:
        name = "bwrap" if backend_class("bwrap").available() is None else "docker"
    if name not in _instances:
        cls = backend_class(name)
        reason = cls.available()
        if reason is not None:
            raise InfraError(f"sandbox backend {name!r} is unavailable: {reason}")
        _instances[name] = cls()
    return _instances[name]


__all__ = [
    "BACKENDS",
    "DETERMINISTIC_ENV",
    "PYTHON_STARTUP",
    "RANDOM_SEED_VAR",
    "Backend",
    "ExecResult",
    "Limits",
    "Sandbox",
    "SandboxSpec",
    "Snapshot",
    "backend_class",
    "get_backend",
]
