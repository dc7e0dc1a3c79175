"""The environment server's HTTP face: routes over :class:`EnvService`, bearer tokens,
a cap on bodies, and every error as the protocol's JSON (``docs/env-server.md``).

=====================================  ===========================================
``POST /v1/sessions``                  ``env``, ``options``, ``split`` → ``session``, ``tools``
``POST /v1/sessions/{id}/reset``       ``seed``, ``task``, ``trajectory``, ``turn``, ``divergence``
``POST /v1/sessions/{id}/step``        ``action``, ``step_id``
``POST /v1/sessions/{id}/fork``        ``n`` → ``sessions``
``POST /v1/sessions/{id}/evaluate``    ``terminated`` → ``reward``, ``info``
``POST /v1/sessions/{id}/verify``      ``verifier``, ``options``, ``trajectory``, ``turn``,
                                       ``actions``, ``reference`` → ``verdicts``
``DELETE /v1/sessions/{id}``           closes it (again: no error)
``GET /health``                        ``status``, ``sessions``, ``draining`` (no token needed)
``GET /metrics``                       Prometheus text
=====================================  ===========================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pivotgym.remote.wire import ProtocolError, RemoteError, error_body
from pivotgym.server.env_sessions import EnvService

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 << 20  # an inline trajectory of a long SWE episode is a few MB


def owner_of(token: str) -> str:
    """What a token goes by in the server's books: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def build_env_app(
    service: EnvService, *, tokens: Iterable[str] = (), max_body_bytes: int = MAX_BODY_BYTES
) -> Starlette:
    """The app; ``tokens`` empty: no token asked (for a server bound to loopback)."""
    # Compared as digests, every one of them: the time taken says nothing of a token.
    known = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def authorise(request: Request) -> str:
        if not known:
            return "anyone"
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        offered = hashlib.sha256(given.encode()).digest()
        matches = [hmac.compare_digest(offered, t) for t in known]
        if scheme.lower() != "bearer" or not any(matches):
            raise RemoteError("auth", "a valid bearer token is needed (Authorization: Bearer ...)")
        return owner_of(given)

    async def body_of(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise ProtocolError("too_large", f"the body is over {max_body_bytes} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_body_bytes:
                raise ProtocolError("too_large", f"the body is over {max_body_bytes} bytes")
        if not data:
            return {}
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ProtocolError("bad_request", "the request body is not valid JSON (or "
                                "nests too deep)") from None  # fmt: skip
        if not isinstance(body, dict):
            raise ProtocolError("bad_request", "the request body must be a JSON object")
        return body

    def answer(
        call: Callable[[Request, str, dict[str, Any]], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                owner = authorise(request)
                result = await call(request, owner, await body_of(request))
            except Exception as exc:
                status, body = error_body(exc)
                if status >= 500 and not isinstance(exc, RemoteError):
                    log.warning("%s %s failed: %s", request.method, request.url.path, exc)
                headers = {}
                if isinstance(exc, RemoteError) and exc.kind == "busy":
                    headers["Retry-After"] = str(service.limits.retry_after_s)
                return JSONResponse(body, status_code=status, headers=headers)
            return JSONResponse(result)

        return endpoint

    async def make(request: Request, owner: str, body: dict[str, Any]) -> Any:
        session = await service.make(owner, body)
        options = getattr(session.env, "options", None)
        names = [f.name for f in dataclasses.fields(options)] if options is not None else []
        return {"session": session.id, "lease_s": service.limits.lease_s,
                "tools": session.env.tools, "options": names}  # fmt: skip

    def on_session(
        name: str, run: Callable[[Any, dict[str, Any]], Awaitable[Any]]
    ) -> Callable[[Request, str, dict[str, Any]], Awaitable[Any]]:
        async def call(request: Request, owner: str, body: dict[str, Any]) -> Any:
            session = service.get(owner, request.path_params["session"])
            async with service.use(session, name):
                return await run(session, body)

        return call

    async def fork(session: Any, body: dict[str, Any]) -> Any:
        return {"sessions": await service.fork(session, body)}

    async def verify(session: Any, body: dict[str, Any]) -> Any:
        return {"verdicts": await service.verify(session, body)}

    async def close(request: Request, owner: str, body: dict[str, Any]) -> Any:
        ident = request.path_params["session"]
        if service.ended.get(ident) is not None and ident not in service.sessions:
            return {"closed": True}  # a retried close, or one after expiry
        session = service.get(owner, ident)
        async with service.use(session, "close"):
            await service.close(session)
        return {"closed": True}

    async def health(request: Request) -> Response:
        status = "draining" if service.draining else "ok"
        return JSONResponse({"status": status, "sessions": len(service.sessions),
                             "draining": service.draining},
                            status_code=503 if service.draining else 200)  # fmt: skip

    async def metrics(request: Request) -> Response:
        try:
            authorise(request)
        except RemoteError as exc:
            status, body = error_body(exc)
            return JSONResponse(body, status_code=status)
        return PlainTextResponse(service.metrics.render(),
                                 media_type="text/plain; version=0.0.4")  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.shutdown()

    s = "/v1/sessions/{session}"
    routes = [
        Route("/v1/sessions", answer(make), methods=["POST"]),
        Route(f"{s}/reset", answer(on_session("reset", service.reset)), methods=["POST"]),
        Route(f"{s}/step", answer(on_session("step", service.step)), methods=["POST"]),
        Route(f"{s}/fork", answer(on_session("fork", fork)), methods=["POST"]),
        Route(f"{s}/evaluate", answer(on_session("evaluate", service.evaluate)), methods=["POST"]),
        Route(f"{s}/verify", answer(on_session("verify", verify)), methods=["POST"]),
        Route(s, answer(close), methods=["DELETE"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    async def no_route(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        what = "no such route" if status == 404 else f"{request.method} is not allowed here"
        kind = "not_found" if status == 404 else "bad_request"
        return JSONResponse({"error": {"kind": kind, "message": f"{what}: {request.url.path}"}},
                            status_code=status)  # fmt: skip

    handlers = {404: no_route, 405: no_route}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
