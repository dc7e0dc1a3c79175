"""The environment server's sessions: one environment each, with a lease, an owner and
a place in the server's slots.

:class:`EnvService` is the server without HTTP (``env_app`` puts it behind routes):

- **slots and quotas.** At most ``max_sessions`` sandboxes at once: live sessions, plus
  those a ``make``, ``fork`` or ``verify`` in progress holds for itself. One that would
  pass it is answered ``busy`` (429, ``Retry-After``), a load the client waits out. At
  most ``max_sessions_per_token`` of them per token: past it, ``quota`` (403), which
  waiting does not cure; nor does asking for more at once than there are slots.
- **leases.** Every call renews its session's lease; a session no call touched for
  ``lease_s`` (and that runs no call) is closed, its sandbox reaped, and later calls on
  it answered ``expired``. A client that died leaks nothing for longer than a lease.
- **nothing is done twice.** A step carries an id, and so may a ``make`` or a
  ``fork``: the same id again (a client retrying a call whose answer it lost) gets the
  first answer back, or the first error, never a second run.
- **one call at a time per session**, in the order they came; sessions run in parallel.
- **tokens share nothing**: each token has its own snapshot caches, trajectories and
  verifiers (a verifier remembers the expert's turns it ran), so one cannot see or
  poison another's.
- **the operator's machine stays the operator's.** A served env runs only tasks that
  carry everything they need: a task named by a path on the server, a repository named
  by its folder there (``repo_path``), or a task that asks for the network is refused.
  The sandboxes' backend and limits are the operator's (``serve-envs`` options), not
  options a client sets. The verifier a client may run is its env's own, with its own
  options, on at most :data:`MAX_VERIFY_ACTIONS` actions, and the forks verifications
  make are at most as many at once as there are slots (a verification waits for room).
- **trajectories** sent inline are kept (least recently used first out, within a byte
  budget) under their digest, so a client names them by digest afterwards; those of a
  dataset the server bundles are named by dataset, split and id.
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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from pivotgym.core import registry
from pivotgym.core.candidates import Candidate
from pivotgym.core.env import AsyncEnv
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory, iter_trajectories, parse_trajectory
from pivotgym.errors import DataError
from pivotgym.remote.wire import ProtocolError, RemoteError, digest, jsonable
from pivotgym.server.env_metrics import Metrics
from pivotgym.verifiers.base import State
from pivotgym.verifiers.registry import get_verifier

# Ids of ended sessions remembered, to tell "expired" from "never was"; answers of
# makes remembered by their request ids.
ENDED_KEPT = 100_000
ANSWERS_KEPT = 4096
# Env options that are the operator's: which sandbox backend, and how big a sandbox.
OPERATOR_OPTIONS = frozenset({"sandbox", "timeout_s", "memory_mb", "max_processes",
                              "max_output_bytes", "disk_mb", "max_files", "cpus"})  # fmt: skip
# Actions one verify call may judge: each runs in a fork of its own.
MAX_VERIFY_ACTIONS = 32


@dataclass(frozen=True)
class ServiceLimits:
    max_sessions: int = 64
    max_sessions_per_token: int | None = None  # None: as many as the server has
    lease_s: float = 300.0
    retry_after_s: int = 1
    trajectory_bytes: int = 512 << 20  # inline trajectories kept, per server
    shutdown_grace_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_sessions", "lease_s", "retry_after_s", "trajectory_bytes"):
            if getattr(self, name) <= 0:
                raise DataError("must be positive", field=name)
        if self.max_sessions_per_token is not None and self.max_sessions_per_token <= 0:
            raise DataError("must be positive", field="max_sessions_per_token")

    @property
    def quota(self) -> int:
        return self.max_sessions_per_token or self.max_sessions


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
    # The last step's (or fork's) id and what it answered: a dict, or the error raised.
    last_step: tuple[str, Any] | None = None
    last_fork: tuple[str, Any] | None = None
    at: tuple[str, int] | None = None  # (trajectory key, turn) it was last reset to


class EnvService:
    """Sessions of pivotgym environments (module docstring)."""

    def __init__(
        self, limits: ServiceLimits = ServiceLimits(), *, sandbox: str | None = None
    ) -> None:
        self.limits = limits
        self.sandbox = sandbox
        self.sessions: dict[str, Session] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()
        self.made: OrderedDict[tuple[str, str], str] = OrderedDict()  # request -> session
        self.reserved: dict[str, int] = {}  # slots held by calls in progress, by owner
        self.caches: dict[tuple[str, str], SnapshotCache] = {}
        self.trajectories: OrderedDict[tuple[str, str], tuple[Trajectory, int]] = OrderedDict()
        self.trajectory_bytes = 0
        self.datasets: dict[tuple[str, str], dict[str, Trajectory]] = {}
        self.splits: dict[tuple[str, str], Any] = {}
        self.verifiers: dict[tuple[str, str], Any] = {}
        self.checked: OrderedDict[tuple[str, str], None] = OrderedDict()  # tasks let in
        self.metrics = Metrics()
        self.draining = False
        self.in_flight = 0
        self.verifier_forks = 0  # sandboxes the verifications in progress hold
        self._forks_free = asyncio.Condition()
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
        expired = 0
        for session in list(self.sessions.values()):
            # Checked again for each: a call may have come for it while others closed.
            if session.expires < time.monotonic() and not session.running:
                await self._end(session, "expired")
                self.metrics.count("sessions_expired_total", env=session.env_name)
                expired += 1
        return expired

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
        return {"": self.limits.max_sessions - len(self.sessions) - sum(self.reserved.values())}

    def _cache(self, what: str) -> Any:
        def read() -> dict[str, float]:
            totals: dict[str, float] = {}
            for (_, env), cache in self.caches.items():
                totals[f'env="{env}"'] = totals.get(f'env="{env}"', 0) + getattr(cache, what)
            return totals

        return read

    @contextlib.contextmanager
    def slots(self, owner: str, n: int) -> Iterator[None]:
        """Hold ``n`` slots for a call in progress (a make, a fork, a verify's forks),
        or refuse it: ``busy`` where the server is full, ``quota`` where the token is."""
        if self.draining:
            raise RemoteError("shutting_down", "the server is shutting down")
        quota = self.limits.quota
        if n > min(quota, self.limits.max_sessions):
            raise RemoteError("quota", f"{n} sandboxes at once is more than this token may "
                              f"ever hold ({min(quota, self.limits.max_sessions)})")  # fmt: skip
        taken = len(self.sessions) + sum(self.reserved.values())
        # A full server first: the client waits that out (another of its episodes may
        # end); a quota below the server's slots it does not.
        if taken + n > self.limits.max_sessions:
            self.metrics.count("rejected_total", reason="busy")
            raise RemoteError("busy", f"all {self.limits.max_sessions} sandbox slots are taken")
        held = sum(s.owner == owner for s in self.sessions.values()) + self.reserved.get(owner, 0)
        if held + n > quota:
            self.metrics.count("rejected_total", reason="quota")
            raise RemoteError("quota", f"this token holds {held} of its {quota} sessions; "
                              f"close some before opening {n} more")  # fmt: skip
        self.reserved[owner] = self.reserved.get(owner, 0) + n
        try:
            yield
        finally:
            self.reserved[owner] -= n
            if not self.reserved[owner]:
                del self.reserved[owner]

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
        request = _field(body, "request_id", str | None, None)
        if request is not None and (owner, request) in self.made:
            done = self.made[(owner, request)]
            if done in self.sessions:  # a retried make: the session it made
                return self.sessions[done]
        spec = registry.get_spec(name)
        theirs = sorted(set(options) & OPERATOR_OPTIONS)
        if theirs:
            raise DataError("the server's operator sets the sandboxes (serve-envs options), "
                            "not a client", field=theirs[0])  # fmt: skip
        env_class = spec.factory()
        known = getattr(env_class, "Options", None)
        if known is None:
            if options:
                raise DataError(f"environment {name!r} takes no options", field="options")
        else:
            known.from_options(options)  # a bad name or type is the client's DataError
            if self.sandbox is not None and "sandbox" in {
                f.name for f in dataclasses.fields(known)
            }:
                options = {**options, "sandbox": self.sandbox}
        tasks: Any = []
        if split:
            if (name, split) not in self.splits:
                self.splits[(name, split)] = registry.load_tasks(name, split)
            tasks = self.splits[(name, split)]
        with self.slots(owner, 1):
            cache = self.caches.get((owner, name))
            if cache is None:  # held for the server's life
                cache = self.caches[(owner, name)] = SnapshotCache().acquire()
            env = registry.make(name, tasks=tasks, cache=cache, **options)
            session = self._add(owner, name, env)
        if request is not None:
            self.made[(owner, request)] = session.id
            while len(self.made) > ANSWERS_KEPT:
                self.made.popitem(last=False)
        return session

    async def reset(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        seed = _field(body, "seed", int | None, None)
        if seed is not None and seed < 0:
            raise DataError("must be a non-negative integer", field="seed")
        options: dict[str, Any] = {}
        at = None
        if body.get("trajectory") is not None:
            trajectory, key = self.trajectory(session.owner, body["trajectory"])
            self._let_in(session, trajectory, key)
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
            return _again(session.last_step[1])
        action = _field(body, "action", dict)
        try:
            observation, reward, terminated, truncated, info = await session.env.astep(action)
        except Exception as exc:  # a retry of this step gets this error, not a second run
            session.last_step = (step_id, exc)
            raise
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

    async def fork(self, session: Session, body: dict[str, Any]) -> list[str]:
        n = _field(body, "n", int)
        request = _field(body, "request_id", str | None, None)
        if n < 1:
            raise DataError("must be at least 1", field="n")
        if request is not None and session.last_fork and session.last_fork[0] == request:
            return _again(session.last_fork[1])  # a retried fork: the branches it made
        with self.slots(session.owner, n):
            envs = await session.env.afork(n)
            children = [self._add(session.owner, session.env_name, e, session.sent)
                        for e in envs]  # fmt: skip
        for child in children:
            child.at = session.at
        self.metrics.count("forks_total", env=session.env_name)
        ids = [child.id for child in children]
        if request is not None:
            session.last_fork = (request, ids)
        return ids

    async def evaluate(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        terminated = _field(body, "terminated", bool, True)
        reward, info = await session.env.aevaluate(terminated=terminated)
        return {"reward": float(reward), "info": jsonable(info)}

    async def verify(self, session: Session, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Judge ``actions`` at the candidate state (the trajectory's turn) with the
        env's own verifier: it reads the world, which lives here."""
        spec = registry.get_spec(session.env_name)
        name = _field(body, "verifier", str)
        options = _field(body, "options", dict, {})
        if name != spec.verifier or options not in ({}, spec.verifier_options):
            raise DataError(f"this server runs {session.env_name}'s own verifier "
                            f"({spec.verifier!r}, with its own options) only",
                            field="verifier")  # fmt: skip
        trajectory, key = self.trajectory(session.owner, _field(body, "trajectory", dict))
        self._let_in(session, trajectory, key)
        turn = _field(body, "turn", int)
        actions = _field(body, "actions", list)
        if not 1 <= len(actions) <= MAX_VERIFY_ACTIONS:
            raise DataError(f"from 1 to {MAX_VERIFY_ACTIONS} actions a call", field="actions")
        if not all(isinstance(a, dict) for a in actions):
            raise DataError("each action is one assistant message (an object)", field="actions")
        reference = _field(body, "reference", dict)
        if session.at != (key, turn):
            await session.env.areset(options={"trajectory": trajectory, "turn": turn})
            session.at, session.sent, session.last_step = (key, turn), 0, None
        verifier = self.verifiers.get((session.owner, session.env_name))
        if verifier is None:  # one per token and env: it remembers the expert's turns
            verifier = get_verifier(spec.verifier, **spec.verifier_options)
            self.verifiers[(session.owner, session.env_name)] = verifier
        env = session.env
        state = State(Candidate.of(trajectory, turn), list(env.tools), env=env,
                      task=getattr(env, "task", None))  # fmt: skip
        async with self._verifier_forks(len(actions) + 1):
            verdicts = await verifier.verify_many(state, actions, reference)
        return [jsonable(dataclasses.asdict(v)) for v in verdicts]

    @contextlib.asynccontextmanager
    async def _verifier_forks(self, n: int) -> AsyncIterator[None]:
        """Wait until the forks a verifier makes (at most one a sample and one for the
        expert) fit beside those of the other verifications: as many as the server has
        slots. They queue rather than being refused: they end by themselves, while a
        client's sessions, which wait on them, would never free a slot for them."""
        n = min(n, self.limits.max_sessions)
        async with self._forks_free:
            await self._forks_free.wait_for(
                lambda: self.verifier_forks + n <= self.limits.max_sessions
            )
            self.verifier_forks += n
        try:
            yield
        finally:
            async with self._forks_free:
                self.verifier_forks -= n
                self._forks_free.notify_all()

    async def close(self, session: Session) -> None:
        await self._end(session, "closed")

    # ------------------------------------------------------------ what is sent by name

    def trajectory(self, owner: str, ref: Any) -> tuple[Trajectory, str]:
        """The trajectory a request names, and the key it goes by here."""
        if not isinstance(ref, dict):
            raise DataError("must be an object: inline, digest, or dataset with split and id",
                            field="trajectory")  # fmt: skip
        if "inline" in ref:
            row = ref["inline"]
            if not isinstance(row, dict):
                raise DataError("must be a trajectory (an object)", field="trajectory.inline")
            key = digest(row)
            if (owner, key) not in self.trajectories:
                size = len(json.dumps(row, default=str))
                self.trajectories[(owner, key)] = (parse_trajectory(row), size)
                self.trajectory_bytes += size
            found = self.trajectories[(owner, key)][0]
        elif "digest" in ref:
            key = str(ref["digest"])
            if (owner, key) not in self.trajectories:
                raise ProtocolError("unknown_trajectory", f"no trajectory with digest {key} here")
            found = self.trajectories[(owner, key)][0]
        elif "dataset" in ref:
            env, split, ident = (str(ref.get(k)) for k in ("dataset", "split", "id"))
            spec = registry.get_spec(env)  # the server's own data only: never a path
            if split not in spec.trajectories:
                raise DataError(f"{env} bundles no trajectories for split {split!r}",
                                field="trajectory.split")  # fmt: skip
            if (env, split) not in self.datasets:
                loaded = iter_trajectories(spec.trajectories[split])
                self.datasets[(env, split)] = {t.id: t for t in loaded}
            if ident not in self.datasets[(env, split)]:
                raise DataError(f"no trajectory {ident!r} in {env}'s {split} split",
                                field="trajectory.id")  # fmt: skip
            return self.datasets[(env, split)][ident], f"{env}/{split}/{ident}"
        else:
            raise DataError("names no trajectory (inline, digest, or dataset)",
                            field="trajectory")  # fmt: skip
        self.trajectories.move_to_end((owner, key))
        while self.trajectory_bytes > self.limits.trajectory_bytes and len(self.trajectories) > 1:
            _, (_, size) = self.trajectories.popitem(last=False)
            self.trajectory_bytes -= size
        return found, key

    def _task(self, session: Session, ref: Any) -> Any:
        if isinstance(ref, dict) and set(ref) == {"name"} and isinstance(ref["name"], str):
            return ref["name"]
        if isinstance(ref, dict) and set(ref) == {"json"} and isinstance(ref["json"], dict):
            # A task travels as a trajectory's ``task`` field does (its ``to_json``), and
            # is read back by the env's own reader of that field.
            carrier = Trajectory(id="task", env=session.env_name, task=ref["json"], messages=[])
            return self._check_task(session, ref["json"], "task.json", carrier)
        raise DataError('must be {"name": ...} or {"json": ...}', field="task")

    def _let_in(self, session: Session, trajectory: Trajectory, key: str) -> None:
        """Check a trajectory's task once per token, env and trajectory."""
        seen = (session.owner, f"{session.env_name}/{key}")
        if seen not in self.checked:
            self._check_task(session, trajectory.task, "trajectory.task", trajectory)
            self.checked[seen] = None
            while len(self.checked) > ENDED_KEPT:
                self.checked.popitem(last=False)

    @staticmethod
    def _check_task(session: Session, data: Any, where: str, carrier: Trajectory) -> Any:
        """The task ``carrier`` holds, refused where it would reach beyond a sandbox
        (module docstring)."""
        if not isinstance(data, dict):
            raise DataError("a served env takes tasks inline, never a path on the server",
                            field=where)  # fmt: skip
        if data.get("repo_path"):
            raise DataError("a served env runs the repositories it bundles, never a folder "
                            "of the server", field=f"{where}.repo_path")  # fmt: skip
        task = session.env.resolve_task(carrier)  # type: ignore[attr-defined]
        config = getattr(task, "config", None)
        if getattr(config, "allow_internet", False):
            raise DataError("a served env gives sandboxes no network", field=f"{where}.config")
        return task


def _again(answer: Any) -> Any:
    """A remembered answer given again: the error it was, raised again."""
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _field(body: dict[str, Any], key: str, kind: Any, *default: Any) -> Any:
    if key not in body:
        if default:
            return default[0]
        raise DataError("missing", field=key)
    value = body[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise DataError(f"wrong type ({type(value).__name__})", field=key)
    return value
