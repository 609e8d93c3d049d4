"""``POST /v1/responses``: OpenAI's Responses API, stateless, served by the chat endpoint's own path.

A Responses request is translated into a chat request (``responses_request``) and
validated as one; from there keys, admission, routing, failover, budgets, the ledger
and metrics are the chat endpoint's, unchanged. Only the answer's shape differs: a
``response`` object (``responses_answer``) or its events (``responses_stream``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import orjson
from pydantic import PrivateAttr, ValidationError

from polyroute.errors import PolyrouteError
from polyroute.failover import Report
from polyroute.gateway import RequestContext
from polyroute.server.bounds import Bounds
from polyroute.server.chat import ChatEndpoint, close_iterator, read_object
from polyroute.server.errors import from_validation
from polyroute.server.responses_answer import from_chat
from polyroute.server.responses_request import seals_reasoning, to_chat
from polyroute.server.responses_stream import ResponseEvents
from polyroute.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("polyroute.access")


class ResponsesChatRequest(ChatRequest):
    """The chat request a Responses request became, and what that request asked of its answer's shape (kept off
    the JSON an upstream is sent)."""

    _sealed: bool = PrivateAttr(default=False)

    @property
    def sealed(self) -> bool:
        """Whether reasoning items carry ``encrypted_content`` (``include: ["reasoning.encrypted_content"]``)."""
        return self._sealed


def parse_responses(body: bytes, bounds: Bounds) -> ResponsesChatRequest:
    """The chat request a Responses request's body asks for, checked and validated as chat's own are."""
    raw = read_object(body, bounds)
    chat = to_chat(raw)
    bounds.check(chat, body)
    try:
        req = ResponsesChatRequest.from_json(chat)
    except ValidationError as exc:
        raise from_validation(exc) from None
    assert isinstance(req, ResponsesChatRequest)
    req._sealed = seals_reasoning(raw)
    return req


def _sealed(req: ChatRequest) -> bool:
    return isinstance(req, ResponsesChatRequest) and req.sealed


class ResponsesEndpoint(ChatEndpoint):
    def parse(self, body: bytes) -> ChatRequest:
        return parse_responses(body, self.bounds)

    def whole(self, resp: ChatResponse, req: ChatRequest, ctx: RequestContext) -> bytes:
        return orjson.dumps(from_chat(resp, req, ctx.request_id, sealed=_sealed(req)))

    async def frames(
        self, first: ChatChunk | None, chunks: AsyncIterator[ChatChunk], req: ChatRequest, report: Report,
        ctx: RequestContext,
    ) -> AsyncIterator[bytes]:
        name = report.model.name if report.model else req.model
        events = ResponseEvents(ctx.request_id, req, name, int(time.time()), sealed=_sealed(req))
        try:
            yield events.opening()
            if first is not None and (framed := events.chunk(first)):
                yield framed
            async for chunk in chunks:
                if chunk["choices"] and (framed := events.chunk(chunk)):
                    yield framed
            yield events.closing(self.usage_chunk(None, name, report)["usage"])
        except PolyrouteError as exc:
            yield events.failed(exc.to_body()["error"])
        except Exception:
            log.exception("unexpected error while streaming route %s", report.route)
            yield events.failed({"code": "internal_error", "message": "The gateway hit an internal error; it has "
                                 "been logged."})
        finally:
            await close_iterator(chunks)
