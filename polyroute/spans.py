"""Each finished request as an OpenTelemetry trace, named as the GenAI semantic conventions name it.

One observer on the finish seam draws the request after it has ended, at the times it
happened: a SERVER span for the request (``chat {model asked for}``) and under it a
CLIENT span per attempt (``chat {upstream model}``), each given its own start and end.
Nothing is traced while the request runs, so the attempts pay nothing; the spans are
made once the answers of this turn of the event loop are written (as the access log
is), and exported by the SDK's batch processor from its own thread. A client that
sends ``traceparent`` gets the request's span as a child of its own.

    chat main          SERVER   gen_ai.request.model=main  gen_ai.response.model=echo  usage, cost, status
    ├── chat gpt-x     CLIENT   error.type=server_error    server.address=...   (failed, fell over)
    └── chat echo-1    CLIENT   gen_ai.response.model=echo-1                       (answered)

Only names from the config and what the client itself asked go into attributes:
never a secret, never the text of a prompt or an answer.

This module needs the ``otel`` extra; ``polyroute.tracing`` imports it only when traces are on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from polyroute.config import HttpBackendConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from polyroute.attempts import Report
    from polyroute.finish import Finished
    from polyroute.fleet import Fleet
    from polyroute.gateway import RequestContext

OPERATION = "chat"
_PROPAGATOR = TraceContextTextMapPropagator()


class SpanWriter:
    """The ``RequestObserver`` that turns each finished request into spans."""

    def __init__(self, fleet: Fleet, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("polyroute")
        self.models = fleet.models
        # Per backend: the provider's name and the server's address and port, as attributes.
        self.backends: dict[str, dict[str, Any]] = {}
        for name, adapter in fleet.adapters.items():
            cfg = adapter.config
            attrs: dict[str, Any] = {"gen_ai.provider.name": cfg.type, "gen_ai.system": cfg.type,
                                     "polyroute.backend": name}
            if isinstance(cfg, HttpBackendConfig):
                url = urlsplit(cfg.base_url)
                attrs["server.address"] = url.hostname or ""
                attrs["server.port"] = url.port or (443 if url.scheme == "https" else 80)
            self.backends[name] = attrs

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        try:
            asyncio.get_running_loop().call_soon(self.write, ctx, report, outcome)
        except RuntimeError:  # no loop (an embedded, synchronous caller): now, then
            self.write(ctx, report, outcome)

    def write(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        # The gateway times with the monotonic clock; spans want the wall clock, in nanoseconds.
        wall_now, mono_now = time.time_ns(), time.monotonic()

        def wall(mono: float) -> int:
            return wall_now - int((mono_now - mono) * 1e9)

        parent = _PROPAGATOR.extract({"traceparent": ctx.traceparent}) if ctx.traceparent else None
        asked = report.route or "-"
        start = wall(outcome.started)
        span = self.tracer.start_span(f"{OPERATION} {asked}", context=parent, kind=SpanKind.SERVER,
                                      start_time=start, attributes=self._request_attributes(ctx, report, outcome))
        if outcome.error is not None:
            span.set_attribute("error.type", outcome.error)
            span.set_status(Status(StatusCode.ERROR))
        inside = trace.set_span_in_context(span)
        for a in report.attempts:
            entry = self.models.get(a.model)
            upstream = entry.upstream if entry is not None else a.model
            began = wall(a.started) if a.started else start
            attrs = {**self.backends.get(a.backend, {}), "gen_ai.operation.name": OPERATION,
                     "gen_ai.request.model": upstream, "polyroute.model": a.model, "polyroute.outcome": a.outcome}
            child = self.tracer.start_span(f"{OPERATION} {upstream}", context=inside, kind=SpanKind.CLIENT,
                                           start_time=began, attributes=attrs)
            if a.outcome == "ok":
                child.set_attribute("gen_ai.response.model", upstream)
            else:
                child.set_attribute("error.type", a.outcome)
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=began + int(a.latency_ms * 1e6))
        span.end(end_time=wall(outcome.ended))

    def _request_attributes(self, ctx: RequestContext, report: Report, outcome: Finished) -> dict[str, Any]:
        p = ctx.principal
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.usage.input_tokens": report.usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": report.usage["completion_tokens"],
            "http.response.status_code": outcome.status,
            "polyroute.request_id": outcome.request_id,
            "polyroute.stream": outcome.stream,
            "polyroute.attempts": len(report.attempts),
            "polyroute.cost_usd": report.cost_usd,
        }
        if report.route:
            attrs["gen_ai.request.model"] = report.route
        if report.model is not None:
            attrs["gen_ai.response.model"] = report.model.name
            attrs.update(self.backends.get(report.model.backend, {}))
        if p.key is not None:
            attrs["polyroute.key"] = p.key  # the key's name, never its secret
        if p.team is not None:
            attrs["polyroute.team"] = p.team
        if outcome.ttft_ms is not None:
            attrs["polyroute.time_to_first_token_ms"] = round(outcome.ttft_ms, 3)
        attrs.update(_cache_attributes(report.details))
        return attrs

    def shutdown(self) -> None:
        """Export what is pending, then stop."""
        self.provider.shutdown()


# The provider's cache, as the GenAI conventions name it: gen_ai.usage.cache_read.input_tokens and
# gen_ai.usage.cache_creation.input_tokens, both counted in gen_ai.usage.input_tokens (OpenTelemetry's
# semantic-conventions registry, as its JavaScript package ships the names).
_CACHE_ATTRIBUTES = (("prompt_tokens_details", "cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
                     ("prompt_tokens_details", "cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"))


def _cache_attributes(details: dict[str, dict[str, int]] | None) -> dict[str, int]:
    if not details:
        return {}
    return {name: count for part, field, name in _CACHE_ATTRIBUTES
            if (count := details.get(part, {}).get(field))}
