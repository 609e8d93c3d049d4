"""The data behind each console page, as plain JSON-ready dicts, read from the gateway's own parts.

Each function takes what it reads (the gateway, rows of the ledger, results of the
eval store) and returns what a page shows, so another source (a shared ledger,
a metrics registry) plugs in by handing over the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from polyroute.console.recent import Recent

if TYPE_CHECKING:
    from polyroute.gateway import Gateway

# Spans the Usage page offers, and the width of one step of its chart in each.
SPANS = {"1h": (timedelta(hours=1), timedelta(minutes=5)), "1d": (timedelta(days=1), timedelta(hours=1)),
         "7d": (timedelta(days=7), timedelta(hours=6)), "30d": (timedelta(days=30), timedelta(days=1))}
BY = ("team", "key", "model", "route")
TOP_GROUPS = 8  # groups drawn apart in the chart; the rest are summed as "other"


def healthy(breaker: dict[str, Any], backend: dict[str, Any]) -> bool:
    """A model serves when its own breaker and its backend's are closed and the backend is ready (has its key)."""
    return breaker.get("state") == "closed" and backend.get("state") == "closed" and bool(backend.get("ready", True))


def failing(gateway: Gateway, health: dict[str, Any]) -> int:
    """How many models do not serve now, by their own breaker or their backend's: as the Fleet page shows them."""
    return sum(1 for name, entry in gateway.fleet.models.items()
               if not healthy(health["models"].get(name, {}), health["backends"].get(entry.backend, {})))


def fleet(gateway: Gateway, health: dict[str, Any], recent: Recent) -> dict[str, Any]:
    """Every model: its facts, its breaker and its backend's, its recent speed."""
    models = []
    for name, entry in gateway.fleet.models.items():
        breaker = health["models"].get(name, {})
        backend = health["backends"].get(entry.backend, {})
        out = breaker if breaker.get("state") != "closed" else backend
        models.append({
            "name": name, **entry.describe(),
            "breaker": breaker, "backend_breaker": backend,
            "healthy": healthy(breaker, backend),
            # What failed, in the upstream's or the adapter's words, and why this scope was charged.
            "why": " · ".join(str(out[k]) for k in ("reason", "detail", "why") if out.get(k)) or None,
            "recent": recent.model(name),
        })
    return {"status": health["status"], "models": models}


def routes(gateway: Gateway) -> list[dict[str, Any]]:
    out = []
    for name, route in gateway.fleet.routes.items():
        rc = route.config
        out.append({"name": name, "strategy": rc.strategy, "policy": rc.policy,
                    "candidates": [{"model": m.name, "backend": m.backend, "locality": m.locality,
                                    "price_per_mtok": {"input": m.input_per_mtok, "output": m.output_per_mtok}}
                                   for m in route.models]})
    return out


def start_of(span: str, now: datetime) -> datetime:
    """Where a span's chart begins: on a whole step (hour, day) before ``now``, so steps are whole."""
    length, step = SPANS[span]
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    return epoch + (now - length - epoch) // step * step


def usage(totals: list[dict[str, Any]], costs: Iterable[tuple[str, int, float]], span: str, by: str,
          now: datetime) -> dict[str, Any]:
    """Totals per group (``LedgerStore.summary``), and cost per step of time per group (``cost_by_step``):
    the top groups, the rest as "other"."""
    step = SPANS[span][1]
    since = start_of(span, now)
    ranked = [t["group"] for t in sorted(totals, key=lambda t: -t["cost_usd"])]
    shown = ranked[:TOP_GROUPS]
    steps = int((now - since) / step) + 1
    series: dict[str, list[float]] = {g: [0.0] * steps for g in shown}
    if len(ranked) > TOP_GROUPS:
        series["other"] = [0.0] * steps
    for group, i, cost in costs:
        series[group if group in shown else "other"][min(max(i, 0), steps - 1)] += cost
    return {
        "span": span, "by": by, "since": _stamp(since), "step_s": int(step.total_seconds()),
        "steps": [_stamp(since + i * step) for i in range(steps)],
        "series": [{"group": g, "cost_usd": [round(v, 8) for v in values]} for g, values in series.items()],
        "totals": totals,
    }


def csv_of(totals: Iterable[dict[str, Any]], by: str) -> bytes:
    """The Usage table as CSV, the same columns as ``polyroute usage --format csv``."""
    import csv
    import io

    from polyroute.tenancy.usage import COLUMNS

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([by if c == "group" else c for c in COLUMNS])
    for t in totals:
        writer.writerow([_cell(t[c]) for c in COLUMNS])
    return buf.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.8f}".rstrip("0").rstrip(".") if value else "0"
    # A spreadsheet runs a cell that starts with one of these as a formula: a key or team name must not.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != "-":
        return "'" + value
    return value


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
