"""A minimal ASGI dispatcher: exact paths to handlers, lifespan, errors in shape.

Starlette's router and its two exception middlewares cost about a sixth of the
gateway's CPU per request; the gateway has a handful of fixed paths, so a dict
lookup does the routing. Handlers still take Starlette ``Request`` objects and
return Starlette ``Response`` objects (or, for streams, ``sse.EventStream``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from polyroute.server.errors import error_body

log = logging.getLogger("polyroute.server")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Answer(Protocol):
    """What a handler returns: a Starlette ``Response``, or anything else that sends itself."""

    status_code: int

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]: ...


Handler = Callable[[Request], Awaitable[Answer]]


class App:
    def __init__(
        self,
        routes: dict[str, dict[str, Handler]],
        lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.routes = routes  # path -> method -> handler
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.run_lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        methods = self.routes.get(path)
        if methods is None:
            response: Answer = _error(404, f"Unknown path: {method} {path}", "invalid_request_error", "404")
        elif (handler := methods.get(method)) is None:
            allowed = ", ".join(sorted(methods))
            response = _error(405, f"Method {method} is not allowed on {path} (allowed: {allowed})",
                              "invalid_request_error", "405")
            response.headers["allow"] = allowed
        else:
            try:
                response = await handler(Request(scope, receive))
            except Exception:
                # A bug of ours: logged with its traceback, answered without one.
                log.exception("unexpected error on %s %s", method, path)
                response = _error(500, "The gateway hit an internal error; it has been logged.",
                                  "server_error", "internal_error")
        await response(scope, receive, send)

    async def run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        if self.lifespan is None:
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        ctx = self.lifespan()
        try:
            await ctx.__aenter__()
        except Exception as exc:
            log.exception("start-up failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await ctx.__aexit__(None, None, None)
        finally:
            await send({"type": "lifespan.shutdown.complete"})


def _error(status: int, message: str, type_: str, code: str) -> Response:
    return Response(error_body(message, type_, code=code), status_code=status, media_type="application/json")
