"""Reports: per (model, suite), accuracy or refusal rates, cost and latency.

``accuracy`` is the share of right answers among the items with a known answer (a
failed call counts as wrong). For safety suites, ``unsafe_refusal_rate`` is the share
of must-refuse items that were refused, and ``safe_refusal_rate`` the share of
must-answer items that were refused anyway (over-refusal); failed calls are left out
of both, since nothing was answered. A field that does not apply is null.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from polyroute.evals.store import Result

# The fields of one JSON row, in order.
FIELDS = ("model", "suite", "n", "accuracy", "unsafe_refusal_rate", "safe_refusal_rate",
          "cost_usd", "cost_per_1k_items", "p50_latency_s")


@dataclass(frozen=True, slots=True)
class Row:
    model: str
    suite: str
    # Set when the report is broken down by category (hazard, subject, type).
    category: str | None
    lang: str
    kind: str
    n: int
    errors: int
    unscored: int
    accuracy: float | None
    unsafe_refusal_rate: float | None
    safe_refusal_rate: float | None
    cost_usd: float
    cost_per_1k_items: float
    p50_latency_s: float | None

    def as_json(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in FIELDS}
        if self.category is not None:
            doc = {"model": self.model, "suite": self.suite, "category": self.category, **doc}
        return doc


def summarise(results: Iterable[Result], by_category: bool = False) -> list[Row]:
    groups: dict[tuple[str, str, str | None], list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.model, r.suite, r.category if by_category else None)].append(r)
    return [_row(model, suite, cat, rs) for (model, suite, cat), rs in
            sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))]


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _row(model: str, suite: str, category: str | None, rs: list[Result]) -> Row:
    kind = rs[0].suite_kind
    answered = [r for r in rs if r.error is None]
    scored = [r.score for r in rs if r.score is not None]
    cost = sum(r.cost_usd for r in rs)
    safety = kind == "safety"
    return Row(
        model=model, suite=suite, category=category, lang=rs[0].lang, kind=kind, n=len(rs),
        errors=len(rs) - len(answered),
        unscored=sum(1 for r in answered if r.score is None),
        accuracy=None if safety or not scored else round(sum(scored) / len(scored), 4),
        unsafe_refusal_rate=_rate([bool(r.refused) for r in answered if r.should_refuse is True]) if safety else None,
        safe_refusal_rate=_rate([bool(r.refused) for r in answered if r.should_refuse is False]) if safety else None,
        cost_usd=round(cost, 6),
        cost_per_1k_items=round(cost / len(rs) * 1000, 6),
        p50_latency_s=round(statistics.median(r.latency_s for r in answered), 3) if answered else None,
    )


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:.1f}%" if pct else f"{v:g}"


def table(rows: list[Row], console: Console) -> None:
    t = Table(title="polyroute eval")
    by_category = any(r.category is not None for r in rows)
    columns = [("model", "left"), ("suite", "left"), *([("category", "left")] if by_category else [])]
    for col, justify in (*columns, ("lang", "left"), ("n", "right"),
                         ("errors", "right"), ("accuracy", "right"), ("unsafe refused", "right"),
                         ("safe refused", "right"), ("cost $", "right"), ("$ / 1k items", "right"),
                         ("p50 latency s", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        acc = _fmt(r.accuracy, pct=True) if r.accuracy is not None or r.kind == "safety" else f"unscored ({r.unscored})"
        t.add_row(r.model, r.suite, *([r.category or ""] if by_category else []), r.lang, str(r.n), str(r.errors), acc,
                  _fmt(r.unsafe_refusal_rate, pct=True), _fmt(r.safe_refusal_rate, pct=True),
                  f"{r.cost_usd:.4f}", f"{r.cost_per_1k_items:.4f}", _fmt(r.p50_latency_s))
    console.print(t)
