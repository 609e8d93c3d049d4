"""``GET /metrics``: the gateway's Prometheus metrics (``polyroute.metrics``).

Protected like the admin API (``Authorization: Bearer <admin key>``) unless
``[metrics] public = true``. Without an admin key configured and without ``public``,
every scrape is refused with a message that says which setting turns it on.

The HTTP server's own series (connections closed by reason, connections open) belong to
the server that serves the scrape, which the gateway's handlers do not know: the answer
(``ServerScrape``) reads them from the connection it is written to, the one place where
both meet, and sends them after the gateway's. It is chunked, since its length is known
only then.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from polyroute.errors import PolyrouteError, Unauthorized
from polyroute.metrics import Metrics
from polyroute.server.admin import require_admin
from polyroute.server.answers import Output, Reply, header_lines
from polyroute.server.errors import error_response
from polyroute.server.http11 import Connection, Request

WHAT = "GET /metrics"


def metrics_guard(public: bool, admin_digest: bytes | None) -> Callable[[Request], None]:
    """What a scrape must show to be answered."""
    if public:
        return lambda request: None
    if admin_digest is None:
        def closed(request: Request) -> None:
            raise Unauthorized(f"{WHAT} needs the admin key, and none is configured: set [admin] secret, "
                               "or [metrics] public = true to serve it to anyone who can reach the gateway.")
        return closed
    return lambda request: require_admin(request, admin_digest, WHAT)


class MetricsEndpoint:
    def __init__(self, metrics: Metrics, authorize: Callable[[Request], None]) -> None:
        self.metrics = metrics
        self.authorize = authorize

    async def handle(self, request: Request) -> Reply:
        try:
            self.authorize(request)
        except PolyrouteError as exc:
            return error_response(exc)
        await self.metrics.refresh()
        return ServerScrape(self.metrics, self.metrics.render())


class ServerScrape(Reply):
    """The gateway's metrics (``body``, rendered by the handler), then the server's, read when sent."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics, body: bytes) -> None:
        super().__init__(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
        self.metrics = metrics

    def head_fields(self) -> list[bytes]:
        fields = header_lines(self.headers)
        fields.append(b"transfer-encoding: chunked\r\n")
        return fields

    async def send(self, out: Output, head: bytes) -> None:
        body = self.body
        if isinstance(out, Connection):
            shared = out.shared
            body += self.metrics.render_server(shared.closes, len(shared.connections))
        out.write(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
