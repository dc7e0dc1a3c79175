"""The environment server's sessions: one environment each, with a lease, an owner and
a place in the server's slots.

:class:`EnvService` is the server without HTTP (``env_app`` puts it behind routes):

- **slots and quotas.** At most ``max_sessions`` live sessions (each may hold a sandbox,
  a browser context or a repository): a ``make`` or ``fork`` that would pass it is
  answered ``busy`` (429, ``Retry-After``), a load the client waits out. At most
  ``max_sessions_per_token`` of them per token: past it, ``quota`` (403), which waiting
  does not cure.
- **leases.** Every call renews its session's lease; a session no call touched for
  ``lease_s`` (and that runs no call) is closed, its sandbox reaped, and later calls on
  it answered ``expired``. A client that died leaks nothing for longer than a lease.
- **steps are never repeated.** A step carries an id; the same id again (a client
  retrying a step whose answer it lost) gets the first answer back, never a second step.
- **one call at a time per session**, in the order they came; sessions run in parallel.
- **trajectories** sent inline are kept (least recently used first out) under their
  digest, so a client names them by digest afterwards; those of a dataset the server
  bundles are named by dataset, split and id.
- **caches.** One snapshot cache per environment, shared by all its sessions: resets of
  one task hit it whoever asks.
- **shutdown** refuses new work, lets the calls in flight finish (up to a grace time),
  then closes every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pivotgym.core import registry
from pivotgym.core.candidates import Candidate
from pivotgym.core.env import AsyncEnv
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory, parse_trajectory
from pivotgym.errors import DataError
from pivotgym.remote.wire import ProtocolError, RemoteError, digest, jsonable
from pivotgym.server.env_metrics import Metrics
from pivotgym.verifiers.base import State
from pivotgym.verifiers.registry import get_verifier

# Ids of ended sessions remembered, to tell "expired" from "never was".
ENDED_KEPT = 100_000


@dataclass(frozen=True)
class ServiceLimits:
    max_sessions: int = 64
    max_sessions_per_token: int | None = None  # None: as many as the server has
    lease_s: float = 300.0
    retry_after_s: int = 1
    trajectories_kept: int = 4096
    shutdown_grace_s: float = 30.0


@dataclass(eq=False)
class Session:
    id: str
    owner: str
    env_name: str
    env: AsyncEnv
    expires: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: int = 0  # calls in progress: a lease does not run out under one
    sent: int = 0  # messages of the observation the client holds
    last_step: tuple[str, dict[str, Any]] | None = None
    at: tuple[str, int] | None = None  # (trajectory digest, turn) it was last reset to


class EnvService:
    """Sessions of pivotgym environments (module docstring)."""

    def __init__(
        self, limits: ServiceLimits = ServiceLimits(), *, sandbox: str | None = None
    ) -> None:
        self.limits = limits
        self.sandbox = sandbox
        self.sessions: dict[str, Session] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()
        self.caches: dict[str, SnapshotCache] = {}
        self.trajectories: OrderedDict[str, Trajectory] = OrderedDict()
        self.datasets: dict[tuple[str, str], dict[str, Trajectory]] = {}
        self.verifiers: dict[str, Any] = {}
        self.metrics = Metrics()
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._reaper: asyncio.Task[None] | None = None
        self.metrics.gauge("sessions", "Live sessions, by env.", self._live)
        self.metrics.gauge("slots_free", "Sessions the server may still open.", self._free)
        self.metrics.gauge("cache_hits", "Snapshot cache hits, by env.", self._cache("hits"))
        self.metrics.gauge("cache_misses", "Snapshot cache misses, by env.", self._cache("misses"))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._expire_forever())

    async def shutdown(self) -> None:
        """Refuse new calls, let those in flight finish (up to the grace time), close
        every session."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.limits.shutdown_grace_s)
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            await self._end(session, "closed")
        for cache in self.caches.values():
            await cache.release()

    async def _expire_forever(self) -> None:
        period = max(0.05, min(self.limits.lease_s / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            await self.expire()

    async def expire(self) -> int:
        """Close the sessions whose lease ran out; how many."""
        now = time.monotonic()
        stale = [s for s in self.sessions.values() if s.expires < now and not s.running]
        for session in stale:
            await self._end(session, "expired")
            self.metrics.count("sessions_expired_total", env=session.env_name)
        return len(stale)

    async def _end(self, session: Session, how: str) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        self.ended[session.id] = how
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        with contextlib.suppress(Exception):  # a world that failed still frees its slot
            await session.env.aclose()

    # ------------------------------------------------------------------- sessions

    def _live(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for session in self.sessions.values():
            key = f'env="{session.env_name}"'
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _free(self) -> dict[str, float]:
        return {"": self.limits.max_sessions - len(self.sessions)}

    def _cache(self, what: str) -> Any:
        return lambda: {f'env="{n}"': getattr(c, what) for n, c in self.caches.items()}

    def _admit(self, owner: str, n: int) -> None:
        if self.draining:
            raise RemoteError("shutting_down", "the server is shutting down")
        # A full server first: the client waits that out (another of its episodes may
        # end); a quota below the server's slots it does not.
        if len(self.sessions) + n > self.limits.max_sessions:
            self.metrics.count("rejected_total", reason="busy")
            raise RemoteError("busy", f"all {self.limits.max_sessions} sandbox slots are taken")
        held = sum(s.owner == owner for s in self.sessions.values())
        quota = self.limits.max_sessions_per_token or self.limits.max_sessions
        if held + n > quota:
            self.metrics.count("rejected_total", reason="quota")
            raise RemoteError("quota", f"this token holds {held} of its {quota} sessions; "
                              f"close some before opening {n} more")  # fmt: skip

    def _add(self, owner: str, env_name: str, env: AsyncEnv, sent: int = 0) -> Session:
        session = Session(uuid.uuid4().hex, owner, env_name, env,
                          time.monotonic() + self.limits.lease_s, sent=sent)  # fmt: skip
        self.sessions[session.id] = session
        self.metrics.count("sessions_created_total", env=env_name)
        return session

    def get(self, owner: str, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:  # another token's: not yours to see
            if session is None and self.ended.get(session_id) == "expired":
                raise RemoteError("expired", f"session {session_id} expired: no call "
                                  f"touched it for {self.limits.lease_s:g} s")  # fmt: skip
            if session is None and self.ended.get(session_id) == "closed":
                raise RemoteError("not_found", f"session {session_id} was closed")
            raise RemoteError("not_found", f"no session {session_id}")
        return session

    @contextlib.asynccontextmanager
    async def use(self, session: Session, call: str) -> AsyncIterator[None]:
        """Run one call on ``session``: after the calls before it, under a live lease,
        counted in flight (shutdown waits for it) and timed."""
        if self.draining:
            raise RemoteError("shutting_down", "the server is shutting down")
        self.in_flight += 1
        self._idle.clear()
        session.running += 1
        start = time.perf_counter()
        try:
            async with session.lock:
                if session.id not in self.sessions:  # expired or closed while it waited
                    raise RemoteError(
                        "expired", f"session {session.id} ended while the call waited"
                    )
                yield
        except Exception:
            self.metrics.count("failures_total", call=call, env=session.env_name)
            raise
        finally:
            session.running -= 1
            session.expires = time.monotonic() + self.limits.lease_s
            self.metrics.observe(call, session.env_name, time.perf_counter() - start)
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    # --------------------------------------------------------------------- calls

    async def make(self, owner: str, body: dict[str, Any]) -> Session:
        name = _field(body, "env", str)
        options = _field(body, "options", dict, {})
        split = _field(body, "split", str | None, None)
        self._admit(owner, 1)
        spec = registry.get_spec(name)
        known = getattr(spec.factory(), "Options", None)
        takes_sandbox = known is not None and "sandbox" in {
            f.name for f in dataclasses.fields(known)
        }
        if takes_sandbox and self.sandbox is not None:
            options = {**options, "sandbox": options.get("sandbox") or self.sandbox}
        if name not in self.caches:
            self.caches[name] = SnapshotCache().acquire()  # held for the server's life
        tasks = registry.load_tasks(name, split) if split else []
        env = registry.make(name, tasks=tasks, cache=self.caches[name], **options)
        return self._add(owner, name, env)

    async def reset(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        seed = _field(body, "seed", int | None, None)
        options: dict[str, Any] = {}
        at = None
        if body.get("trajectory") is not None:
            trajectory, key = self.trajectory(body["trajectory"])
            turn = _field(body, "turn", int)
            options = {"trajectory": trajectory, "turn": turn}
            at = (key, turn)
        if body.get("task") is not None:
            options["task"] = self._task(session, body["task"])
        if body.get("divergence") is not None:
            options["divergence"] = _field(body, "divergence", str)
        observation, info = await session.env.areset(seed=seed, options=options or None)
        session.sent, session.last_step, session.at = len(observation), None, at
        self.metrics.count("resets_total", env=session.env_name)
        return {"observation": jsonable(observation), "info": jsonable(info),
                "tools": jsonable(session.env.tools)}  # fmt: skip

    async def step(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        step_id = _field(body, "step_id", str)
        if session.last_step is not None and session.last_step[0] == step_id:
            self.metrics.count("steps_repeated_total", env=session.env_name)
            return session.last_step[1]
        action = _field(body, "action", dict)
        observation, reward, terminated, truncated, info = await session.env.astep(action)
        answer = {
            "from": min(session.sent, len(observation)),
            "tail": jsonable(observation[min(session.sent, len(observation)) :]),
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": jsonable(info),
        }
        session.sent, session.last_step, session.at = len(observation), (step_id, answer), None
        self.metrics.count("steps_total", env=session.env_name)
        return answer

    async def fork(self, session: Session, body: dict[str, Any]) -> list[Session]:
        n = _field(body, "n", int)
        if n < 1:
            raise DataError("must be at least 1", field="n")
        self._admit(session.owner, n)
        envs = await session.env.afork(n)
        children = [self._add(session.owner, session.env_name, e, session.sent) for e in envs]
        for child in children:
            child.at = session.at
        self.metrics.count("forks_total", env=session.env_name)
        return children

    async def evaluate(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        terminated = _field(body, "terminated", bool, True)
        reward, info = await session.env.aevaluate(terminated=terminated)
        return {"reward": float(reward), "info": jsonable(info)}

    async def verify(self, session: Session, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Judge ``actions`` at the candidate state (the trajectory's turn) with a
        verifier of this server: the env-specific verifiers read the world, which lives
        here."""
        name = _field(body, "verifier", str)
        verifier_options = _field(body, "options", dict, {})
        trajectory, key = self.trajectory(_field(body, "trajectory", dict))
        turn = _field(body, "turn", int)
        actions = _field(body, "actions", list)
        reference = _field(body, "reference", dict)
        if session.at != (key, turn):
            await session.env.areset(options={"trajectory": trajectory, "turn": turn})
            session.at, session.sent, session.last_step = (key, turn), 0, None
        cache_key = json.dumps([name, verifier_options], sort_keys=True)
        if cache_key not in self.verifiers:  # verifiers keep what they learnt (outcomes)
            self.verifiers[cache_key] = get_verifier(name, **verifier_options)
        env = session.env
        state = State(Candidate.of(trajectory, turn), list(env.tools), env=env,
                      task=getattr(env, "task", None))  # fmt: skip
        verdicts = await self.verifiers[cache_key].verify_many(state, actions, reference)
        return [jsonable(dataclasses.asdict(v)) for v in verdicts]

    async def close(self, session: Session) -> None:
        await self._end(session, "closed")

    # ------------------------------------------------------------ what is sent by name

    def trajectory(self, ref: Any) -> tuple[Trajectory, str]:
        """The trajectory a request names, and the key it goes by here."""
        if not isinstance(ref, dict):
            raise DataError("must be an object: inline, digest, or dataset with split and id",
                            field="trajectory")  # fmt: skip
        if "inline" in ref:
            row = ref["inline"]
            key = digest(row) if isinstance(row, dict) else ""
            if key not in self.trajectories:
                self.trajectories[key] = parse_trajectory(row)
            found = self.trajectories[key]
        elif "digest" in ref:
            key = str(ref["digest"])
            if key not in self.trajectories:
                raise ProtocolError("unknown_trajectory", f"no trajectory with digest {key} here")
            found = self.trajectories[key]
        elif "dataset" in ref:
            env, split, ident = (str(ref.get(k)) for k in ("dataset", "split", "id"))
            if (env, split) not in self.datasets:
                loaded = registry.load_trajectories(env, split)
                self.datasets[(env, split)] = {t.id: t for t in loaded}
            if ident not in self.datasets[(env, split)]:
                raise DataError(f"no trajectory {ident!r} in {env}'s {split} split",
                                field="trajectory.id")  # fmt: skip
            return self.datasets[(env, split)][ident], f"{env}/{split}/{ident}"
        else:
            raise DataError("names no trajectory (inline, digest, or dataset)",
                            field="trajectory")  # fmt: skip
        self.trajectories.move_to_end(key)
        while len(self.trajectories) > self.limits.trajectories_kept:
            self.trajectories.popitem(last=False)
        return found, key

    @staticmethod
    def _task(session: Session, ref: Any) -> Any:
        if isinstance(ref, dict) and set(ref) == {"name"} and isinstance(ref["name"], str):
            return ref["name"]
        if isinstance(ref, dict) and set(ref) == {"json"} and isinstance(ref["json"], dict):
            # A task travels as a trajectory's ``task`` field does (its ``to_json``), and
            # is read back by the env's own reader of that field.
            carrier = Trajectory(id="task", env=session.env_name, task=ref["json"], messages=[])
            return session.env.resolve_task(carrier)  # type: ignore[attr-defined]
        raise DataError('must be {"name": ...} or {"json": ...}', field="task")


def _field(body: dict[str, Any], key: str, kind: Any, *default: Any) -> Any:
    if key not in body:
        if default:
            return default[0]
        raise DataError("missing", field=key)
    value = body[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise DataError(f"wrong type ({type(value).__name__})", field=key)
    return value
