"""Cross-origin calls from web pages (CORS), for the origins ``[gateway] cors_origins`` names.

A page's script may call another origin only when that origin says so
(https://fetch.spec.whatwg.org/#http-cors-protocol). Before a request with an ``Authorization`` header or a JSON
body, the browser asks with ``OPTIONS`` (a preflight) which method and headers it may send; then every answer must
name the page's origin in ``access-control-allow-origin``, and the headers the page may read in
``access-control-expose-headers``. Keys travel in ``Authorization``, never in cookies, so no credentials are allowed.
With no origins configured nothing here runs, and ``OPTIONS`` is a 405 like any method a path does not serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polyroute.errors import Forbidden
from polyroute.server.answers import Answer, Reply
from polyroute.server.dispatch import App
from polyroute.server.errors import error_body
from polyroute.server.http11 import Request

__all__ = ["Cors", "CorsApp"]

_METHODS = "GET, POST, PATCH, DELETE"
_MAX_AGE = "600"  # seconds a browser may keep a preflight's answer (Chromium keeps at most 7200)


class Cors:
    """Which origins may call, and the headers that say so."""

    __slots__ = ("any", "origins")

    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o for o in origins if o != "*")

    def allowed(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def preflight(self, request: Request, origin: str) -> Reply:
        """The answer to a browser's ``OPTIONS`` before its real request."""
        if not self.allowed(origin):
            message = (f"Origin {origin[:200]!r} may not call this gateway from a web page: add it to [gateway] "
                       "cors_origins.")
            return Reply(error_body(message, Forbidden.type, code="origin_not_allowed"), 403, {"vary": "origin"})
        headers = {**self._allow(origin), "access-control-allow-methods": _METHODS,
                   "access-control-max-age": _MAX_AGE}
        if wanted := request.header(b"access-control-request-headers"):
            headers["access-control-allow-headers"] = wanted[:4096]  # the SDK's own (x-stainless-...) among them
        return Reply(b"", 204, headers)

    def mark(self, answer: Answer, origin: str) -> Answer:
        """An answer to an allowed origin's request, with the headers that let its page read it."""
        if self.allowed(origin):
            headers = getattr(answer, "headers", None)
            if isinstance(headers, dict):
                headers.update(self._allow(origin))
                headers["access-control-expose-headers"] = "*"  # rate limits, budget, request id, retry-after
        return answer

    def _allow(self, origin: str) -> dict[str, str]:
        return {"access-control-allow-origin": "*" if self.any else origin, "vary": "origin"}


class CorsApp(App):
    """The app, answering preflights and marking answers for the origins allowed; built only when some are."""

    def __init__(self, *args: Any, cors: Cors, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cors = cors

    async def __call__(self, request: Request) -> Answer:
        origin = request.header(b"origin")
        if origin is None:  # not a page's script: curl, an SDK, a server
            return await super().__call__(request)
        if request.method == "OPTIONS" and request.header(b"access-control-request-method") is not None:
            return self.cors.preflight(request, origin)
        return self.cors.mark(await super().__call__(request), origin)
