"""``GET /metrics``: the gateway's Prometheus metrics (``polyroute.metrics``).

Protected like the admin API (``Authorization: Bearer <admin key>``) unless
``[metrics] public = true``. Without an admin key configured and without ``public``,
every scrape is refused with a message that says which setting turns it on.

The HTTP server's own series (connections closed by reason, connections open) are kept
in the same ``Metrics``: the server is given its counter and tells it of itself when it
starts (``polyroute.server.serving``).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from polyroute.errors import PolyrouteError, Unauthorized
from polyroute.metrics import Metrics
from polyroute.server.admin import require_admin
from polyroute.server.answers import Reply
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request

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
        return Reply(self.metrics.render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
