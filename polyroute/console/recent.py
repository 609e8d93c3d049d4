"""What the gateway served lately: the Overview's minutes, and each model's last answers for Fleet.

The Overview counts finished requests in one ``Minute`` per wall-clock minute, for
the last day (``SPAN_MINUTES``): requests, errors, cost, tokens, and latency and
time to first token as sparse histograms on a geometric scale (``RATIO`` apart),
so a percentile is read within that ratio and a day costs a bounded, small memory
whatever the traffic. The minutes are filled from the usage ledger
(``polyroute.console.ledger_tail``), which holds every worker's and replica's requests.

``Recent`` observes finished requests and keeps each model's last ``PER_MODEL``
answers (time to first token, tokens per second, whether it failed) for the Fleet
page. Those are this process's: with ``--workers N`` each worker keeps its own.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyroute.finish import Finished
from polyroute.tenancy.stores import UsageRow

if TYPE_CHECKING:
    from polyroute.failover import Report
    from polyroute.gateway import RequestContext

SPAN_MINUTES = 24 * 60
PER_MODEL = 50
RATIO = 1.1  # histogram buckets: [RATIO**i, RATIO**(i+1)) ms
WINDOWS = {"5m": 300, "1h": 3600, "1d": 86400}


def _bucket(ms: float) -> int:
    return 0 if ms < 1 else int(math.log(ms, RATIO)) + 1


def _upper(index: int) -> float:
    return 1.0 if index == 0 else RATIO ** index


@dataclass(slots=True)
class Minute:
    start: int  # the minute, as seconds since the epoch
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latency: Counter[int] = field(default_factory=Counter)
    ttft: Counter[int] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)

    def add(self, row: UsageRow) -> None:
        self.requests += 1
        self.errors += row.status >= 400 or row.error is not None
        self.cost_usd += row.cost_usd
        self.tokens_in += row.tokens_in
        self.tokens_out += row.tokens_out
        self.latency[_bucket(row.latency_ms)] += 1
        if row.ttft_ms is not None:
            self.ttft[_bucket(row.ttft_ms)] += 1
        if row.route:
            self.routes[row.route] += 1


# One answer of a model, kept raw (the event loop's share): (failed, started, first token at, ended,
# completion tokens); a failed attempt that another model rescued is (True, None, None, None, 0).
_Sample = tuple[bool, float | None, float | None, float | None, int]
_FAILED: _Sample = (True, None, None, None, 0)


class Recent:
    """A ``RequestObserver``: each model's last answers."""

    def __init__(self) -> None:
        self._models: dict[str, deque[_Sample]] = {}

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        model = report.model
        name = None if model is None else model.name
        attempts = report.attempts
        if len(attempts) > 1 or (attempts and attempts[0].outcome != "ok"):
            for attempt in attempts:
                if attempt.outcome != "ok" and attempt.model != name:
                    self._sample(attempt.model, _FAILED)
        if name is not None:
            failed = outcome.status >= 400 or outcome.error is not None
            self._sample(name, (failed, outcome.started, outcome.first_token_at, outcome.ended,
                                report.usage["completion_tokens"]))

    def _sample(self, model: str, sample: _Sample) -> None:
        samples = self._models.get(model)
        if samples is None:
            samples = self._models[model] = deque(maxlen=PER_MODEL)
        samples.append(sample)

    def model(self, name: str) -> dict[str, Any]:
        samples = list(self._models.get(name, ()))
        ttfts = [(first - started) * 1000 for _, started, first, _, _ in samples
                 if first is not None and started is not None]
        speeds = [s for sample in samples if (s := _speed(sample)) is not None]
        return {
            "answers": len(samples),
            "failures": sum(failed for failed, *_ in samples),
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
                       "errors": m.errors if m else 0})
    return {"windows": windows, "per_minute": series}


def _speed(sample: _Sample) -> float | None:
    """Tokens a second after the first token (after the start, for an answer given whole)."""
    _, started, first_token_at, ended, tokens = sample
    if not tokens or started is None or ended is None:
        return None
    seconds = ended - (first_token_at if first_token_at is not None else started)
    return tokens / seconds if seconds > 0 else None


def _window(minutes: Iterable[Minute], span: int) -> dict[str, Any]:
    minutes = list(minutes)
    requests = sum(m.requests for m in minutes)
    errors = sum(m.errors for m in minutes)
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
        "error_rate": round(errors / requests, 4) if requests else None,
        "latency_ms_p50": percentile(latency, 0.50),
        "latency_ms_p95": percentile(latency, 0.95),
        "ttft_ms_p50": percentile(ttft, 0.50),
        "ttft_ms_p95": percentile(ttft, 0.95),
        "cost_usd": round(sum(m.cost_usd for m in minutes), 8),
        "tokens_in": sum(m.tokens_in for m in minutes),
        "tokens_out": sum(m.tokens_out for m in minutes),
        "routes": [{"route": r, "requests": n, "share": round(n / total_routed, 4)}
                   for r, n in routes.most_common()],
    }


def percentile(histogram: Counter[int], q: float) -> float | None:
    """The upper edge of the bucket holding the ``q`` quantile (nearest rank); None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(math.ceil(q * total), 1)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(_upper(index), 1)
    return None  # unreachable: the loop reaches ``total``
