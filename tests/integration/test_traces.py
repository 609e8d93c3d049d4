"""OpenTelemetry traces: a span per request and a child per attempt, with the GenAI conventions' attributes."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from polyroute.spans import SpanWriter
from polyroute.tracing import ENDPOINT_ENV, tracing_from_env
from tests.support.fault_upstream import FaultUpstream, fault_backends
from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
KEY = "sk-traced-0123456789abcdef"


def raw(up: FaultUpstream) -> dict[str, Any]:
    return {
        "backends": dict(fault_backends(up, "flaky", "steady")),
        "models": {"first": {"backend": "flaky", "upstream": "status-503"},
                   "second": {"backend": "steady", "upstream": "ok", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        "routes": {"main": {"models": ["first", "second"]}},
        "keys": {"app": {"secret": "env:APP_KEY", "team": "web"}},
    }


@pytest.fixture
def traced(up: FaultUpstream) -> Iterator[tuple[Live, InMemorySpanExporter, SpanWriter]]:
    exporter = InMemorySpanExporter()
    with live_gateway(raw(up), env={"APP_KEY": KEY}) as g:
        spans = tracing_from_env(g.gateway.fleet, {ENDPOINT_ENV: "http://127.0.0.1:4318"}, exporter)
        assert spans is not None
        g.gateway.observers.add(spans)
        yield g, exporter, spans
        spans.shutdown()


def chat(live: Live, stream: bool = False, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "main", "stream": stream, "messages": [{"role": "user", "content": "trace me"}]}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {KEY}", **(headers or {})})


def collected(exporter: InMemorySpanExporter, spans: SpanWriter, n: int) -> list[ReadableSpan]:
    def enough() -> bool:
        spans.provider.force_flush()
        return len(exporter.get_finished_spans()) >= n
    wait_until(enough, what=f"{n} spans")
    return list(exporter.get_finished_spans())


def test_a_request_that_fails_over_is_one_span_with_two_attempt_children(
    traced: tuple[Live, InMemorySpanExporter, SpanWriter], up: FaultUpstream
) -> None:
    live, exporter, spans = traced
    resp = chat(live, headers={"traceparent": TRACEPARENT})
    assert resp.status_code == 200
    found = collected(exporter, spans, 3)
    [request] = [s for s in found if s.kind is SpanKind.SERVER]
    attempts = sorted((s for s in found if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert len(found) == 3 and len(attempts) == 2
    # The client's trace goes on: same trace id, its span is the parent.
    ctx = request.get_span_context()
    assert ctx is not None and format(ctx.trace_id, "032x") == TRACE_ID
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT_ID
    assert request.name == "chat main"
    a = dict(request.attributes or {})
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "main"
    assert a["gen_ai.response.model"] == "second"
    assert a["gen_ai.usage.input_tokens"] == resp.json()["usage"]["prompt_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == resp.json()["usage"]["completion_tokens"] > 0
    assert a["gen_ai.provider.name"] == "openai" and a["server.address"] == "127.0.0.1"
    assert a["polyroute.key"] == "app" and a["polyroute.team"] == "web" and a["http.response.status_code"] == 200
    assert a["polyroute.request_id"] == resp.headers["x-polyroute-request-id"]
    assert "error.type" not in a and request.status.status_code is not StatusCode.ERROR
    failed, answered = attempts
    for child in attempts:
        assert child.parent is not None and child.parent.span_id == ctx.span_id
        assert child.context is not None and child.context.trace_id == ctx.trace_id
        assert (request.start_time or 0) <= (child.start_time or 0) <= (child.end_time or 0) <= (request.end_time or 0)
    f, o = dict(failed.attributes or {}), dict(answered.attributes or {})
    assert failed.name == "chat status-503" and f["gen_ai.request.model"] == "status-503"
    assert f["polyroute.backend"] == "flaky" and f["error.type"] == "server_error"
    assert failed.status.status_code is StatusCode.ERROR
    assert answered.name == "chat ok" and o["gen_ai.response.model"] == "ok" and o["polyroute.backend"] == "steady"
    assert o["server.address"] == "127.0.0.1" and o["server.port"] == up.port
    # Names only: no secret in any attribute.
    assert not any(KEY in str(v) for s in found for v in (s.attributes or {}).values())


def test_without_a_valid_traceparent_a_request_starts_its_own_trace_and_streams_show_ttft(
    traced: tuple[Live, InMemorySpanExporter, SpanWriter]
) -> None:
    live, exporter, spans = traced
    with httpx.stream("POST", f"{live.base_url}/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "main", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        r.read()
    assert r.status_code == 200
    assert chat(live, headers={"traceparent": "not-a-trace-context"}).status_code == 200
    found = collected(exporter, spans, 6)
    requests = [s for s in found if s.kind is SpanKind.SERVER]
    assert len(requests) == 2 and all(s.parent is None for s in requests)
    assert requests[0].context is not None and requests[1].context is not None
    assert requests[0].context.trace_id != requests[1].context.trace_id
    [request] = [s for s in requests if dict(s.attributes or {})["polyroute.stream"]]
    assert dict(request.attributes or {})["polyroute.time_to_first_token_ms"] >= 0


def test_a_refused_request_is_a_span_with_its_error_type(
    traced: tuple[Live, InMemorySpanExporter, SpanWriter]
) -> None:
    live, exporter, spans = traced
    resp = httpx.post(f"{live.base_url}/chat/completions", timeout=10, headers={"authorization": "Bearer wrong"},
                      json={"model": "main", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 401
    [request] = collected(exporter, spans, 1)
    assert dict(request.attributes or {})["error.type"] == "invalid_api_key"
    assert request.status.status_code is StatusCode.ERROR and "wrong" not in str(request.attributes)


def test_no_endpoint_no_traces(up: FaultUpstream) -> None:
    with live_gateway(raw(up), env={"APP_KEY": KEY}) as g:
        assert tracing_from_env(g.gateway.fleet, {}) is None
        assert not any(isinstance(o, SpanWriter) for o in g.gateway.observers._all)


def test_without_opentelemetry_installed_the_gateway_serves_and_says_why_it_does_not_trace(
    up: FaultUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry... raises ImportError
    monkeypatch.delitem(sys.modules, "polyroute.spans", raising=False)
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:4318")
    with caplog.at_level(logging.WARNING, "polyroute.tracing"), live_gateway(raw(up), env={"APP_KEY": KEY}) as g:
        assert chat(g).status_code == 200
    assert "OpenTelemetry is not installed" in caplog.text and "polyroute[otel]" in caplog.text


class _Collector(BaseHTTPRequestHandler):
    """A fake OTLP/HTTP collector: keeps what is posted to /v1/traces."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_with_the_endpoint_set_spans_reach_an_otlp_collector(
    up: FaultUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type("Collector", (_Collector,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(ENDPOINT_ENV, f"http://127.0.0.1:{server.server_address[1]}")
        with live_gateway(raw(up), env={"APP_KEY": KEY}) as g:
            assert chat(g, headers={"traceparent": TRACEPARENT}).status_code == 200
        # The gateway's shutdown exported what was pending.
        received: list[tuple[str, str, bytes]] = handler.received
        assert received and all(path == "/v1/traces" for path, _, _ in received)
        assert received[0][1] == "application/x-protobuf"
        names = []
        for _, _, body in received:
            export = ExportTraceServiceRequest.FromString(body)
            for rs in export.resource_spans:
                service = {kv.key: kv.value.string_value for kv in rs.resource.attributes}["service.name"]
                assert service == "polyroute"
                names += [(s.name, s.trace_id.hex()) for ss in rs.scope_spans for s in ss.spans]
        assert sorted(names) == sorted([("chat main", TRACE_ID), ("chat status-503", TRACE_ID), ("chat ok", TRACE_ID)])
    finally:
        server.shutdown()
        server.server_close()


def test_the_provider_cache_s_tokens_are_span_attributes() -> None:
    """Claude's cache reads and writes (as its adapter reports them) under the GenAI conventions' names."""
    from polyroute.spans import _cache_attributes

    details = {"prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 600, "cache_write_1h_tokens": 200}}
    assert _cache_attributes(details) == {"gen_ai.usage.cache_read.input_tokens": 300,
                                          "gen_ai.usage.cache_creation.input_tokens": 600}
    assert _cache_attributes(None) == {} and _cache_attributes({"prompt_tokens_details": {"cached_tokens": 0}}) == {}
