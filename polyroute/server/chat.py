"""``POST /v1/chat/completions``: read, validate, hand to the gateway, frame the answer."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import orjson
from pydantic import ValidationError

from polyroute.auth import presented_key
from polyroute.errors import AllAttemptsFailed, InvalidRequest, PolyrouteError, UnknownModel
from polyroute.failover import Report
from polyroute.finish import Pass, Unanswered
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan
from polyroute.routing.explain import header_value
from polyroute.server import sse
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.errors import error_body_dict, error_response, from_validation
from polyroute.server.http11 import Request
from polyroute.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("polyroute.access")

# A client narrows its policy by naming another one; it can never widen it.
POLICY_HEADER = "x-polyroute-policy"
# A number in [0, 1]: the quality target of a "quality" route, kept within the route's bounds.
QUALITY_HEADER = "x-polyroute-quality"
# "1" asks for the routing decision, returned as compact JSON in EXPLAIN_RESPONSE.
EXPLAIN_REQUEST = "x-polyroute-explain"
EXPLAIN_RESPONSE = "x-polyroute-route-explain"
# The gateway's own id for the request, as the usage ledger keeps it.
REQUEST_ID = "x-polyroute-request-id"
OPENAI_REQUEST_ID = "x-request-id"  # the same id where OpenAI's SDKs read it (``completion._request_id``)
# W3C trace context: a trace of the request (polyroute.spans) continues the client's.
TRACEPARENT = "traceparent"


class ChatEndpoint:
    def __init__(self, gateway: Gateway, debug_headers: bool, bounds: Bounds | None = None) -> None:
        self.gateway = gateway
        self.debug_headers = debug_headers
        self.bounds = bounds or Bounds()

    async def handle(self, request: Request) -> Reply | sse.EventStream:
        started = time.monotonic()
        ctx: RequestContext | None = None
        req: ChatRequest | None = None
        try:
            ctx = await self.context(wanted_headers(request.headers), started)
            req = await self.read(request.body, ctx)
            plan = self.gateway.plan(req, ctx)
        except PolyrouteError as exc:
            # Ended before the gateway had it: still one request finished, for every observer.
            ctx = ctx or RequestContext(started=started)
            # A name no route has is the client's text: not a route to count by (nor to show as one).
            route = req.model if req and not isinstance(exc, UnknownModel) else ""
            self.gateway.refused(ctx, exc, route=route, stream=bool(req and req.stream))
            return error_response(exc, {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id})
        extra = {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id}
        admitted: Pass | None = None
        try:
            admitted = None if self.gateway.gatekeeper is None else await self.gateway.admit(req, ctx, plan)
            if ctx.explain:
                extra[EXPLAIN_RESPONSE] = header_value(plan)
            if req.stream:
                if admitted is not None:  # the headers leave before the cost is known: after the worst case
                    extra.update(admitted.headers())
                return await self.stream(req, ctx, plan, extra, admitted)
            resp, report = await self.gateway.complete(req, ctx, plan, admitted)
            if (usage := cast(dict[str, Any] | None, resp.get("usage"))) is not None:
                usage["cost_usd"] = round(report.cost_usd, 8)  # as a stream's usage has it (SDKs read usage)
            if admitted is not None:
                extra.update(admitted.headers((float(report.usage["total_tokens"]), report.cost_usd)))
            return Reply(await self.whole(resp, req, ctx), headers={**self.headers(report), **extra})
        except AllAttemptsFailed as exc:
            return error_response(exc, {"x-polyroute-attempts": str(len(exc.attempts)), **self.attempt_log(exc),
                                        **_limits(admitted, extra)})
        except PolyrouteError as exc:
            return error_response(exc, _limits(admitted, extra))

    async def read(self, body: bytes, ctx: RequestContext) -> ChatRequest:
        """The request a body asks for, validated (an endpoint of another wire format translates it here, and
        may read what ``ctx.principal`` stored)."""
        return parse_request(body, self.bounds)

    async def whole(self, resp: ChatResponse, req: ChatRequest, ctx: RequestContext) -> bytes:
        """The body of a whole answer (an endpoint that keeps answers keeps it before it is sent)."""
        return orjson.dumps(resp)

    async def context(self, h: dict[str, str], started: float) -> RequestContext:
        """Who is asking (401 when keys are configured and none valid is sent), and what they asked of routing."""
        principal = self.gateway.keys.authenticate(presented_key(h.get("authorization"), h.get("x-api-key")))
        narrow = h.get(POLICY_HEADER)
        return RequestContext(
            principal=principal,
            narrow_policy=narrow.strip() if narrow and narrow.strip() else None,
            explain=self.debug_headers and h.get(EXPLAIN_REQUEST, "").strip().lower() in ("1", "true", "yes"),
            started=started,
            quality=_quality(h.get(QUALITY_HEADER)),
            traceparent=h.get(TRACEPARENT),
        )

    async def stream(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None, extra: dict[str, str] | None = None,
        admitted: Pass | None = None,
    ) -> sse.EventStream:
        chunks, report = self.gateway.stream(req, ctx, plan, admitted)
        try:
            # Headers wait for the first token: a failover before it stays invisible.
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await close_iterator(chunks)
            raise
        return sse.EventStream(
            StreamFrames(self.frames(first, chunks, req, report, ctx), chunks),
            headers={**self.headers(report, streaming=True), **(extra or {}), "cache-control": "no-cache"},
        )

    async def frames(
        self, first: ChatChunk | None, chunks: AsyncIterator[ChatChunk], req: ChatRequest, report: Report,
        ctx: RequestContext,
    ) -> AsyncIterator[bytes]:
        name = report.model.name if report.model else req.model
        last: ChatChunk | None = None
        try:
            if first is not None:
                last = first
                yield self.frame(first, name)
            async for chunk in chunks:
                last = chunk
                if chunk["choices"]:
                    yield self.frame(chunk, name)
            if req.wants_usage_in_stream():
                yield sse.event(self.usage_chunk(last, name, report))
            yield sse.DONE
        except PolyrouteError as exc:
            # Never a truncated stream that ends like a success.
            yield sse.event(exc.to_body())
        except Exception:
            # A bug of ours mid-stream: logged with its traceback; the client still reads an error.
            log.exception("unexpected error while streaming route %s", report.route)
            yield sse.event(error_body_dict("The gateway hit an internal error; it has been logged.",
                                            "server_error", "internal_error"))
        finally:
            await close_iterator(chunks)

    @staticmethod
    def frame(chunk: ChatChunk, name: str) -> bytes:
        chunk["model"] = name
        chunk.pop("usage", None)
        return sse.event(chunk)

    @staticmethod
    def usage_chunk(last: ChatChunk | None, name: str, report: Report) -> dict[str, Any]:
        return {
            "id": last["id"] if last else "",
            "object": "chat.completion.chunk",
            "created": last["created"] if last else 0,
            "model": name,
            "choices": [],
            "usage": {
                **report.usage,
                **(report.details or {}),
                "cost_usd": round(report.cost_usd, 8),
                # An attempt was cut before it reported usage: its tokens are estimated.
                **({"estimated": True} if report.estimated else {}),
            },
            # The headers left at the first token; a rescue after it shows only here.
            "polyroute": {"attempts": len(report.attempts), "rescued": report.rescued},
        }

    def headers(self, report: Report, *, streaming: bool = False) -> dict[str, str]:
        h = {
            "x-polyroute-route": report.route,
            "x-polyroute-attempts": str(report.attempt_count()),
        }
        if report.model is not None:
            h["x-polyroute-model"] = report.model.name
            h["x-polyroute-backend"] = report.model.backend
        # A stream's cost is known only at its end: in its last chunk's usage, never as a header that says 0.
        attempts = report.attempts
        if not streaming and (report.usage["total_tokens"] or not attempts or attempts[-1].outcome == "ok"):
            h["x-polyroute-cost-usd"] = f"{report.cost_usd:.8f}"
        if report.dropped:
            h["x-polyroute-dropped-params"] = ",".join(sorted(report.dropped))
        h.update(self.attempt_log(report))
        return h

    def attempt_log(self, report: Report | AllAttemptsFailed) -> dict[str, str]:
        if not self.debug_headers or not report.attempts:
            return {}
        return {
            "x-polyroute-attempt-log": "; ".join(
                f"{a.backend}/{a.model} {a.outcome} {a.latency_ms:.0f}ms" for a in report.attempts
            )
        }


class StreamFrames:
    """A stream's frames. Closing it closes the upstream chunks too, even when no frame was asked
    for (the client left before the first write): the request then still finishes, once."""

    __slots__ = ("chunks", "frames")

    def __init__(self, frames: AsyncIterator[bytes], chunks: AsyncIterator[ChatChunk]) -> None:
        self.frames = frames
        self.chunks = chunks

    def __aiter__(self) -> StreamFrames:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self.frames.__anext__()

    async def aclose(self) -> None:
        try:
            await close_iterator(self.frames)
        finally:
            await close_iterator(self.chunks)

    async def unsent(self) -> None:
        """The client left before the head was sent: the chunks end with ``Unanswered``, so the request
        finishes as the client saw it (nothing: 499), even when its first token had come."""
        try:
            await close_iterator(self.frames)
        finally:
            athrow = getattr(self.chunks, "athrow", None)
            if athrow is None:
                await close_iterator(self.chunks)
            else:
                try:
                    await athrow(Unanswered())
                except (Unanswered, StopAsyncIteration):
                    pass  # ended with it (or had ended before)
                else:
                    await close_iterator(self.chunks)  # it went on past it: closed like any other


_WANTED_HEADERS = frozenset(
    {b"authorization", b"x-api-key", POLICY_HEADER.encode(), EXPLAIN_REQUEST.encode(), QUALITY_HEADER.encode(),
     TRACEPARENT.encode()}
)


def _quality(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if not 0.0 <= target <= 1.0:  # NaN fails too
        raise InvalidRequest(f"{QUALITY_HEADER} must be a number from 0 to 1, not {value.strip()[:40]!r}.")
    return target


def _limits(admitted: Pass | None, extra: dict[str, str]) -> dict[str, str]:
    """An error's headers with the key's limits, as every answer has them: after what its attempts cost once the
    request has been settled, else after its worst case (a stream's, from before it began, are in ``extra``)."""
    if admitted is None or (admitted.used is None and any(k.startswith("x-ratelimit-") for k in extra)):
        return extra
    return {**extra, **admitted.headers()}


def wanted_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers a chat request reads, in one pass (the first of repeated ones)."""
    out: dict[str, str] = {}
    for name, value in raw:
        if name in _WANTED_HEADERS:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out


def parse_request(body: bytes, bounds: Bounds | None = None) -> ChatRequest:
    """The request, validated; what would cost more than ``bounds`` allow is refused first."""
    bounds = bounds or Bounds()
    return validated(read_object(body, bounds), body, bounds)


def read_object(body: bytes, bounds: Bounds) -> dict[str, Any]:
    """The JSON object a body holds; one too deep for ``bounds`` is refused naming where."""
    if not body:
        raise InvalidRequest("Request body is empty; send a JSON object.")
    bounds.before_parsing(body)
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bounds.too_deep_to_parse(body, exc.pos) or InvalidRequest(
            f"Request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return raw


def validated(raw: dict[str, Any], body: bytes, bounds: Bounds) -> ChatRequest:
    """A parsed chat request checked against ``bounds`` (``body``: the bytes it came in), then validated."""
    bounds.check(raw, body)
    try:
        return ChatRequest.from_json(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def close_iterator(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
