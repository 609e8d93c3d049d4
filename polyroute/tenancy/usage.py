"""Reports over the ledger: requests, tokens, cost, failures, refusals and latency percentiles per group.

``errors`` counts the requests the gateway or its upstreams failed, ``refused`` those that ended for the
client's own reasons, and p50/p95 are of the requests not refused (``polyroute.tenancy.fault``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from polyroute.tenancy import fault
from polyroute.tenancy.stores import UsageRow

GROUPS = ("key", "team", "model", "route", "day")
COLUMNS = ("group", "requests", "tokens_in", "tokens_out", "cost_usd", "errors", "refused", "p50_ms", "p95_ms")
_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before ``now``; or an ISO date/time."""
    m = _SINCE.match(text.strip())
    if m:
        try:
            return now - int(m.group(1)) * _UNIT[m.group(2)]
        except OverflowError:  # further back than a date can be: every row there is
            return datetime.min.replace(tzinfo=now.tzinfo)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since takes a span like 7d, 12h, 30m, 2w, or an ISO date; got {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=now.tzinfo)


def group_of(row: UsageRow, by: str) -> str:
    if by == "day":
        return row.at.strftime("%Y-%m-%d")
    value = {"key": row.key, "team": row.team, "model": row.model, "route": row.route}[by]
    return value or "-"


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile of values sorted ascending (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(int(-(-q * len(sorted_values) // 1)), 1)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def entry(group: str, requests: int, tokens_in: int, tokens_out: int, cost_usd: float, errors: int,
          refused: int, p50_ms: float, p95_ms: float) -> dict[str, Any]:
    """One row of a report, with ``COLUMNS`` as its keys, rounded alike whichever store summed it."""
    return {"group": group, "requests": requests, "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cost_usd": round(cost_usd, 8), "errors": errors, "refused": refused, "p50_ms": round(p50_ms, 1),
            "p95_ms": round(p95_ms, 1)}


def summarize(rows: Iterable[UsageRow], by: str) -> list[dict[str, Any]]:
    groups: dict[str, list[UsageRow]] = {}
    for row in rows:
        groups.setdefault(group_of(row, by), []).append(row)
    out = []
    for name in sorted(groups):
        g = groups[name]
        latencies = sorted(r.latency_ms for r in g if not fault.refused(r.status, r.error))
        out.append(entry(name, len(g), sum(r.tokens_in for r in g), sum(r.tokens_out for r in g),
                         sum(r.cost_usd for r in g), sum(1 for r in g if fault.failed(r.status, r.error)),
                         sum(1 for r in g if fault.refused(r.status, r.error)),
                         percentile(latencies, 0.50), percentile(latencies, 0.95)))
    return out


def as_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The rows of ``summarize`` as CSV, a header line first."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()
