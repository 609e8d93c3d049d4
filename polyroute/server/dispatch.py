"""Paths to handlers, in the OpenAI error shape for everything else (or the one ``error_shape`` gives a path).

The gateway has a handful of fixed paths: a dict lookup does the routing. The few
paths that end in a name (``/v1/models/{id}``) are prefixes, tried only when no fixed
path matches; their handler reads the name from the path. A handler that raises
is a bug of ours: it is logged with its traceback and the client gets a 500 without one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from polyroute.auth import presented_key
from polyroute.errors import MethodNotAllowed, NotFound
from polyroute.metrics import ConnectionCloses
from polyroute.server.answers import Answer, HeadReply, Reply
from polyroute.server.errors import error_body, internal_error
from polyroute.server.http11 import ErrorShape, HeadCheck, Request, Shared

log = logging.getLogger("polyroute.server")

Handler = Callable[[Request], Awaitable[Answer]]
Hook = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class App:
    """What the server runs: the routes, what to do before serving and after, its limits."""

    def __init__(
        self,
        routes: dict[str, dict[str, Handler]],
        *,
        max_body: int,
        startup: Hook = _nothing,
        shutdown: Hook = _nothing,
        sched_slice_us: int = 0,
        prefixes: dict[str, dict[str, Handler]] | None = None,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        send_timeout: float = 60.0,
        shutdown_grace: float = 10.0,
        reload: Callable[[], None] | None = None,
        before_body: HeadCheck | None = None,
        error_shape: ErrorShape | None = None,
        closes: ConnectionCloses | None = None,
        on_server: Callable[[Shared], None] | None = None,
    ) -> None:
        self.routes = routes  # path -> method -> handler
        # What an unknown /v1 path is told is served instead (an SDK's embeddings or completions call).
        served = sorted(p for p in routes if p.startswith("/v1/"))
        self._v1 = f" This gateway serves {', '.join(served)} under /v1." if served else ""
        # path prefix (ending in "/") -> method -> handler, for paths that end in a name
        self.prefixes = prefixes or {}
        self.max_body = max_body
        self.header_timeout = header_timeout  # a request's head must arrive whole within this
        self.body_timeout = body_timeout  # and its body within this after the head
        self.send_timeout = send_timeout  # a client that takes none of its answer this long is cut
        self.shutdown_grace = shutdown_grace  # answers in flight at a stop have this long to finish
        self.sched_slice_us = sched_slice_us  # for the process that serves it (polyroute.sched)
        self.startup = startup
        self.shutdown = shutdown
        # SIGHUP: read changed files (router models) again, on the event loop's thread.
        self.reload = reload
        # A request whose client waits before sending its body (Expect: 100-continue) is judged by its head first.
        self.before_body = before_body
        # The errors made here and by the connection, on paths of another API's wire format (Anthropic's): its shape.
        self.error_shape = error_shape
        # The HTTP server's counts of the connections it ends, and what to tell of the server once it runs: where
        # the gateway's metrics read them (polyroute.metrics).
        self.closes = closes
        self.on_server = on_server

    async def __call__(self, request: Request) -> Answer:
        path, method = request.path, request.method
        if method == "HEAD":
            return await self._head(request)
        methods = self.routes.get(path)
        if methods is None and self.prefixes:
            methods = next((m for prefix, m in self.prefixes.items() if path.startswith(prefix)), None)
        if methods is None:
            methods = self._by_prefix(path)
        if methods is None:
            hint = self._v1 if path.startswith("/v1/") else ""
            return self._shaped(path, _error(404, f"Unknown path: {method} {_shown(path)}.{hint}", NotFound.code))
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            reply = _error(405, f"Method {_shown(method)} is not allowed on {_shown(path)} (allowed: {allowed})",
                           MethodNotAllowed.code)
            reply.headers["allow"] = allowed
            return self._shaped(path, reply)
        try:
            return await handler(request)
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            return self._shaped(path, internal_error())

    def _shaped(self, path: str, error: Reply) -> Reply:
        return error if self.error_shape is None else self.error_shape(path, error)


    async def _head(self, request: Request) -> Answer:
        """``HEAD``: what ``GET`` would answer, without its body (load balancers check health so)."""
        answer = await self(Request("GET", request.path, request.headers, b"", request.keep_alive, None,
                                    request.http10, request.query))
        if not isinstance(answer, Reply):  # a stream: not started, and not worth starting
            await answer.aclose()
            answer = _error(405, f"HEAD is not served on {_shown(request.path)}: it streams (use GET)",
                            MethodNotAllowed.code)
        return HeadReply(answer)

    def _by_prefix(self, path: str) -> dict[str, Handler] | None:
        for prefix, methods in self.prefixes.items():
            if path.startswith(prefix) and len(path) > len(prefix):
                return methods
        return None


def _shown(text: str, most: int = 200) -> str:
    """A client's path or method as an error quotes it: never more than ``most`` characters back."""
    return text if len(text) <= most else text[:most] + f"... ({len(text)} characters)"


def _error(status: int, message: str, code: str) -> Reply:
    return Reply(error_body(message, "invalid_request_error", code=code), status)


def request_key(request: Request) -> str | None:
    """The key a request presents (``Authorization: Bearer`` or ``x-api-key``), for any endpoint."""
    return presented_key(request.header(b"authorization"), request.header(b"x-api-key"))
