"""What one finished request costs each observer: ``python -m bench.observer_cost``.

Times, on this process, the call an observer makes per request at the finish seam:
the metrics observer (always on), the access log's line (on in ``polyroute serve``),
and, when the ``otel`` extra is installed, the span writer (on with
``OTEL_EXPORTER_OTLP_ENDPOINT``; measured with the SDK's in-memory exporter, so
the export itself, done by the SDK's own thread, is left out). A request that
failed over once and one answered at once are timed apart: the first has two attempts.

``polyroute serve --workers N`` keeps the counters in files shared by the workers; to
time that mode, run it as ``PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) python -m bench.observer_cost``.
"""

from __future__ import annotations

import argparse
import logging
import time
import timeit
from collections.abc import Callable
from functools import partial

from polyroute import config as cfg
from polyroute.attempts import Report
from polyroute.catalog import load_catalog
from polyroute.finish import Finished
from polyroute.gateway import Gateway, RequestContext
from polyroute.logs import AccessLog
from polyroute.metrics import Metrics
from polyroute.routing import Principal
from polyroute.types import make_usage

RAW = {
    "backends": {"f": {"type": "fake"}},
    "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
               "down": {"backend": "f", "upstream": "error-503"}},
    "routes": {"main": {"models": ["down", "echo"]}},
}


def request(gateway: Gateway, failed_over: bool) -> tuple[RequestContext, Report, Finished]:
    fleet = gateway.fleet
    now = time.monotonic()
    report = Report(route="main")
    if failed_over:
        report.record(fleet.models["down"], "server_error", now)
    report.record(fleet.models["echo"], "ok", now)
    report.model = fleet.models["echo"]
    report.bill(fleet.models["echo"], make_usage(120, 40))
    ctx = RequestContext(principal=Principal(key="app", team="web"), started=now)
    return ctx, report, Finished(ctx.request_id, 200, True, now, now + 0.2, now + 0.05)


def per_call_us(fn: Callable[[], None], number: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    gateway = Gateway.from_config(cfg.parse(RAW, source="<bench>", env={}), load_catalog())
    metrics = Metrics(gateway)
    access = AccessLog(logging.getLogger("bench.access"))
    access.line = lambda message: None  # the line formatted, not written (the writer thread does that)
    observers: dict[str, Callable[[RequestContext, Report, Finished], None]] = {
        "metrics (Metrics.count)": lambda ctx, report, outcome: metrics.count(report, outcome),
        "access log (AccessLog.write)": access.write,
    }
    try:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from polyroute.tracing import ENDPOINT_ENV, tracing_from_env

        exporter = InMemorySpanExporter()
        spans = tracing_from_env(gateway.fleet, {ENDPOINT_ENV: "http://127.0.0.1:4318"}, exporter)
        if spans is not None:
            observers["traces (SpanWriter.write)"] = spans.write
    except ImportError:
        spans = None
    for label, failed_over in (("one attempt", False), ("two attempts", True)):
        ctx, report, outcome = request(gateway, failed_over)
        for name, observe in observers.items():
            us = per_call_us(partial(observe, ctx, report, outcome), args.number, args.repeat)
            print(f"{name:32} {label:13} {us:7.2f} us per request")
            if spans is not None:
                exporter.clear()
    if spans is not None:
        spans.shutdown()


if __name__ == "__main__":
    main()
