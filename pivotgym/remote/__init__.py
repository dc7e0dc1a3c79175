"""Environments on other machines: the client of ``pivotgym serve-envs``
(:class:`RemoteEnv`), the verifier that runs where the world is (:class:`ServedVerifier`),
and what client and server say to each other (:mod:`pivotgym.remote.wire`)."""

from pivotgym.remote.env import RemoteEnv, Transport
from pivotgym.remote.verifier import ServedVerifier

__all__ = ["RemoteEnv", "ServedVerifier", "Transport"]
