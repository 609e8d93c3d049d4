"""Whether the gateway traces: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and OpenTelemetry is installed.

The switch is OpenTelemetry's own variable, and so is everything else about the export
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ...; the SDK reads them). Spans
go over OTLP/HTTP in protobuf, through the SDK's batch processor. Without the ``otel``
extra the gateway runs as before and says once, at start, why it does not trace.
The tracer provider is the gateway's own, not the process's global one, so a host
application's tracing is left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from polyroute.fleet import Fleet
    from polyroute.spans import SpanWriter

log = logging.getLogger("polyroute.tracing")

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_ENV = "OTEL_SERVICE_NAME"


def tracing_from_env(
    fleet: Fleet, env: Mapping[str, str] | None = None, exporter: SpanExporter | None = None
) -> SpanWriter | None:
    """The span-writing observer when traces are asked for, else None.

    ``exporter`` replaces the OTLP exporter (tests give the SDK's in-memory one).
    """
    env = os.environ if env is None else env
    if not env.get(ENDPOINT_ENV):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from polyroute.spans import SpanWriter
    except ImportError:
        log.warning("%s is set but OpenTelemetry is not installed, so nothing is traced: "
                    "pip install 'polyroute[otel]'", ENDPOINT_ENV)
        return None
    if exporter is None:
        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": env.get(SERVICE_ENV) or "polyroute"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # Not the endpoint itself: a URL may carry credentials.
    log.info("tracing on: spans are exported over OTLP/HTTP (%s)", ENDPOINT_ENV)
    return SpanWriter(fleet, provider)
