"""A request refused by its head alone, before its body is read.

A client that sends ``Expect: 100-continue`` waits for the server's word before it
uploads its body (curl for bodies over 1 MiB; .NET's HttpClient and some Java
clients whenever they are set to). Answering ``100 Continue`` to a client whose key
is refused would have it upload a body only to read a 401. So for such a request,
and only for it, the server asks the ``Door`` first (``polyroute.server.http11``);
a request without the expectation is read whole and refused by its handler, with
nothing more done per request.

The door checks what the handler would check first: a client key on the paths that
take one, the admin key under ``/admin/``. A refusal it makes is the handler's own
(same status, same error, same headers); a chat request refused here ends at the
gateway's finished seam like one refused by its handler, so the access log, the
metrics and the ledger still count it. Every other path is let through. A refusal is
made in OpenAI's shape; the connection gives it another API's on that API's paths
(Anthropic's on ``/v1/messages``, polyroute.server.messages_errors), as it does for its
own errors.
"""

from __future__ import annotations

from polyroute.errors import PolyrouteError
from polyroute.gateway import Gateway, RequestContext
from polyroute.server.admin import PREFIX as ADMIN_PREFIX
from polyroute.server.admin import require_admin
from polyroute.server.answers import Reply
from polyroute.server.chat import OPENAI_REQUEST_ID, REQUEST_ID
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request

__all__ = ["Door"]


class Door:
    """Which paths need which key, and the refusal of a head that lacks it."""

    __slots__ = ("admin_digest", "chat_paths", "client_paths", "client_prefixes", "gateway")

    def __init__(
        self, gateway: Gateway, *, chat_paths: frozenset[str], client_paths: frozenset[str] = frozenset(),
        client_prefixes: tuple[str, ...] = (), admin_digest: bytes | None = None,
    ) -> None:
        self.gateway = gateway
        self.chat_paths = chat_paths  # refused requests are finished at the gateway's seam
        self.client_paths = client_paths | chat_paths
        self.client_prefixes = client_prefixes  # paths that end in a name (``/v1/conversations/{id}/items``)
        self.admin_digest = admin_digest

    def __call__(self, request: Request) -> Reply | None:
        path = request.path
        if path in self.client_paths or path.startswith(self.client_prefixes):
            try:
                self.gateway.keys.authenticate(request_key(request))
            except PolyrouteError as exc:
                return self._refused(path, exc)
        elif self.admin_digest is not None and path.startswith(ADMIN_PREFIX):
            try:
                require_admin(request, self.admin_digest)
            except PolyrouteError as exc:
                return error_response(exc)
        return None

    def _refused(self, path: str, exc: PolyrouteError) -> Reply:
        if path not in self.chat_paths:
            return error_response(exc)
        ctx = RequestContext()
        self.gateway.refused(ctx, exc)
        return error_response(exc, {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id})
