"""``POST /v1/embeddings``: read, validate, plan, admit, hand to the gateway, frame OpenAI's ``list``.

The request passes the chat path's door: the key (401), its routes and policies (403,
422), its rate limits and budget (429, 402: reserved from its input tokens at the
dearest candidate's input price, settled at what the answer cost). Every request ends at
the gateway's finished seam, refused or answered, so the ledger, the access log, the
metrics and ``/v1/usage`` count it. The answer carries the headers a chat answer does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import ValidationError

from polyroute.embeddings.types import Embedded, EmbeddingRequest, as_base64
from polyroute.errors import AllAttemptsFailed, PolyrouteError, UnknownModel
from polyroute.failover import Report
from polyroute.finish import Pass
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing.explain import header_value
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import (
    EXPLAIN_REQUEST,
    EXPLAIN_RESPONSE,
    OPENAI_REQUEST_ID,
    POLICY_HEADER,
    QUALITY_HEADER,
    REQUEST_ID,
    TRACEPARENT,
    ChatEndpoint,
    read_object,
)
from polyroute.server.errors import error_response, from_validation
from polyroute.server.http11 import Request

_WANTED = frozenset(name.encode() for name in ("authorization", "x-api-key", POLICY_HEADER, EXPLAIN_REQUEST,
                                               QUALITY_HEADER, TRACEPARENT))


class EmbeddingsEndpoint:
    def __init__(self, gateway: Gateway, debug_headers: bool, bounds: Bounds | None = None) -> None:
        self.gateway = gateway
        self.bounds = bounds or Bounds()
        # Who is asking, and the headers of an answer, exactly as for chat.
        self.chat = ChatEndpoint(gateway, debug_headers, self.bounds)

    async def handle(self, request: Request) -> Reply:
        started = time.monotonic()
        ctx: RequestContext | None = None
        req: EmbeddingRequest | None = None
        try:
            ctx = await self.chat.context(_headers(request), started)
            req = parse_embedding_request(request.body, self.bounds)
            plan = self.gateway.plan_embeddings(req, ctx)
        except PolyrouteError as exc:
            ctx = ctx or RequestContext(started=started)
            route = req.model if req and not isinstance(exc, UnknownModel) else ""
            self.gateway.refused(ctx, exc, route=route)
            return error_response(exc, {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id})
        extra = {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id}
        if ctx.explain:
            extra[EXPLAIN_RESPONSE] = header_value(plan)
        admitted: Pass | None = None
        try:
            if self.gateway.gatekeeper is not None:
                admitted = await self.gateway.admit(req.stand_in(), ctx, plan)
            got, report = await self.gateway.embed(req, ctx, plan, admitted)
            if admitted is not None:
                extra.update(admitted.headers((float(report.usage["total_tokens"]), report.cost_usd)))
            return Reply(orjson.dumps(answer(got, req, report)), headers={**self.chat.headers(report), **extra})
        except AllAttemptsFailed as exc:
            return error_response(exc, {"x-polyroute-attempts": str(len(exc.attempts)),
                                        **self.chat.attempt_log(exc), **_limits(admitted, extra)})
        except PolyrouteError as exc:
            return error_response(exc, _limits(admitted, extra))


def answer(got: Embedded, req: EmbeddingRequest, report: Report) -> dict[str, Any]:
    """OpenAI's ``list`` of embeddings, named for the model that answered, with what it cost."""
    encode = as_base64 if req.encoding_format == "base64" else None
    data = [{"object": "embedding", "index": i, "embedding": encode(v) if encode else v}
            for i, v in enumerate(got.vectors)]
    tokens = report.usage["prompt_tokens"]
    usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens, "cost_usd": round(report.cost_usd, 8)}
    if report.estimated:
        usage["estimated"] = True  # the upstream gave no count: the gateway's estimate, as the ledger keeps
    return {"object": "list", "data": data, "model": report.model.name if report.model else req.model,
            "usage": usage}


def parse_embedding_request(body: bytes, bounds: Bounds) -> EmbeddingRequest:
    """The request a body asks for, validated (OpenAI's limits on ``input``), or a 400 naming the field."""
    raw = read_object(body, bounds)
    # Fields OpenAI does not define are sent on as they came: one nested past the limit would fail on the way.
    bounds.check(raw, body)
    try:
        return EmbeddingRequest.from_json(raw)
    except ValidationError as exc:
        raise from_validation(exc, EmbeddingRequest.model_fields) from None


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers:
        if name in _WANTED:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out


def _limits(admitted: Pass | None, extra: dict[str, str]) -> dict[str, str]:
    """An error's headers with the key's limits, after what its attempts cost once settled."""
    return extra if admitted is None else {**extra, **admitted.headers()}
