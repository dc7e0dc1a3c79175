"""A τ² domain's databases as a :class:`~pivotgym.core.world.World`, forked copy-on-write.

τ²'s tools change its pydantic database in place (``reservation.status = "cancelled"``),
and a deep copy of the airline database costs about 0.24 s. So a world never copies a
database whole: forks and snapshots share every entry, and a call that may change state
runs with each table wrapped so that an entry is copied the first time the call reads it
(:class:`CopyOnRead`); the call then changes only its own copies, and the tables are
plain dicts again when it returns. Entries a call never touches stay shared. A field
that is not a dict of entries (telecom's lists) is copied whole for such a call.

A read tool runs on the shared entries directly where the domain's environment has no
``sync_tools`` of its own (airline, retail): those calls change nothing. Where it has
one (telecom), every call is wrapped, since syncing may write. The digest is τ²'s own
database hash (``get_db_hash``), with the user database's appended where there is one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pivotgym.core.world import World
from pivotgym.envs.tau2.domain import Tau2Domain

T = TypeVar("T")


def _own(value: Any) -> Any:
    return value.model_copy(deep=True) if hasattr(value, "model_copy") else copy.deepcopy(value)


class CopyOnRead(dict):
    """A table during a call that may write: a shallow copy of the shared table whose
    entries are copied on first read, so that in-place changes land on the copies."""

    def __init__(self, shared: dict[Any, Any]) -> None:
        super().__init__(shared)
        self._owned: set[Any] = set()

    def _claim(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if key not in self._owned:
            value = _own(value)
            dict.__setitem__(self, key, value)
            self._owned.add(key)
        return value

    def __getitem__(self, key: Any) -> Any:
        return self._claim(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._claim(key) if key in self else default

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self._claim(key)
        self[key] = default
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        self._owned.add(key)
        dict.__setitem__(self, key, value)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            value = self._claim(key)
            dict.__delitem__(self, key)
            return value
        return dict.pop(self, key, *default)

    def values(self) -> Any:
        for key in list(dict.keys(self)):
            self._claim(key)
        return dict.values(self)

    def items(self) -> Any:
        for key in list(dict.keys(self)):
            self._claim(key)
        return dict.items(self)


def call_writable(db: Any, call: Callable[[], T]) -> T:
    """Run ``call`` with ``db``'s fields private to it: dict tables copy-on-read, other
    fields copied; the fields are plain values again afterwards, whatever happens."""
    fields = db.__dict__
    saved = dict(fields)
    for name, value in saved.items():
        fields[name] = CopyOnRead(value) if isinstance(value, dict) else copy.deepcopy(value)
    try:
        return call()
    finally:
        for name, value in fields.items():
            if isinstance(value, CopyOnRead):
                # The raw items: dict(value) would read every entry through __getitem__
                # and so copy them all.
                fields[name] = dict(dict.items(value))


class Tau2Snapshot:
    """The databases at one moment; they share entries and are never changed again."""

    def __init__(self, db: Any, user_db: Any) -> None:
        self.db = db
        self.user_db = user_db

    async def release(self) -> None:
        return None


def _share(db: Any) -> Any:
    return None if db is None else db.model_copy()


class Tau2World(World):
    """A τ² ``Environment`` of one domain over databases that share entries with their
    snapshots and forks (module docstring)."""

    def __init__(self, domain: Tau2Domain, db: Any, user_db: Any = None) -> None:
        self.domain = domain
        self.pure_reads = domain.pure_reads

        def make() -> Any:
            return domain.environment(db=db, user_db=user_db)

        # An environment that syncs its toolkits does so when it is made (telecom), on
        # entries it shares with its parent: that sync, too, writes only private copies.
        if self.pure_reads:
            self.environment = make()
        elif user_db is None:
            self.environment = call_writable(db, make)
        else:
            self.environment = call_writable(db, lambda: call_writable(user_db, make))

    @classmethod
    def initial(cls, domain: Tau2Domain) -> Tau2World:
        pristine = domain.pristine
        return cls(domain, _share(pristine.tools.db), _share(_user_db(pristine)))

    @property
    def db(self) -> Any:
        return self.environment.tools.db

    @property
    def user_db(self) -> Any:
        return _user_db(self.environment)

    def run(self, call: Callable[[], T], *, writes: bool) -> T:
        """Run ``call`` on this world's environment; one that may write (or any call,
        where reads are not known to be pure) gets private copies of what it touches."""
        if not writes and self.pure_reads:
            return call()
        user_db = self.user_db
        if user_db is None:
            return call_writable(self.db, call)
        return call_writable(self.db, lambda: call_writable(user_db, call))

    async def snapshot(self) -> Tau2Snapshot:
        return Tau2Snapshot(_share(self.db), _share(self.user_db))

    @classmethod
    def from_snapshot(cls, domain: Tau2Domain, snapshot: Tau2Snapshot) -> Tau2World:
        return cls(domain, _share(snapshot.db), _share(snapshot.user_db))

    async def fork(self, n: int) -> list[Tau2World]:
        return [Tau2World(self.domain, _share(self.db), _share(self.user_db)) for _ in range(n)]

    def guarded(self) -> Any:
        """This world's τ² ``Environment`` for code of τ²'s that calls it directly (its
        evaluator's ``set_state``): every entry point that may write (the agent's and
        user's tools, initialisation actions and assertions, the toolkits' sync) runs
        through :meth:`run`, so it writes only the world's private copies. The world is
        the caller's to throw away."""
        environment = self.environment

        def through(method: Callable[..., Any], writes: Callable[..., bool]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                return self.run(lambda: method(*args, **kwargs), writes=writes(*args, **kwargs))

            return run

        def agent_writes(tool_name: str, **_: Any) -> bool:
            return self.domain.tool_type(tool_name) == "write"

        environment.use_tool = through(environment.use_tool, agent_writes)
        always = lambda *_, **__: True  # noqa: E731
        for name in ("use_user_tool", "run_env_function_call", "sync_tools"):
            setattr(environment, name, through(getattr(environment, name), always))
        return environment

    def db_hash(self) -> str:
        return self.environment.get_db_hash()

    def user_db_hash(self) -> str | None:
        return self.environment.get_user_db_hash()

    def same_state(self, other: Tau2World) -> bool:
        """Whether the two worlds' databases hash alike (as :meth:`digest` would say),
        found by comparing only the entries they do not share: forks of one state
        differ only where one of them wrote, so this costs a pass over the tables'
        keys, not a dump of the databases (0.07 s for airline's)."""
        return _same(self.db, other.db) and _same(self.user_db, other.user_db)

    def digest(self) -> str:
        user = self.user_db_hash()
        return self.db_hash() if user is None else f"{self.db_hash()}/{user}"

    async def close(self) -> None:
        return None


def _user_db(environment: Any) -> Any:
    tools = environment.user_tools
    return None if tools is None else tools.db


def _canonical(value: Any) -> str:
    dumped = value.model_dump() if hasattr(value, "model_dump") else value
    return json.dumps(dumped, sort_keys=True, default=str)  # τ²'s hashing of a value


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if a is None or b is None or type(a) is not type(b):
        return False
    for name, x in a.__dict__.items():
        y = b.__dict__.get(name)
        if x is y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                return False
            if any(x[k] is not y[k] and _canonical(x[k]) != _canonical(y[k]) for k in x):
                return False
        elif _canonical(x) != _canonical(y):
            return False
    return True
