"""Prometheus metrics: counted by one observer on the finish seam, the rest read when scraped.

Per finished request (``Metrics.count``, on the event loop once the answer is written):

    polyroute_requests_total{route, model, status}            model: who answered, "-" for nobody
    polyroute_attempts_total{backend, model, outcome}         outcome: "ok" or the error's outcome
    polyroute_tokens_total{route, model, type}                type: "input" or "output"
    polyroute_cost_usd_total{route, model}
    polyroute_request_duration_seconds{route, model}          histogram, arrival to last byte
    polyroute_time_to_first_token_seconds{route, model}       histogram, streams only
    polyroute_request_outcomes_total{route, outcome}          outcome: "answered", "failed" or "refused"

An outcome is ``polyroute.tenancy.fault``'s rule, the one the ledger and its reports use:
"refused" is the client's own doing (a bad key, a bad body, its own limit), "failed" the
gateway's or its upstreams'. Only those two are counted, on the path of a request that did
not end well; "answered" is what is left of ``polyroute_requests_total`` when scraped, so a
request answered costs nothing more here.

Per connection, by the HTTP server (``polyroute.server.http11``), on its error and close paths:

    polyroute_connections_closed_total{reason}                ``CLOSE_REASONS``
    polyroute_connections_open                                read when scraped

Read at each scrape (``Metrics.refresh``, then ``Metrics.render``), from the state the
gateway keeps anyway:

    polyroute_breaker_state{scope, name}                      0 closed, 1 half-open, 2 open
    polyroute_budget_remaining_usd{scope, name}               keys and teams with a budget
    polyroute_ledger_queue_depth                              rows not yet committed

Every label value is a name from the config or the store (a route, a model, a backend,
a key's or a team's name) or a fixed word: never a secret, and never what a client
wrote (a model name nobody configured is counted under route "-"), so the series stay few.
The children of each label set are looked up once and kept, so a request costs a dict
lookup and the increments, not prometheus-client's label handling.

With ``polyroute serve --workers N`` a scrape reaches one worker, so the counters and
histograms of every worker are kept in one directory (prometheus-client's multiprocess
mode, ``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor: ``shared_across_workers``)
and summed when scraped; a worker that died still counts. The gauges read at scrape
time are those of the worker that answers (so is ``polyroute_connections_open``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from polyroute.breakers import State, backend_key, model_key
from polyroute.tenancy.fault import refused

if TYPE_CHECKING:
    from polyroute.attempts import Report
    from polyroute.finish import Finished
    from polyroute.gateway import Gateway, RequestContext
    from polyroute.server.http11 import Shared

NOBODY = "-"
# prometheus-client's own variable: where the processes of one server keep their counters.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_VALUES = {State.CLOSED: 0.0, State.HALF_OPEN: 1.0, State.OPEN: 2.0}
ANSWERED, FAILED, REFUSED = "answered", "failed", "refused"
# Why the HTTP server ended a connection (or refused a request before the app saw it):
CLOSE_REASONS = (
    "send_timeout",        # its client took none of the bytes waiting for it for send_timeout: reset
    "header_timeout",      # 408: a head not whole within header_timeout
    "body_timeout",        # 408: a body not whole within body_timeout
    "body_too_large",      # 413 (a body read to its end and dropped may keep its connection)
    "head_too_large",      # 431
    "bad_request",         # 400: bytes that are not HTTP/1.1, or a body in too many pieces
    "unsupported_coding",  # 415 Content-Encoding, 501 Transfer-Encoding
    "expect_refused",      # a client waiting on Expect: 100-continue refused by its head (a wrong key)
    "internal_error",      # 500: a bug of ours while reading a request
    "connection_limit",    # closed at once: as many connections open as the file limit allows
    "client_reset",        # the client reset the connection (or it failed under us)
)


@dataclass(frozen=True, slots=True)
class _Series:
    """The children of one (route, model, status): what a request increments."""

    requests: Counter
    tokens_in: Counter
    tokens_out: Counter
    cost: Counter
    latency: Histogram
    ttft: Histogram


class _Scraped(Collector):
    """The gauges read from the gateway's state at scrape time (filled by ``Metrics.refresh``)."""

    def __init__(self) -> None:
        self.breakers: list[tuple[str, str, float]] = []  # (scope, name, value)
        self.budgets: list[tuple[str, str, float]] = []
        self.ledger_depth: int | None = None

    def collect(self) -> Iterator[Metric]:
        breakers = GaugeMetricFamily("polyroute_breaker_state",
                                     "Circuit breaker of a backend or model: 0 closed, 1 half-open, 2 open.",
                                     labels=("scope", "name"))
        for scope, name, value in self.breakers:
            breakers.add_metric((scope, name), value)
        yield breakers
        budgets = GaugeMetricFamily("polyroute_budget_remaining_usd",
                                    "USD left in the current budget period of a key or team.",
                                    labels=("scope", "name"))
        for scope, name, value in self.budgets:
            budgets.add_metric((scope, name), value)
        yield budgets
        if self.ledger_depth is not None:
            yield GaugeMetricFamily("polyroute_ledger_queue_depth",
                                    "Usage rows waiting to be committed to the ledger.", value=self.ledger_depth)


class ConnectionCloses:
    """The HTTP server's ``polyroute_connections_closed_total``: one per server, counted on its error and close
    paths only. A counter of prometheus-client's, not an int read when scraped, so that with several workers
    each one's count reaches the directory they share (it is summed there like the request counters)."""

    def __init__(self) -> None:
        # In no registry of its own: ``Metrics`` shows it (one process: in its registry; several: the shared
        # directory's sum, through ``Metrics.shown``).
        self.family = Counter("polyroute_connections_closed",
                              "Connections the HTTP server ended, or requests it refused before the app, by reason.",
                              ("reason",), registry=None)
        self._reasons = {reason: self.family.labels(reason) for reason in CLOSE_REASONS}

    def count(self, reason: str) -> None:
        self._reasons[reason].inc()


class Metrics:
    """The ``RequestObserver`` behind ``GET /metrics``, with its own registry (one per gateway)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.routes = frozenset(gateway.fleet.routes)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("polyroute_requests", "Requests finished, by route, answering model and status.",
                                ("route", "model", "status"), registry=r)
        self.attempts = Counter("polyroute_attempts", "Attempts at a backend's model, by how they ended.",
                                ("backend", "model", "outcome"), registry=r)
        self.tokens = Counter("polyroute_tokens", "Tokens billed, input (prompt) and output (completion).",
                              ("route", "model", "type"), registry=r)
        self.cost = Counter("polyroute_cost_usd", "Cost in USD at the catalog's prices.", ("route", "model"),
                            registry=r)
        self.latency = Histogram("polyroute_request_duration_seconds",
                                 "Seconds from a request's arrival to its end.", ("route", "model"),
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("polyroute_time_to_first_token_seconds",
                              "Seconds from a stream's arrival to its first token.", ("route", "model"),
                              buckets=TTFT_BUCKETS, registry=r)
        self.scraped = _Scraped()
        r.register(self.scraped)
        # What a scrape shows: this registry, or with several workers, the sum of every worker's
        # counters and histograms, and this worker's gauges.
        self.shown = r
        if os.environ.get(MULTIPROCESS_ENV):
            self.shown = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.shown)  # type: ignore[no-untyped-call]
            self.shown.register(self.scraped)
        # The HTTP server's (``polyroute.server.http11.Shared``): with several workers, summed with the rest.
        self.closes = ConnectionCloses()
        if self.shown is r:
            r.register(self.closes.family)
        self.outcomes = Counter("polyroute_request_outcomes",
                                "Requests finished, by route and outcome: answered, failed (the gateway's or its "
                                "upstreams'), or refused (the client's own doing).", ("route", "outcome"), registry=r)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._attempts: dict[tuple[str, str, str], Counter] = {}
        # Made at once, so that every route shows 0 before its first failure (a rate needs the series before).
        self._outcomes = {(route, outcome): self.outcomes.labels(route, outcome)
                          for route in (*sorted(self.routes), NOBODY) for outcome in (FAILED, REFUSED)}

    # -- the finish seam ------------------------------------------------------------------------

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        # Counted once the answers of this turn of the event loop are written, as the access log is.
        try:
            asyncio.get_running_loop().call_soon(self.count, report, outcome)
        except RuntimeError:  # no loop (an embedded, synchronous caller): now, then
            self.count(report, outcome)

    def count(self, report: Report, outcome: Finished) -> None:
        model = report.model.name if report.model is not None else NOBODY
        # What a client named without the config defining it is not a label: it could be anything.
        route = report.route if report.route in self.routes else NOBODY
        key = (route, model, outcome.status)
        series = self._series.get(key) or self._new_series(key)
        if outcome.error is not None or outcome.status >= 400:
            # Before the request's own count: a scrape between the two sees "answered" one short, never one
            # over and then back (a counter that falls would read as a reset).
            self._outcomes[route, REFUSED if refused(outcome.status, outcome.error) else FAILED].inc()
        series.requests.inc()
        usage = report.usage
        if usage["prompt_tokens"]:
            series.tokens_in.inc(usage["prompt_tokens"])
        if usage["completion_tokens"]:
            series.tokens_out.inc(usage["completion_tokens"])
        if report.cost_usd:
            series.cost.inc(report.cost_usd)
        series.latency.observe(outcome.ended - outcome.started)
        if outcome.first_token_at is not None:
            series.ttft.observe(outcome.first_token_at - outcome.started)
        for a in report.attempts:
            akey = (a.backend, a.model, a.outcome)
            counter = self._attempts.get(akey)
            if counter is None:
                counter = self._attempts[akey] = self.attempts.labels(*akey)
            counter.inc()

    def _new_series(self, key: tuple[str, str, int]) -> _Series:
        route, model, status = key
        series = self._series[key] = _Series(
            self.requests.labels(route, model, str(status)),
            self.tokens.labels(route, model, "input"),
            self.tokens.labels(route, model, "output"),
            self.cost.labels(route, model),
            self.latency.labels(route, model),
            self.ttft.labels(route, model),
        )
        return series

    # -- the scrape -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the breakers, the budgets and the ledger, for the next ``render``."""
        gateway = self.gateway
        fleet = gateway.fleet
        views = {v.key: v.state for v in await gateway.failover.health.store.snapshot()}
        self.scraped.breakers = [
            *(("backend", b, BREAKER_VALUES[views.get(backend_key(b), State.CLOSED)]) for b in fleet.adapters),
            *(("model", m, BREAKER_VALUES[views.get(model_key(m), State.CLOSED)]) for m in fleet.models),
        ]
        self.scraped.budgets = await self._budgets()
        ledger = gateway.tenancy.ledger
        self.scraped.ledger_depth = ledger.depth() if ledger is not None else None

    async def _budgets(self) -> list[tuple[str, str, float]]:
        quota = self.gateway.tenancy.quota
        if quota is None:
            return []
        scopes = self.gateway.keys.budgeted()
        reads = await asyncio.gather(*(
            quota.remaining(name, None) if kind == "key" else quota.remaining(None, name) for kind, name, _ in scopes
        ))
        return [(kind, name, float(left[kind]["remaining_usd"]))
                for (kind, name, _), left in zip(scopes, reads, strict=True) if kind in left]

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(_WithoutCreated(_WithAnswered(self.shown)))

    def watch_server(self, shared: Shared) -> None:
        """The HTTP server this process runs (``polyroute.server.serving``): its open connections are shown."""
        self.shown.register(_Open(lambda: len(shared.connections)))


@contextmanager
def shared_across_workers() -> Iterator[None]:
    """For a supervisor of worker processes: their metrics go to one fresh directory, removed after.

    Set before the workers start (they read it when they import prometheus-client). A
    directory the operator set already is used as it is.
    """
    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="polyroute-metrics-")
    os.environ[MULTIPROCESS_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


class _Open(Collector):
    """The server's open connections, read when scraped (with several workers: the worker that answers)."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("polyroute_connections_open", "Client connections open now.", value=self.count())


class _WithAnswered(Collector):
    """The registry's metrics with ``polyroute_request_outcomes_total{outcome="answered"}`` added: per route, the
    requests counted less those failed or refused (summed over the workers first, when there are several)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        metrics = list(self.registry.collect())
        requests: dict[str, float] = {}
        for metric in metrics:
            if metric.name == "polyroute_requests":
                for s in metric.samples:
                    if s.name == "polyroute_requests_total":
                        requests[s.labels["route"]] = requests.get(s.labels["route"], 0.0) + s.value
        for metric in metrics:
            if metric.name == "polyroute_request_outcomes":
                answered = dict.fromkeys((s.labels["route"] for s in metric.samples), 0.0) | requests
                for s in metric.samples:
                    if s.name == "polyroute_request_outcomes_total":
                        answered[s.labels["route"]] -= s.value
                for route, count in sorted(answered.items()):
                    metric.add_sample("polyroute_request_outcomes_total",
                                      {"route": route, "outcome": ANSWERED}, max(count, 0.0))
            yield metric


class _WithoutCreated:
    """A registry's metrics without the ``_created`` series prometheus-client adds to counters and
    histograms: Prometheus would keep each as one more series, and rates do not need them.
    (The library's own switch for this is process-wide, which would reach a host application's metrics.)"""

    def __init__(self, registry: Collector) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield kept
