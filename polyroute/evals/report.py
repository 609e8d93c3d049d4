"""Reports: per (model, suite), accuracy or refusal rates, the gap between languages, cost and latency.

``errors`` counts the items whose call failed, ``unscored`` those answered that no rule
or judge scored. ``accuracy`` is the share of right answers among the items with a known
answer (a failed call counts as wrong; with no item answered at all it is null, not 0);
for a rubric item the score is the judge's 1-10 mapped
to 0-1, so there it is the mean rubric score. For safety suites,
``unsafe_refusal_rate`` is the share of must-refuse items that were refused, and
``safe_refusal_rate`` the share of must-answer items that were refused anyway
(over-refusal); failed calls are left out of both, since nothing was answered.

Specialised-advice items (``advice``, AILuminate's ``spc_*``) are in neither: a model
may answer them, with the caveat their domain needs (``polyroute.evals.advice``).
``advice_pass_rate`` is the share of them answered acceptably, with that caveat or by
refusing; ``advice_refusal_rate`` the share refused, which passes but is over-cautious.
So, of the advice items answered, pass rate - refusal rate answered with the caveat,
and 1 - pass rate failed: unqualified advice, or help with harm the prompt asked for (a
judge's verdict only). Both count the judge's verdict where a judge gave one, else the
rules'; failed calls are left out, and both are null without advice items. They come
last in a JSON row, after the fields that were there before them.

When a suite declares the suite it translates (``pair``), or is named after it with its
own language (``xstest-zh``, in Chinese, beside ``xstest``), both rows of each model
get ``unsafe_refusal_gap`` and ``safe_refusal_gap``: the rate in the source suite's
language minus the rate in the translation's (English minus Chinese for
``xstest``/``xstest-zh``), over the items the model answered in both, so a sample
is compared with the same sample. A positive unsafe gap means the model refuses
harmful requests less often in the translation. A field that does not apply is null.

``cost_per_1k_items`` is the model's cost over the items (a judge's is not counted),
times 1,000; ``p50_latency_s`` the median seconds of the answered calls.
``report_rows`` gives the JSON rows as plain dicts, for any other front end.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from polyroute.evals.store import Result, ResultStore, SuiteInfo

# The fields of one JSON row, in order.
FIELDS = ("model", "suite", "n", "errors", "unscored", "accuracy", "unsafe_refusal_rate", "safe_refusal_rate",
          "unsafe_refusal_gap", "safe_refusal_gap", "cost_usd", "cost_per_1k_items", "p50_latency_s",
          "advice_pass_rate", "advice_refusal_rate")


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
    unsafe_refusal_gap: float | None
    safe_refusal_gap: float | None
    cost_usd: float
    cost_per_1k_items: float
    p50_latency_s: float | None
    advice_pass_rate: float | None = None
    advice_refusal_rate: float | None = None

    def as_json(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in FIELDS}
        if self.category is not None:
            doc = {"model": self.model, "suite": self.suite, "category": self.category, **doc}
        return doc


_Key = tuple[str, str, str | None]


def report_rows(store: ResultStore, models: list[str] | None = None, suites: list[str] | None = None,
                by_category: bool = False) -> list[dict[str, Any]]:
    """The report's rows as plain dicts (the JSON rows), with the gaps of paired suites."""
    return [r.as_json() for r in summarise(store.results(models, suites), by_category, store.suites())]


def summarise(results: Iterable[Result], by_category: bool = False,
              suites: dict[str, SuiteInfo] | None = None) -> list[Row]:
    """One row per (model, suite), or per (model, suite, category); ``suites`` gives the pairs."""
    groups: dict[_Key, list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.model, r.suite, r.category if by_category else None)].append(r)
    gaps = _gaps(groups, suites or {})
    return [_row(model, suite, cat, rs, gaps.get((model, suite, cat), (None, None)))
            for (model, suite, cat), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))]


def pairs(suites: dict[str, SuiteInfo]) -> list[tuple[str, str]]:
    """(source suite, translation): each suite that declares the suite it translates (``pair``), or
    that is named after it with its own language (``xstest-zh``, ``lang`` "zh", beside ``xstest``)."""
    found: set[tuple[str, str]] = set()
    for name, info in suites.items():
        base = name.removesuffix(f"-{info.lang}")
        source = info.pair or (base if base != name and base in suites and suites[base].lang != info.lang
                               else None)
        if source and source != name:
            found.add((source, name))
    return sorted(found)


def _gaps(groups: dict[_Key, list[Result]],
          suites: dict[str, SuiteInfo]) -> dict[_Key, tuple[float | None, float | None]]:
    out: dict[_Key, tuple[float | None, float | None]] = {}
    for source, translation in pairs(suites):
        for (model, suite, cat), rs in groups.items():
            if suite != translation or (model, source, cat) not in groups:
                continue
            theirs = {r.item: r for r in groups[(model, source, cat)] if r.error is None}
            ours = {r.item: r for r in rs if r.error is None}
            common = sorted(theirs.keys() & ours.keys())
            gap = tuple(_diff(_rate([bool(theirs[i].refused) for i in common if theirs[i].should_refuse is want]),
                              _rate([bool(ours[i].refused) for i in common if ours[i].should_refuse is want]))
                        for want in (True, False))
            out[(model, suite, cat)] = out[(model, source, cat)] = (gap[0], gap[1])
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _row(model: str, suite: str, category: str | None, rs: list[Result],
         gap: tuple[float | None, float | None]) -> Row:
    kind = rs[0].suite_kind
    answered = [r for r in rs if r.error is None]
    scored = [r.score for r in rs if r.score is not None]
    cost = sum(r.cost_usd for r in rs)
    safety = kind == "safety"
    advice = [r for r in answered if r.scorer == "advice" and r.score is not None]
    return Row(
        model=model, suite=suite, category=category, lang=rs[0].lang, kind=kind, n=len(rs),
        errors=len(rs) - len(answered),
        unscored=sum(1 for r in answered if r.score is None),
        accuracy=None if safety or not scored or not answered else round(sum(scored) / len(scored), 4),
        unsafe_refusal_rate=_rate([bool(r.refused) for r in answered if r.should_refuse is True]) if safety else None,
        safe_refusal_rate=_rate([bool(r.refused) for r in answered if r.should_refuse is False]) if safety else None,
        unsafe_refusal_gap=gap[0], safe_refusal_gap=gap[1],
        cost_usd=round(cost, 6),
        cost_per_1k_items=round(cost / len(rs) * 1000, 6),
        p50_latency_s=round(statistics.median(r.latency_s for r in answered), 3) if answered else None,
        advice_pass_rate=_rate([r.score == 1.0 for r in advice]),
        advice_refusal_rate=_rate([r.extracted == "refused" for r in advice]),
    )


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:.1f}%" if pct else f"{v:g}"


def _gap(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f} pt"


def table(rows: list[Row], console: Console) -> None:
    t = Table(title="polyroute eval")
    by_category = any(r.category is not None for r in rows)
    paired = any(r.unsafe_refusal_gap is not None or r.safe_refusal_gap is not None for r in rows)
    advised = any(r.advice_pass_rate is not None for r in rows)
    columns = [("model", "left"), ("suite", "left"), *([("category", "left")] if by_category else []),
               ("lang", "left"), ("n", "right"), ("errors", "right"), ("accuracy", "right"),
               ("unsafe refused", "right"), ("safe refused", "right"),
               *([("unsafe gap", "right"), ("safe gap", "right")] if paired else []),
               *([("advice ok", "right"), ("advice refused", "right")] if advised else []),
               ("cost $", "right"), ("$ / 1k items", "right"), ("p50 latency s", "right")]
    for col, justify in columns:
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        acc = (_fmt(r.accuracy, pct=True) if r.accuracy is not None or r.kind == "safety"
               else "no answers" if r.errors == r.n else f"unscored ({r.unscored})")
        t.add_row(r.model, r.suite, *([r.category or ""] if by_category else []), r.lang, str(r.n), str(r.errors), acc,
                  _fmt(r.unsafe_refusal_rate, pct=True), _fmt(r.safe_refusal_rate, pct=True),
                  *([_gap(r.unsafe_refusal_gap), _gap(r.safe_refusal_gap)] if paired else []),
                  *([_fmt(r.advice_pass_rate, pct=True), _fmt(r.advice_refusal_rate, pct=True)] if advised else []),
                  f"{r.cost_usd:.4f}", f"{r.cost_per_1k_items:.4f}", _fmt(r.p50_latency_s))
    console.print(t)
    if paired:
        console.print("gap: the refusal rate in the source suite's language minus the translation's, "
                      "over the items answered in both (pt: percentage points)")
    if advised:
        console.print("advice ok: specialised-advice items (not must-refuse, not in 'unsafe refused') answered with "
                      "the caveat their field needs, or refused; advice refused: the share refused, which passes "
                      "but is over-cautious")
