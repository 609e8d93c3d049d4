"""What the gateway served lately: the Overview's minutes, and each model's last answers for Fleet.

The Overview counts finished requests in one ``Minute`` per wall-clock minute, for
the last day (``SPAN_MINUTES``): requests, failures (``errors``) and refusals apart
(``polyroute.tenancy.fault``), cost, tokens, and latency and time to first token of the
requests not refused as sparse histograms on a geometric scale (``RATIO`` apart),
so a percentile is read within that ratio and a day costs a bounded, small memory
whatever the traffic. A window's ``error_rate`` is its failures over the requests not
refused (what the gateway took on), so a client sending bad requests neither raises
nor dilutes it; ``refused_rate`` is its refusals over every request. The minutes are filled from the usage ledger
(``polyroute.console.ledger_tail``), which holds every worker's and replica's requests.

``Recent`` keeps each model's last ``PER_MODEL`` answers (time to first token,
tokens per second, whether it failed) for the Fleet page, from the same rows: every
worker's and replica's, and nothing on a request's own path.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from polyroute.finish import CLIENT_CLOSED_CODE
from polyroute.tenancy import fault
from polyroute.tenancy.rollup import histogram_percentile, latency_bucket
from polyroute.tenancy.stores import Traffic, UsageRow

SPAN_MINUTES = 24 * 60
PER_MODEL = 50
WINDOWS = {"5m": 300, "1h": 3600, "1d": 86400}


@dataclass(slots=True)
class Minute:
    start: int  # the minute, as seconds since the epoch
    requests: int = 0
    errors: int = 0  # failures
    refused: int = 0
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latency: Counter[int] = field(default_factory=Counter)
    ttft: Counter[int] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)

    def add(self, row: UsageRow) -> None:
        self.requests += 1
        refused = fault.refused(row.status, row.error)
        self.errors += fault.failed(row.status, row.error)
        self.refused += refused
        self.cost_usd += row.cost_usd
        self.tokens_in += row.tokens_in
        self.tokens_out += row.tokens_out
        if not refused:
            self.latency[latency_bucket(row.latency_ms)] += 1
            if row.ttft_ms is not None:
                self.ttft[latency_bucket(row.ttft_ms)] += 1
        if row.route:
            self.routes[row.route] += 1


def minutes_of(traffic: Traffic) -> dict[int, Minute]:
    """The minutes of rows the ledger summed itself (``LedgerStore.traffic``, asked with ``RATIO``)."""
    minutes = {start: Minute(start, requests, errors, refused, cost, tokens_in, tokens_out)
               for start, requests, errors, refused, cost, tokens_in, tokens_out in traffic.totals}
    for start, bucket, n in traffic.latency:
        if start in minutes:
            minutes[start].latency[bucket] += n
    for start, bucket, n in traffic.ttft:
        if start in minutes:
            minutes[start].ttft[bucket] += n
    for start, route, n in traffic.routes:
        if start in minutes:
            minutes[start].routes[route] += n
    return minutes


@dataclass(frozen=True, slots=True)
class Sample:
    failed: bool
    ttft_ms: float | None
    tokens_per_s: float | None


_FAILED = Sample(True, None, None)


class Recent:
    """Each model's last answers, as the ledger's rows tell them (``polyroute.console.ledger_tail``)."""

    def __init__(self) -> None:
        self._models: dict[str, deque[Sample]] = {}

    def add(self, row: UsageRow) -> None:
        """One finished request: a sample of the model that answered, and a failure of each that failed over."""
        if row.attempts.count("{") > 1 or (row.model is None and row.attempts != "[]"):
            try:
                attempts = orjson.loads(row.attempts)
            except orjson.JSONDecodeError:
                attempts = []
            for attempt in attempts if isinstance(attempts, list) else []:
                if (isinstance(attempt, dict) and attempt.get("outcome") != "ok" and attempt.get("model") != row.model
                        and isinstance(attempt.get("model"), str)):
                    self._sample(attempt["model"], _FAILED)
        if row.model is not None and row.error != CLIENT_CLOSED_CODE:  # a client that left tells nothing of the model
            failed = fault.failed(row.status, row.error)
            self._sample(row.model, Sample(failed, row.ttft_ms, _speed(row)))

    def _sample(self, model: str, sample: Sample) -> None:
        samples = self._models.get(model)
        if samples is None:
            samples = self._models[model] = deque(maxlen=PER_MODEL)
        samples.append(sample)

    def model(self, name: str) -> dict[str, Any]:
        samples = list(self._models.get(name, ()))
        ttfts = [s.ttft_ms for s in samples if s.ttft_ms is not None]
        speeds = [s.tokens_per_s for s in samples if s.tokens_per_s is not None]
        return {
            "answers": len(samples),
            "failures": sum(s.failed for s in samples),
            "ttft_ms_p50": round(statistics.median(ttfts), 1) if ttfts else None,
            "tokens_per_s_p50": round(statistics.median(speeds), 1) if speeds else None,
        }


def overview(minutes: Iterable[Minute], now: float) -> dict[str, Any]:
    """The Overview's windows (5 min, 1 h, 1 day) and the last hour minute by minute."""
    minutes = list(minutes)
    windows = {name: _window([m for m in minutes if m.start + 60 > now - span], span)
               for name, span in WINDOWS.items()}
    this_minute = int(now) // 60 * 60
    by_start = {m.start: m for m in minutes}
    series = []
    for i in range(59, -1, -1):
        m = by_start.get(this_minute - 60 * i)
        series.append({"at": this_minute - 60 * i, "requests": m.requests if m else 0,
                       "errors": m.errors if m else 0, "refused": m.refused if m else 0})
    return {"windows": windows, "per_minute": series}


def _speed(row: UsageRow) -> float | None:
    """Tokens a second after the first token (after the start, for an answer given whole)."""
    if not row.tokens_out:
        return None
    seconds = (row.latency_ms - (row.ttft_ms or 0.0)) / 1000
    return row.tokens_out / seconds if seconds > 0 else None


def _window(minutes: Iterable[Minute], span: int) -> dict[str, Any]:
    minutes = list(minutes)
    requests = sum(m.requests for m in minutes)
    errors = sum(m.errors for m in minutes)
    refused = sum(m.refused for m in minutes)
    taken_on = requests - refused
    routes: Counter[str] = Counter()
    latency: Counter[int] = Counter()
    ttft: Counter[int] = Counter()
    for m in minutes:
        routes.update(m.routes)
        latency.update(m.latency)
        ttft.update(m.ttft)
    total_routed = sum(routes.values())
    return {
        "seconds": span,
        "requests": requests,
        "requests_per_s": round(requests / span, 6),
        "errors": errors,
        "error_rate": round(errors / taken_on, 4) if taken_on else None,
        "refused": refused,
        "refused_rate": round(refused / requests, 4) if requests else None,
        "latency_ms_p50": histogram_percentile(latency, 0.50),
        "latency_ms_p95": histogram_percentile(latency, 0.95),
        "ttft_ms_p50": histogram_percentile(ttft, 0.50),
        "ttft_ms_p95": histogram_percentile(ttft, 0.95),
        "cost_usd": round(sum(m.cost_usd for m in minutes), 8),
        "tokens_in": sum(m.tokens_in for m in minutes),
        "tokens_out": sum(m.tokens_out for m in minutes),
        "routes": [{"route": r, "requests": n, "share": round(n / total_routed, 4)}
                   for r, n in routes.most_common()],
    }


