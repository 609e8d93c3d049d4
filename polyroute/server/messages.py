"""``POST /v1/messages``: Anthropic's Messages API, served by the chat endpoint's own path.

Clients written for Anthropic's API (its SDKs, Claude Code with ``ANTHROPIC_BASE_URL``)
use any model or route of the fleet. A Messages request is translated into a chat
request (``messages_request``) and validated as one; from there keys, admission,
routing, failover, budgets, the ledger and metrics are the chat endpoint's, unchanged.
Only the answer's shape differs: a ``message`` object (``messages_answer``) or its
events (``messages_stream``), and errors in Anthropic's shape with the same status and
headers. The gateway's request id is also sent as ``request-id``, where Anthropic's
SDKs read theirs.

``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}`` with the gateway's own
estimate (polyroute.routing.needs), the one routing uses to check context windows: no
upstream is asked, so it is an estimate whatever the model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import orjson
from pydantic import ValidationError

from polyroute.adapters.anthropic import AnthropicAdapter
from polyroute.adapters.claude_betas import client_betas, with_betas
from polyroute.adapters.claude_effort import thinking_for
from polyroute.errors import Forbidden, PolyrouteError, UpstreamParamRefused
from polyroute.failover import Report
from polyroute.finish import Pass, RequestIds
from polyroute.fleet import Fleet
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan
from polyroute.routing.needs import needs_of
from polyroute.server import sse
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import REQUEST_ID, ChatEndpoint, close_iterator, read_object
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response, from_validation
from polyroute.server.http11 import Request
from polyroute.server.messages_answer import error_doc, from_chat, message_id
from polyroute.server.messages_errors import ANTHROPIC_REQUEST_ID, anthropic_error
from polyroute.server.messages_request import to_chat
from polyroute.server.messages_stream import MessageEvents, event
from polyroute.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("polyroute.access")

# A count that no tokenizer made.
ESTIMATED = "x-polyroute-estimated"
_INTERNAL = "The gateway hit an internal error; it has been logged."
_ANY_MAX_TOKENS = 4096  # asking whether a model thinks at all: any room will do
# The betas of the request being read, from its ``anthropic-beta`` header: the chat endpoint hands ``read`` the body
# alone, so ``handle``, which has the headers, sets them for the task that serves this request.
_BETAS: ContextVar[tuple[str, ...]] = ContextVar("anthropic_betas", default=())


def parse_messages(body: bytes, bounds: Bounds, *, counting: bool = False, fleet: Fleet | None = None,
                   betas: tuple[str, ...] = ()) -> ChatRequest:
    """The chat request a Messages request's body asks for, checked and validated as chat's own are (``fleet``:
    the one it will be served by, which says whether it can only reach Claude; ``betas``: those its header named,
    carried beside the request's fields for Claude alone, polyroute.adapters.claude_betas)."""
    raw = read_object(body, bounds)
    # Before any turn is translated, naming fields as the client wrote them: a tool_use input nested deeper than
    # JSON's encoder goes would fail its translation into arguments.
    bounds.check(raw, body)
    chat = to_chat(raw, counting=counting, to_claude=fleet is not None and only_claude(fleet, raw.get("model")))
    bounds.check(chat, body)
    try:
        return with_betas(chat, betas)
    except ValidationError as exc:
        raise from_validation(exc) from None


def only_claude(fleet: Fleet, name: object) -> bool:
    """Whether every model ``name`` can be routed to is a Claude that thinks, served over Anthropic's own API: then
    what only Claude takes (a thinking budget, ``metadata``) goes to it as the client wrote it
    (polyroute.server.messages_request). A Claude that does not think would refuse the client's ``thinking``;
    as an effort, it is dropped and named instead."""
    route = fleet.routes.get(name) if isinstance(name, str) else None
    return route is not None and all(
        fleet.adapters[m.backend].kind == AnthropicAdapter.kind and _thinks(m.upstream) for m in route.models)


def _thinks(model: str) -> bool:
    try:
        thinking_for("low", model, _ANY_MAX_TOKENS, backend="")
    except UpstreamParamRefused:  # no thinking, no effort: nowhere for it to go
        return False
    return True


def in_anthropic_shape(answer: Reply) -> Reply:
    """A reply of the chat path as Anthropic's clients read it: errors in their shape, the request id where they
    look for it."""
    if answer.status >= 400:
        return anthropic_error(answer)
    if request_id := answer.headers.get(REQUEST_ID):
        answer.headers[ANTHROPIC_REQUEST_ID] = request_id
    return answer


class MessagesEndpoint(ChatEndpoint):
    async def handle(self, request: Request) -> Reply | sse.EventStream:
        token = _BETAS.set(client_betas(request.headers))
        try:
            answer = await super().handle(request)
        finally:
            _BETAS.reset(token)
        return answer if isinstance(answer, sse.EventStream) else in_anthropic_shape(answer)

    async def read(self, body: bytes, ctx: RequestContext) -> ChatRequest:
        return parse_messages(body, self.bounds, fleet=self.gateway.fleet, betas=_BETAS.get())

    async def whole(self, resp: ChatResponse, req: ChatRequest, ctx: RequestContext) -> bytes:
        return orjson.dumps(from_chat(resp, req, ctx.request_id))

    async def stream(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None, extra: dict[str, str] | None = None,
        admitted: Pass | None = None,
    ) -> sse.EventStream:
        extra = {**(extra or {}), ANTHROPIC_REQUEST_ID: ctx.request_id}
        opened = await super().stream(req, ctx, plan, extra, admitted)
        return MessageStream(opened.body, opened.headers)

    async def frames(
        self, first: ChatChunk | None, chunks: AsyncIterator[ChatChunk], req: ChatRequest, report: Report,
        ctx: RequestContext,
    ) -> AsyncIterator[bytes]:
        name = report.model.name if report.model else req.model
        events = MessageEvents(message_id(ctx.request_id), req, name, needs_of(req).prompt_tokens)
        try:
            yield events.opening()
            if first is not None and (framed := events.chunk(first)):
                yield framed
            async for chunk in chunks:
                if chunk["choices"] and (framed := events.chunk(chunk)):
                    yield framed
            yield events.closing(self.usage_chunk(None, name, report)["usage"])
        except PolyrouteError as exc:
            yield events.failed(error_doc(exc.status, exc.message, ctx.request_id))
        except Exception:
            log.exception("unexpected error while streaming route %s", report.route)
            yield events.failed(error_doc(500, _INTERNAL, ctx.request_id))
        finally:
            await close_iterator(chunks)


class MessageStream(sse.EventStream):
    """A Messages stream: one cut short by the server (a shutdown) ends with an ``error`` event, as Anthropic's do."""

    def error_event(self, payload: Any) -> bytes:
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return event(error_doc(503, str(message or "The gateway is shutting down.")))


class CountTokensEndpoint:
    """``POST /v1/messages/count_tokens``: the gateway's estimate of a request's input tokens."""

    def __init__(self, gateway: Gateway, bounds: Bounds | None = None) -> None:
        self.gateway = gateway
        self.bounds = bounds or Bounds()
        self.ids = RequestIds()  # its own: no upstream is asked, so the gateway's seam never sees these requests

    async def handle(self, request: Request) -> Reply:
        request_id = self.ids.next()
        try:
            principal = self.gateway.keys.authenticate(request_key(request))
            req = parse_messages(request.body, self.bounds, counting=True)
            route = self.gateway.fleet.resolve(req.model)
            if principal.routes is not None and route.name not in principal.routes:
                raise Forbidden(f"This key may not use '{route.name}'.", param="model")
        except PolyrouteError as exc:
            return anthropic_error(error_response(exc), request_id)
        return Reply(orjson.dumps({"input_tokens": needs_of(req).prompt_tokens}),
                     headers={ESTIMATED: "true", ANTHROPIC_REQUEST_ID: request_id})
