"""``POST /v1/embeddings``: read, validate, plan, admit, hand to the gateway, frame OpenAI's ``list``.

The request passes the chat path's door: the key (401), its routes and policies (403,
422), its rate limits and budget (429, 402: reserved from its input tokens at the
dearest candidate's input price, settled at what the answer cost). Every request ends at
the gateway's finished seam, refused or answered, so the ledger, the access log, the
metrics and ``/v1/usage`` count it. The answer carries the headers a chat answer does.
The steps shared with ``/v1/completions`` are ``polyroute.server.front``'s.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from polyroute.embeddings.types import Embedded, EmbeddingRequest, as_base64
from polyroute.failover import Report
from polyroute.gateway import RequestContext
from polyroute.routing import Plan
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import read_object
from polyroute.server.errors import from_validation
from polyroute.server.front import FrontEndpoint, Opened


class EmbeddingsEndpoint(FrontEndpoint[EmbeddingRequest, None, Reply]):
    def parse(self, body: bytes) -> EmbeddingRequest:
        return parse_embedding_request(body, self.bounds)

    def plan(self, req: EmbeddingRequest, ctx: RequestContext) -> tuple[Plan, None]:
        return self.gateway.plan_embeddings(req, ctx), None  # the gateway reads what it left out from the plan

    async def respond(self, opened: Opened[EmbeddingRequest, None]) -> Reply:
        got, report = await self.gateway.embed(opened.req, opened.ctx, opened.plan, opened.admitted)
        return self.whole_reply(opened, got, report, answer)


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
