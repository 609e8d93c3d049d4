"""Summaries of latency samples: the percentiles every figure is built from."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Milliseconds: count, mean, min, p50, p90, p99, p99.9, max."""
    values = sorted(seconds)
    out: dict[str, float] = {"count": float(len(values))}
    if not values:
        return out
    out["mean"] = sum(values) / len(values) * 1000
    out["min"] = values[0] * 1000
    for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
        out[name] = percentile(values, q) * 1000
    out["max"] = values[-1] * 1000
    return out


def difference(a: float | None, b: float | None) -> float | None:
    """a - b, or None when either is missing or not a number."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return a - b


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b
