"""``POST /v1/completions`` (OpenAI's legacy text completions): read, validate, plan, admit, answer or stream.

The request passes the chat path's door: the key (401), its routes and policies (403,
422), its rate limits and budget (429, 402: reserved from the prompt and ``max_tokens``
at the dearest candidate's prices, settled at what the answer cost). Every request ends
at the gateway's finished seam, refused or answered, so the ledger, the access log, the
metrics and ``/v1/usage`` count it. The answer carries the headers a chat answer does;
a stream's headers wait for its first text, so a failover before it stays unseen.
The steps shared with ``/v1/embeddings`` are ``polyroute.server.front``'s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from pydantic import ValidationError

from polyroute.completions.front import TextCompletions
from polyroute.completions.types import CompletionRequest, TextChunk, TextCompletion
from polyroute.errors import InvalidRequest, PolyrouteError
from polyroute.failover import Report
from polyroute.finish import Pass
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan
from polyroute.server import sse
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import StreamFrames, close_iterator, read_object
from polyroute.server.errors import error_body_dict, from_validation
from polyroute.server.front import FrontEndpoint, Opened
from polyroute.types import ChatChunk

log = logging.getLogger("polyroute.server")


class CompletionsEndpoint(FrontEndpoint[CompletionRequest, list[str], Reply | sse.EventStream]):
    def __init__(self, gateway: Gateway, debug_headers: bool, bounds: Bounds | None = None) -> None:
        super().__init__(gateway, debug_headers, bounds)
        self.texts = TextCompletions(gateway)

    def parse(self, body: bytes) -> CompletionRequest:
        return parse_completion_request(body, self.bounds)

    def plan(self, req: CompletionRequest, ctx: RequestContext) -> tuple[Plan, list[str]]:
        return self.texts.plan(req, ctx)

    def asks_stream(self, req: CompletionRequest) -> bool:
        return req.stream

    async def respond(self, opened: Opened[CompletionRequest, list[str]]) -> Reply | sse.EventStream:
        req, ctx, plan, admitted = opened.req, opened.ctx, opened.plan, opened.admitted
        if req.stream:
            if admitted is not None:  # the headers leave before the cost is known: after the worst case
                opened.extra.update(admitted.headers())
            return await self.stream(req, ctx, plan, opened.left_out, admitted, opened.extra)
        got, report = await self.texts.complete(req, ctx, plan, opened.left_out, admitted)
        return self.whole_reply(opened, got, report, answer)

    async def stream(self, req: CompletionRequest, ctx: RequestContext, plan: Plan, left_out: list[str],
                     admitted: Pass | None, extra: dict[str, str]) -> sse.EventStream:
        chunks, report = self.texts.stream(req, ctx, plan, left_out, admitted)
        try:
            first: TextChunk | None = await anext(chunks)  # the headers wait for the first text
        except StopAsyncIteration:
            first = None
        except BaseException:
            await close_iterator(chunks)
            raise
        frames = StreamFrames(self.frames(first, chunks, req, report), cast(AsyncIterator[ChatChunk], chunks))
        return sse.EventStream(frames, headers={**self.chat.headers(report, streaming=True), **extra,
                                                "cache-control": "no-cache"})

    async def frames(self, first: TextChunk | None, chunks: AsyncIterator[TextChunk], req: CompletionRequest,
                     report: Report) -> AsyncIterator[bytes]:
        name = report.model.name if report.model else req.model
        last = first
        try:
            if first is not None and first["choices"]:
                yield _frame(first, name)
            async for chunk in chunks:
                last = chunk
                if chunk["choices"]:
                    yield _frame(chunk, name)
            if req.wants_usage_in_stream():
                yield sse.event(usage_chunk(last, name, report))
            yield sse.DONE
        except PolyrouteError as exc:
            yield sse.event(exc.to_body())  # never a cut stream that ends like a success
        except Exception:
            log.exception("unexpected error while streaming a text completion of route %s", report.route)
            yield sse.event(error_body_dict("The gateway hit an internal error; it has been logged.",
                                            "server_error", "internal_error"))
        finally:
            await close_iterator(chunks)


def _frame(chunk: TextChunk, name: str) -> bytes:
    chunk["model"] = name
    chunk.pop("usage", None)  # the client's usage is the gateway's count, in a chunk of its own when asked for
    return sse.event(chunk)


def usage(report: Report) -> dict[str, Any]:
    """What the request used and cost, as the ledger keeps it."""
    out: dict[str, Any] = {**report.usage, **(report.details or {}), "cost_usd": round(report.cost_usd, 8)}
    if report.estimated:
        out["estimated"] = True  # an upstream gave no count: the gateway's estimate
    return out


def usage_chunk(last: TextChunk | None, name: str, report: Report) -> dict[str, Any]:
    """The stream's last chunk when ``stream_options.include_usage`` asks for it: no choices, the usage."""
    return {"id": last["id"] if last else "", "object": "text_completion", "created": last["created"] if last else 0,
            "model": name, "choices": [], "usage": usage(report)}


def answer(got: TextCompletion, req: CompletionRequest, report: Report) -> TextCompletion:
    """The upstream's answer, named for the model that answered, with what the request used and cost."""
    got["model"] = report.model.name if report.model else req.model
    got["usage"] = cast(Any, usage(report))
    return got


def parse_completion_request(body: bytes, bounds: Bounds) -> CompletionRequest:
    """The request a body asks for, validated with OpenAI's limits, or a 400 naming the field."""
    raw = read_object(body, bounds)
    try:
        return CompletionRequest.from_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"] == ("n",) and first["type"] == "less_than_equal":  # not chat's n = 1: OpenAI's limit
            raise InvalidRequest(f"Invalid value for 'n': {first['msg']}.", param="n") from None
        raise from_validation(exc, CompletionRequest.model_fields) from None
