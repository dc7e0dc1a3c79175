"""An environment served by ``pivotgym serve-envs``, as an :class:`AsyncEnv` like any other.

``RemoteEnv(urls, "terminal", **options)`` holds one session on one of the servers. It
resets, steps, forks, evaluates and closes as a local env does, with the same return
values, the same errors (a :class:`DataError` keeps its file, line and field; a
:class:`DivergenceError` its turn) and the same ledger entries, so whatever drives a
local env drives it.

- **Routing.** Resets of one task go to the same server (rendezvous hashing of the
  task over the URLs), so that server's snapshot cache keeps hitting; forks stay on
  their parent's server.
- **Retries.** A call that did not reach the server, or found it full (429, after its
  ``Retry-After``), is sent again with backoff, up to ``retries`` times. A step carries
  an id, and the server answers a step it has seen with its first answer, so a retried
  step is never taken twice.
- **A server that is gone** fails the episode as infrastructure: the step returns
  ``truncated`` with ``info["infra_error"]``, never a reward of 0 that would count.
- **Trajectories** are sent inline once per server and by digest after.
- **Leases.** A reset on a session whose lease ran out (an env that sat idle in a pool)
  opens a new session; a fork or evaluate on one raises, and a step on one ends the
  episode as infrastructure's failure, as its state is gone.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import httpx

from pivotgym.core.env import AsyncEnv, Conversation, Message, Observation, ToolCall
from pivotgym.core.ledger import Ledger
from pivotgym.core.trajectory import Trajectory, parse_trajectory
from pivotgym.errors import DataError, InfraError
from pivotgym.remote.wire import RemoteError, digest, raise_error

log = logging.getLogger(__name__)

TOKEN_VAR = "PIVOTGYM_ENV_TOKEN"
# A reset of a repository sandbox replays a long prefix: minutes, not seconds.
TIMEOUT_S = 900.0
RETRIES = 6
_UNREACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
              httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)  # fmt: skip


class Transport:
    """HTTP to the env servers: an httpx client per event loop (one is bound to the loop
    it was made on), retries, and what each server already holds."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: str | None = None,
        *,
        timeout_s: float = TIMEOUT_S,
        retries: int = RETRIES,
    ) -> None:
        urls = urls.split(",") if isinstance(urls, str) else list(urls)
        self.urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        if not self.urls:
            raise DataError("no env server URL given", field="env_url")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise DataError(f"{url!r} is not an http(s) URL", field="env_url")
        self.token = token if token is not None else os.environ.get(TOKEN_VAR)
        self.timeout_s = timeout_s
        self.retries = retries
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self.held: dict[str, OrderedDict[str, None]] = {u: OrderedDict() for u in self.urls}
        # Trajectories as sent (their JSON and digest), by object: a run resets to the
        # turns of the same trajectories over and over.
        self._encoded: OrderedDict[int, tuple[Trajectory, dict[str, Any], str]] = OrderedDict()

    def encode(self, trajectory: Trajectory) -> tuple[dict[str, Any], str]:
        """The trajectory's JSON and digest, made once per trajectory object."""
        found = self._encoded.get(id(trajectory))
        if found is None or found[0] is not trajectory:
            row = trajectory.to_json()
            found = (trajectory, row, digest(row))
            self._encoded[id(trajectory)] = found
            while len(self._encoded) > 4096:
                self._encoded.popitem(last=False)
        self._encoded.move_to_end(id(trajectory))
        return found[1], found[2]

    def route(self, key: str) -> str:
        """The server for ``key``: the same one for as long as the URLs are the same,
        and few keys move when one is added."""
        return max(self.urls, key=lambda u: hashlib.sha256(f"{u}\0{key}".encode()).digest())

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
            client = httpx.AsyncClient(headers=headers, timeout=self.timeout_s, limits=limits)
            self._clients[loop] = client
        return client

    async def call(self, method: str, url: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; the protocol's error raised again; a server that cannot be
        reached after the retries is an :class:`InfraError`."""
        client = self._client()
        for attempt in range(self.retries + 1):
            try:
                response = await client.request(method, url + path, json=body)
            except _UNREACHED as exc:
                if attempt == self.retries:
                    raise InfraError(f"env server {url} unreachable: {exc!r}") from None
                await asyncio.sleep(_backoff(attempt))
                continue
            except httpx.TimeoutException:
                raise InfraError(f"env server {url} did not answer {path} within "
                                 f"{self.timeout_s:g} s") from None  # fmt: skip
            if response.status_code == 429 and attempt < self.retries:
                wait = response.headers.get("retry-after", "")
                await asyncio.sleep(float(wait) if wait.isdigit() else _backoff(attempt))
                continue
            try:
                data = response.json()
            except ValueError:
                raise InfraError(f"env server {url} answered HTTP {response.status_code} "
                                 f"off-contract: {response.text[:200]!r}") from None  # fmt: skip
            if response.status_code >= 400:
                raise_error(response.status_code, data, url)
            return data
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _backoff(attempt: int) -> float:
    return min(8.0, 0.1 * 2**attempt) * (0.5 + random.random())


class RemoteEnv(AsyncEnv):
    """One session of an environment on an env server (module docstring).

    ``urls``: one URL, several (a list or comma-separated), or a :class:`Transport` to
    share; ``env``: the environment's registered name; keyword options as
    :func:`pivotgym.make` takes them (``ledger`` and ``tasks`` stay here; ``tasks`` are
    drawn from here and sent with the reset).
    """

    def __init__(
        self,
        urls: str | Sequence[str] | Transport,
        env: str,
        *,
        tasks: Sequence[Any] = (),
        ledger: Ledger | None = None,
        split: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> None:
        self.transport = urls if isinstance(urls, Transport) else Transport(urls, token)
        self.name = env
        self.tasks = tasks
        self.ledger = ledger
        self.split = split
        self.env_options = options
        self.url: str | None = None
        self.session: str | None = None
        self.tools: list[dict[str, Any]] = []
        self.option_names: set[str] = set()  # the served env's options, once connected
        self.messages: Observation = []
        self.task: Any = None
        self.turn = 0
        self.done = False
        self.observation_space = Conversation()
        self.action_space = ToolCall([])

    def __repr__(self) -> str:
        return f"RemoteEnv({self.name!r}, session={self.session}, url={self.url})"

    # ----------------------------------------------------------------- sessions

    async def aconnect(self) -> None:
        """Open a session before the first reset (to read the env's tools and options)."""
        if self.session is None:
            await self._open(self.transport.route(""))

    async def _open(self, url: str) -> None:
        await self._drop()
        # An id of its own: a retried make whose answer was lost gets the same session.
        body = {"env": self.name, "options": self.env_options, "request_id": uuid.uuid4().hex}
        if self.split:
            body["split"] = self.split
        made = await self.transport.call("POST", url, "/v1/sessions", body)
        self.url, self.session = url, made["session"]
        self.option_names = set(made["options"])
        self._set_tools(made["tools"])

    async def _drop(self) -> None:
        if self.session is None:
            return
        url, session, self.session = self.url, self.session, None
        try:
            await self.transport.call("DELETE", url, f"/v1/sessions/{session}")
        except InfraError as exc:  # gone already: nothing is left to free
            log.info("closing session %s on %s: %s", session, url, exc)

    def _set_tools(self, tools: list[dict[str, Any]]) -> None:
        self.tools = tools
        self.action_space = ToolCall(tools)

    async def _call(self, path: str, body: dict[str, Any]) -> Any:
        if self.session is None or self.url is None:
            raise RuntimeError("reset the env before using it")
        return await self.transport.call("POST", self.url, f"/v1/sessions/{self.session}{path}",
                                         body)  # fmt: skip

    # ------------------------------------------------------------------ the API

    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        if seed is not None:
            self._seed(seed)
        options = dict(options or {})
        body: dict[str, Any] = {"seed": seed}
        trajectory = options.pop("trajectory", None)
        if trajectory is not None:
            if not isinstance(trajectory, Trajectory):
                trajectory = parse_trajectory(trajectory)
            body["turn"] = options.pop("turn", None)
            if not isinstance(body["turn"], int):
                raise DataError(
                    "a reset to a trajectory needs an integer turn", field="options.turn"
                )
            route = json.dumps(trajectory.task, sort_keys=True, default=str)
        task = options.pop("task", None)
        if task is None and trajectory is None and self.tasks:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        if task is not None:
            body["task"] = {"name": task} if isinstance(task, str) else {"json": task.to_json()}
            route = getattr(task, "key", None) or json.dumps(body["task"], sort_keys=True)
        elif trajectory is None:
            route = ""
        if "divergence" in options:
            body["divergence"] = options.pop("divergence")
        if options:
            raise DataError(f"unknown reset option(s) {', '.join(sorted(options))}",
                            field="options")  # fmt: skip
        url = self.transport.route(route)
        if url != self.url or self.session is None:
            await self._open(url)
        start = time.perf_counter()
        try:
            answer = await self._send_trajectory(body, trajectory, "/reset")
        except RemoteError as exc:
            # A reset starts over whatever the session held, so a session whose lease
            # ran out while the env sat in a pool is simply opened anew.
            if exc.kind not in ("expired", "not_found"):
                raise
            self.session = None
            await self._open(url)
            answer = await self._send_trajectory(body, trajectory, "/reset")
        self.messages = answer["observation"]
        self._set_tools(answer["tools"])
        self.task = task if task is not None else None
        self.turn = int(answer["info"].get("turn", 0))
        self.done = False
        if self.ledger is not None:
            self.ledger.count(env_steps=int(answer["info"].get("replayed_steps", 0)))
            self.ledger.seconds["environment"] += time.perf_counter() - start
        return self.messages, answer["info"]

    async def _send_trajectory(
        self, body: dict[str, Any], trajectory: Trajectory | None, path: str
    ) -> Any:
        """Send ``body`` with the trajectory by digest where this server holds it, inline
        where it does not (or no longer does)."""
        if trajectory is None:
            return await self._call(path, body)
        row, key = self.transport.encode(trajectory)
        held = self.transport.held[self.url or ""]
        if key in held:
            try:
                return await self._call(path, {**body, "trajectory": {"digest": key}})
            except RemoteError as exc:
                if exc.kind != "unknown_trajectory":
                    raise
        answer = await self._call(path, {**body, "trajectory": {"inline": row}})
        held[key] = None
        while len(held) > 2048:
            held.popitem(last=False)
        return answer

    async def astep(self, action: Message) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self.session is None:
            raise RuntimeError("reset the env before stepping it")
        if self.done:
            raise RuntimeError("the episode is over; reset the env")
        start = time.perf_counter()
        try:
            answer = await self._call("/step", {"action": action, "step_id": uuid.uuid4().hex})
        except InfraError as exc:  # the server is gone or failed: the episode is void
            self.done = True
            info = {"turn": self.turn, "calls": [], "tool_errors": [], "infra_error": str(exc)}
            return self.messages, 0.0, False, True, info
        self.messages = self.messages[: answer["from"]] + answer["tail"]
        self.turn += 1
        self.done = answer["terminated"] or answer["truncated"]
        if self.ledger is not None:
            self.ledger.count(env_steps=1)
            self.ledger.seconds["environment"] += time.perf_counter() - start
        return (self.messages, answer["reward"], answer["terminated"], answer["truncated"],
                answer["info"])  # fmt: skip

    async def afork(self, n: int) -> list[AsyncEnv]:
        answer = await self._call("/fork", {"n": n, "request_id": uuid.uuid4().hex})
        children = []
        for session in answer["sessions"]:
            child = RemoteEnv(self.transport, self.name, tasks=self.tasks, ledger=self.ledger,
                              split=self.split, **self.env_options)  # fmt: skip
            child.url, child.session = self.url, session
            child._set_tools(self.tools)
            child.messages = json.loads(json.dumps(self.messages))
            child.task, child.turn, child.done = self.task, self.turn, self.done
            child._np_random = copy.deepcopy(self.np_random)
            children.append(child)
        return children

    async def aevaluate(self, *, terminated: bool = True) -> tuple[float, dict[str, Any]]:
        answer = await self._call("/evaluate", {"terminated": terminated})
        return answer["reward"], answer["info"]

    async def averify(
        self,
        verifier: str,
        options: dict[str, Any],
        trajectory: Trajectory,
        turn: int,
        actions: Sequence[Message],
        reference: Message,
    ) -> list[dict[str, Any]]:
        """Verdicts of the server's ``verifier`` on ``actions`` at the trajectory's turn
        (as :class:`~pivotgym.verifiers.base.Verdict` fields)."""
        body = {"verifier": verifier, "options": options, "turn": turn,
                "actions": list(actions), "reference": reference}  # fmt: skip
        answer = await self._send_trajectory(body, trajectory, "/verify")
        return answer["verdicts"]

    async def aclose(self) -> None:
        await self._drop()
