"""Errors on the Messages API's paths in Anthropic's shape, wherever they are made.

An Anthropic client reads an error as ``{"type": "error", "error": {"type": ..., "message":
...}}`` with its id in the ``request-id`` header; OpenAI's shape leaves it with a bare
status. The Messages handlers answer in that shape themselves (polyroute.server.messages).
The errors made before a handler runs are made once, in OpenAI's shape, by the layers
every path shares:

    the connection (polyroute.server.http11)   400 not HTTP, 408 head or body too slow,
                                               413 body over the limit, 415/501 codings,
                                               431 head over the limit, 503 cut at a stop
    the router (polyroute.server.dispatch)     404 unknown path, 405 method, 500 bug of ours
    the door (polyroute.server.door)           401/403 a key refused before the body is sent

``OnMessagesPaths`` is the hook those layers ask on their error path only, with the request's
path: on ``/v1/messages`` and under it, the error in Anthropic's shape (the same status and
headers, a request id made for it when it has none); elsewhere, the error as it was. A
success never reaches it. A path that ends in ``/v1/messages`` under another prefix is an
SDK pointed at a base URL that already holds ``/v1``: its 404 says so.
"""

from __future__ import annotations

import orjson

from polyroute.finish import RequestIds
from polyroute.server.answers import Reply
from polyroute.server.chat import REQUEST_ID
from polyroute.server.messages_answer import error_doc

__all__ = ["ANTHROPIC_REQUEST_ID", "MESSAGES", "OnMessagesPaths", "anthropic_error"]

MESSAGES = "/v1/messages"
# Where Anthropic's SDKs read a response's request id (``message._request_id``, an error's ``request_id``).
ANTHROPIC_REQUEST_ID = "request-id"
_UNDER = MESSAGES + "/"
_BASE_URL_HINT = (" An Anthropic SDK adds /v1/messages to its base URL itself: set ANTHROPIC_BASE_URL (or base_url) "
                  "to the gateway's root, without /v1.")


def anthropic_error(answer: Reply, request_id: str | None = None, hint: str = "") -> Reply:
    """An error reply in OpenAI's shape (or already in Anthropic's) in Anthropic's, with its status and headers;
    its request id is the one it carries, else ``request_id``; ``hint`` is added to its message."""
    try:
        doc = orjson.loads(answer.body)
        message = str(doc["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = answer.body.decode("utf-8", "replace") or f"HTTP {answer.status}"
    message += hint
    rid = answer.headers.get(REQUEST_ID) or answer.headers.get(ANTHROPIC_REQUEST_ID) or request_id
    headers = {k: v for k, v in answer.headers.items() if k != "content-type"}
    if rid:
        headers[ANTHROPIC_REQUEST_ID] = rid
    return Reply(orjson.dumps(error_doc(answer.status, message, rid)), answer.status, headers)


class OnMessagesPaths:
    """The error hook of the HTTP layer and the router: Anthropic's shape on the Messages API's paths."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids = RequestIds()  # for errors made before the gateway gave the request an id

    def __call__(self, path: str, answer: Reply) -> Reply:
        if path == MESSAGES or path.startswith(_UNDER):
            return anthropic_error(answer, self.ids.next())
        if path.endswith(MESSAGES) and answer.status == 404:  # /v1/v1/messages: a base URL that holds /v1
            return anthropic_error(answer, self.ids.next(), _BASE_URL_HINT)
        return answer
