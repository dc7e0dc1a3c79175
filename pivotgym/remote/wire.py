"""What the environment server and its clients say to each other, beyond plain JSON.

Errors travel as ``{"error": {"kind": ..., "message": ..., ...}}`` with the HTTP status
of :data:`STATUS`; :func:`error_body` writes one from an exception on the server and
:func:`raise_error` raises the same exception again on the client, with the same
one-line message the local API gives (a :class:`DataError` keeps its file, line and
field; a :class:`DivergenceError` its trajectory, turn and outputs). Kinds:

==================  ======  ===================================================
``data``            400     the request's data is wrong (a bad action, task or option)
``bad_request``     400     the request itself is not the protocol's
``divergence``      409     replaying a trajectory did not give its recorded outputs
``unknown_trajectory`` 409  a trajectory sent by digest the server no longer holds
``auth``            401     no token, or a wrong one
``quota``           403     the token holds as many sessions as it may
``not_found``       404     no such session
``expired``         410     the session's lease ran out, and its sandbox was reaped
``too_large``       413     the body is over the server's limit
``busy``            429     every sandbox slot is taken (``Retry-After`` says when to try)
``infra``           500     the environment's infrastructure failed
``shutting_down``   503     the server is stopping
==================  ======  ===================================================

A trajectory is sent inline the first time and by its digest (:func:`digest`) after:
the server keeps the trajectories it was sent, and answers ``unknown_trajectory`` for a
digest it has dropped, upon which the client sends it inline again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, NoReturn

from pivotgym.errors import DataError, DivergenceError, InfraError

STATUS = {
    "data": 400,
    "bad_request": 400,
    "divergence": 409,
    "unknown_trajectory": 409,
    "auth": 401,
    "quota": 403,
    "not_found": 404,
    "expired": 410,
    "too_large": 413,
    "busy": 429,
    "infra": 500,
    "shutting_down": 503,
}


class RemoteError(InfraError):
    """The server refused or failed a call for a reason of the service itself: a token,
    a quota, a session that expired or is unknown, a server that is stopping."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class ProtocolError(InfraError):
    """The server's own rules broken by a request: an error of the client, not of the
    user's data."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and body that carry ``exc`` to the client."""
    if isinstance(exc, DataError):
        kind = "data"
        extra: dict[str, Any] = {"problem": exc.problem, "file": exc.file, "line": exc.line,
                                 "field": exc.field}  # fmt: skip
    elif isinstance(exc, DivergenceError):
        kind = "divergence"
        extra = {"trajectory_id": exc.trajectory_id, "turn": exc.turn,
                 "expected": exc.expected, "actual": exc.actual}  # fmt: skip
    elif isinstance(exc, ProtocolError | RemoteError):
        kind, extra = exc.kind, {}
    elif isinstance(exc, InfraError):
        kind, extra = "infra", {}
    else:  # the environment's own failure: the client sees it as infrastructure's
        return 500, {"error": {"kind": "infra", "message": f"{type(exc).__name__}: {exc}"}}
    return STATUS[kind], {"error": {"kind": kind, "message": str(exc), **extra}}


def raise_error(status: int, body: Any, url: str) -> NoReturn:
    """Raise the exception an error answer carries (an :class:`InfraError` naming the
    server when the answer is not one of this protocol's)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        raise InfraError(f"{url} answered HTTP {status} off-contract: {str(body)[:200]}")
    kind, message = error.get("kind"), error["message"]
    if kind == "data":
        raise DataError(error.get("problem") or message, file=error.get("file"),
                        line=error.get("line"), field=error.get("field"))  # fmt: skip
    if kind == "divergence":
        raise DivergenceError(error.get("trajectory_id", "?"), error.get("turn", -1),
                              error.get("expected", ""), error.get("actual", ""))  # fmt: skip
    if kind in ("bad_request", "too_large"):
        raise ProtocolError(kind, f"{url}: {message}")
    if kind == "infra":
        raise InfraError(f"{url}: {message}")
    raise RemoteError(str(kind), f"{url}: {message}")


def digest(row: dict[str, Any]) -> str:
    """The content digest a trajectory is named by once the server holds it."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made plain: paths and other objects as
    text, tuples and sets as lists, numpy scalars as numbers, non-finite floats as
    ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)
