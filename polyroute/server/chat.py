"""``POST /v1/chat/completions``: read, validate, hand to the gateway, frame the answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import ValidationError

from polyroute import logs
from polyroute.auth import presented_key
from polyroute.errors import AllAttemptsFailed, InvalidRequest, PolyrouteError
from polyroute.failover import Report
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan
from polyroute.routing.explain import header_value
from polyroute.server import sse
from polyroute.server.answers import Reply
from polyroute.server.errors import error_body_dict, error_response, from_validation
from polyroute.server.http11 import Request
from polyroute.types import ChatChunk, ChatRequest

log = logging.getLogger("polyroute.access")

# A client narrows its policy by naming another one; it can never widen it.
POLICY_HEADER = "x-polyroute-policy"
# A number in [0, 1]: the quality target of a "quality" route, kept within the route's bounds.
QUALITY_HEADER = "x-polyroute-quality"
# "1" asks for the routing decision, returned as compact JSON in EXPLAIN_RESPONSE.
EXPLAIN_REQUEST = "x-polyroute-explain"
EXPLAIN_RESPONSE = "x-polyroute-route-explain"


class ChatEndpoint:
    def __init__(self, gateway: Gateway, debug_headers: bool) -> None:
        self.gateway = gateway
        self.debug_headers = debug_headers
        # `polyroute serve`'s own logging: the access line skips the logging machinery.
        self.access_line = logs.direct_line(log)

    async def handle(self, request: Request) -> Reply | sse.EventStream:
        report: Report | None = None
        try:
            h = _wanted_headers(request.headers)
            ctx = await self.context(h)
            req = parse_request(request.body)
            plan = self.gateway.plan(req, ctx)
            extra = {EXPLAIN_RESPONSE: header_value(plan)} if ctx.explain else {}
            if req.stream:
                return await self.stream(req, ctx, plan, extra)
            resp, report = await self.gateway.complete(req, ctx, plan)
            self.log_later(report, req)
            return Reply(orjson.dumps(resp), headers={**self.headers(report), **extra})
        except AllAttemptsFailed as exc:
            return error_response(exc, {"x-polyroute-attempts": str(len(exc.attempts)), **self.attempt_log(exc)})
        except PolyrouteError as exc:
            return error_response(exc)

    async def context(self, h: dict[str, str]) -> RequestContext:
        """Who is asking (401 when keys are configured and none valid is sent), and what they asked of routing."""
        principal = self.gateway.keys.authenticate(presented_key(h.get("authorization"), h.get("x-api-key")))
        narrow = h.get(POLICY_HEADER)
        return RequestContext(
            principal=principal,
            narrow_policy=narrow.strip() if narrow and narrow.strip() else None,
            explain=self.debug_headers and h.get(EXPLAIN_REQUEST, "").strip().lower() in ("1", "true", "yes"),
            quality=_quality(h.get(QUALITY_HEADER)),
        )

    async def stream(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None, extra: dict[str, str] | None = None
    ) -> sse.EventStream:
        chunks, report = self.gateway.stream(req, ctx, plan)
        try:
            # Headers wait for the first token: a failover before it stays invisible.
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _close(chunks)
            raise
        return sse.EventStream(
            self.frames(first, chunks, req, report),
            headers={**self.headers(report), **(extra or {}), "cache-control": "no-cache"},
        )

    async def frames(
        self, first: ChatChunk | None, chunks: AsyncIterator[ChatChunk], req: ChatRequest, report: Report
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
            await _close(chunks)
            self.log_later(report, req)

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
                "cost_usd": round(report.cost_usd, 8),
                # An attempt was cut before it reported usage: its tokens are estimated.
                **({"estimated": True} if report.estimated else {}),
            },
            # The headers left at the first token; a rescue after it shows only here.
            "polyroute": {"attempts": len(report.attempts), "rescued": report.rescued},
        }

    def headers(self, report: Report) -> dict[str, str]:
        h = {
            "x-polyroute-route": report.route,
            "x-polyroute-attempts": str(report.attempt_count()),
        }
        if report.model is not None:
            h["x-polyroute-model"] = report.model.name
            h["x-polyroute-backend"] = report.model.backend
        if report.usage["total_tokens"] or not report.attempts or report.attempts[-1].outcome == "ok":
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

    def log_later(self, report: Report, req: ChatRequest) -> None:
        """Log the request once the answers of this turn of the event loop have been written.

        Answers come in bursts (every upstream answer that arrived since the last
        turn); formatting each one's line before writing it would keep the rest of
        the burst waiting.
        """
        if log.isEnabledFor(logging.INFO):
            asyncio.get_running_loop().call_soon(self.log, report, req)

    def log(self, report: Report, req: ChatRequest) -> None:
        who = f"{report.model.backend}/{report.model.name}" if report.model else "-"
        tries = ", ".join(f"{a.backend}/{a.model}:{a.outcome}:{a.latency_ms:.0f}ms" for a in report.attempts)
        line = (
            f"chat route={report.route} answered_by={who} stream={req.stream} attempts={len(report.attempts)} "
            f"[{tries}] tokens={report.usage['total_tokens']} cost_usd={report.cost_usd:.8f}"
        )
        if self.access_line is not None:
            self.access_line(line)
        else:
            log.info("%s", line)


_WANTED_HEADERS = frozenset(
    {b"authorization", b"x-api-key", POLICY_HEADER.encode(), EXPLAIN_REQUEST.encode(), QUALITY_HEADER.encode()}
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


def _wanted_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers a chat request reads, in one pass (the first of repeated ones)."""
    out: dict[str, str] = {}
    for name, value in raw:
        if name in _WANTED_HEADERS:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out


def parse_request(body: bytes) -> ChatRequest:
    if not body:
        raise InvalidRequest("Request body is empty; send a JSON object.")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    try:
        return ChatRequest.from_json(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def _close(it: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
