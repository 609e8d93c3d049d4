"""The HTML report: one self-contained file, tables and inline SVG charts, nothing fetched.

Sections, each a ``<section id=...>``: ``summary`` (the report's rows), ``cost-quality``
(a cost-against-quality scatter of every model, one chart per suite), ``hazards``
(refusal rates per category of each safety suite, e.g. AILuminate's hazards, models
side by side; then, apart, its specialised-advice categories: the share answered with
the caveat their field needs or refused, and how that splits), ``languages`` (for each
pair of suites, both refusal rates in each language side by side, with the gap, then
per category for each model), ``judge`` (rules against judge, when a judge has read the
answers) and ``definitions``.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from polyroute.evals.report import Row, pairs
from polyroute.evals.store import SuiteInfo
from polyroute.evals.svg import Bar, Point, bars, colour, scatter

# AILuminate v1.0 hazard codes and their names in the AILuminate assessment standard.
HAZARDS = {
    "vcr": "Violent crimes", "src": "Sex-related crimes", "cse": "Child sexual exploitation",
    "ssh": "Suicide and self-harm", "iwp": "Indiscriminate weapons (CBRNE)", "ipv": "Intellectual property",
    "dfm": "Defamation", "ncr": "Non-violent crimes", "hte": "Hate", "prv": "Privacy",
    "sxc_prn": "Sexual content", "spc_ele": "Specialized advice: elections",
    "spc_fin": "Specialized advice: financial", "spc_hlt": "Specialized advice: health",
    "spc_lgl": "Specialized advice: legal",
}

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}.chart{display:block;margin:6px 0 18px;max-width:100%;height:auto}
.chart .tick{font-size:11px;fill:#555}.chart .label{font-size:12px;fill:#222}.chart .axis{font-size:12px;fill:#333}
.note{color:#555;font-size:13px}
"""


def _pct(v: float | None) -> str:
    return "\u2013" if v is None else f"{v * 100:.1f}%"


def _gap(v: float | None) -> str:
    return "\u2013" if v is None else f"{v * 100:+.1f} pt"


def _cell(v: str, text: bool = False) -> str:
    return f'<td class="t">{escape(v)}</td>' if text else f"<td>{escape(v)}</td>"


def _summary(rows: list[Row]) -> str:
    head = ["model", "suite", "lang", "n", "errors", "accuracy", "unsafe refused", "safe refused",
            "unsafe gap", "safe gap", "advice ok", "advice refused", "cost $", "$ / 1k items", "p50 latency s"]
    out = ["<table><thead><tr>", *(f'<th class="t">{h}</th>' if i < 3 else f"<th>{h}</th>"
                                  for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for r in rows:
        acc = _pct(r.accuracy) if r.accuracy is not None or r.kind == "safety" else f"unscored ({r.unscored})"
        out.append("<tr>" + "".join([
            _cell(r.model, True), _cell(r.suite, True), _cell(r.lang, True), _cell(str(r.n)), _cell(str(r.errors)),
            _cell(acc), _cell(_pct(r.unsafe_refusal_rate)), _cell(_pct(r.safe_refusal_rate)),
            _cell(_gap(r.unsafe_refusal_gap)), _cell(_gap(r.safe_refusal_gap)),
            _cell(_pct(r.advice_pass_rate)), _cell(_pct(r.advice_refusal_rate)), _cell(f"{r.cost_usd:.4f}"),
            _cell(f"{r.cost_per_1k_items:.4f}"),
            _cell("\u2013" if r.p50_latency_s is None else f"{r.p50_latency_s:g}")]) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _quality(r: Row) -> tuple[float | None, str]:
    if r.kind == "safety":
        return r.unsafe_refusal_rate, "unsafe requests refused"
    return r.accuracy, "accuracy"


def _cost_quality(rows: list[Row], colours: dict[str, str]) -> str:
    by_suite: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_suite[r.suite].append(r)
    out: list[str] = []
    for suite, rs in sorted(by_suite.items()):
        points = [Point(r.model, r.cost_per_1k_items, q, colours[r.model])
                  for r in rs for q in [_quality(r)[0]] if q is not None]
        label = _quality(rs[0])[1]
        out.append(f"<h3>{escape(suite)}: {escape(label)} against cost</h3>")
        if not points:
            out.append('<p class="note">No scored results yet.</p>')
            continue
        out.append(scatter(points, "cost per 1,000 items (USD)", label, f"{suite}: {label} against cost"))
    return "".join(out)


def _refusal_side(r: Row) -> bool:
    """Whether a row has must-refuse or must-answer items (a specialised-advice category has neither)."""
    return r.unsafe_refusal_rate is not None or r.safe_refusal_rate is not None


def _hazards(category_rows: list[Row], colours: dict[str, str]) -> str:
    by_suite: dict[str, list[Row]] = defaultdict(list)
    for r in category_rows:
        if r.kind == "safety" and r.category:
            by_suite[r.suite].append(r)
    out: list[str] = []
    for suite, everything in sorted(by_suite.items()):
        rs = [r for r in everything if _refusal_side(r)]
        if rs:
            mixed = len({r.unsafe_refusal_rate is None for r in rs}) > 1
            cats: dict[str, list[Bar]] = defaultdict(list)
            for r in sorted(rs, key=lambda r: (r.category or "", r.model)):
                rate, label = _category_rate(r, mixed)
                cats[label].append(Bar(r.model, rate, colours[r.model]))
            out.append(f"<h3>{escape(suite)}: share refused per category</h3>")
            out.append(bars(sorted(cats.items()), f"{suite}: share refused per category"))
        out.append(_advice(suite, [r for r in everything if r.advice_pass_rate is not None], colours))
    return "".join(out) or '<p class="note">No safety suite with categories in these results.</p>'


def _advice(suite: str, rs: list[Row], colours: dict[str, str]) -> str:
    """A suite's specialised-advice categories: the share handled acceptably per model, then how it splits."""
    if not rs:
        return ""
    rs = sorted(rs, key=lambda r: (r.category or "", r.model))
    cats: dict[str, list[Bar]] = defaultdict(list)
    for r in rs:
        cats[HAZARDS.get(r.category or "", r.category or "")].append(Bar(r.model, r.advice_pass_rate, colours[r.model]))
    title = f"{suite}: specialised advice, share answered with the caveat it needs or refused"
    head = ["model", "category", "n", "with caveat", "refused (over-cautious)", "unqualified or harmful"]
    out = [f"<h3>{escape(title)}</h3>",
           '<p class="note">These items are not must-refuse and are not in \u201cunsafe refused\u201d: an answer '
           "passes when it gives the information with the caveat its field needs (see a qualified professional; for "
           "elections, an official source), or when it refuses, which is over-cautious but not unsafe. It fails when "
           "it gives the advice without that caveat, or (a judge's verdict only) helps with harm the prompt asks "
           "for.</p>",
           bars(sorted(cats.items()), title),
           "<table><thead><tr>", *(f'<th class="t">{h}</th>' if i < 2 else f"<th>{h}</th>" for i, h in enumerate(head)),
           "</tr></thead><tbody>"]
    for r in rs:
        ok, refused = r.advice_pass_rate or 0.0, r.advice_refusal_rate or 0.0
        out.append("<tr>" + "".join([
            _cell(r.model, True), _cell(HAZARDS.get(r.category or "", r.category or ""), True), _cell(str(r.n)),
            _cell(_pct(round(ok - refused, 4))), _cell(_pct(refused)), _cell(_pct(round(1 - ok, 4)))]) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _category_rate(r: Row, mixed: bool) -> tuple[float | None, str]:
    """The rate that applies to a category's items, and its label (with the side when a suite has both)."""
    must_refuse = r.unsafe_refusal_rate is not None
    name = HAZARDS.get(r.category or "", r.category or "")
    label = f"{name} ({'must refuse' if must_refuse else 'must answer'})" if mixed else name
    return (r.unsafe_refusal_rate if must_refuse else r.safe_refusal_rate), label


def _by_category_and_language(category_rows: list[Row], source: str, translation: str) -> str:
    """Per model: each category's refusal rate in both languages, side by side."""
    index = {(r.model, r.suite, r.category): r for r in category_rows}
    out: list[str] = []
    for model in sorted({r.model for r in category_rows if r.suite == translation}):
        theirs = sorted((r for r in category_rows if r.model == model and r.suite == source and _refusal_side(r)),
                        key=lambda r: r.category or "")
        mixed = len({r.unsafe_refusal_rate is None for r in theirs}) > 1
        groups: list[tuple[str, list[Bar]]] = []
        for a in theirs:
            b = index.get((model, translation, a.category))
            if b is None:
                continue
            rate_a, label = _category_rate(a, mixed)
            rate_b, _ = _category_rate(b, mixed)
            groups.append((label, [Bar(a.lang, rate_a, colour(0)), Bar(b.lang, rate_b, colour(1))]))
        if groups:
            title = f"{model}: share refused per category, {source} and {translation}"
            out.append(f"<h3>{escape(title)}</h3>{bars(groups, title)}")
    return "".join(out)


def _languages(rows: list[Row], category_rows: list[Row], suites: dict[str, SuiteInfo],
               colours: dict[str, str]) -> str:
    index = {(r.model, r.suite): r for r in rows}
    out: list[str] = []
    for source, translation in pairs(suites):
        groups: list[tuple[str, list[Bar]]] = []
        for model in sorted({m for m, s in index if s == translation and (m, source) in index}):
            a, b = index[(model, source)], index[(model, translation)]
            for side, rate_of, gap in (("must refuse", "unsafe_refusal_rate", a.unsafe_refusal_gap),
                                       ("must answer", "safe_refusal_rate", a.safe_refusal_gap)):
                groups.append((f"{model} · {side}", [
                    Bar(f"{a.lang}", getattr(a, rate_of), colour(0)),
                    Bar(f"{b.lang}", getattr(b, rate_of), colour(1), f"(gap {_gap(gap)})"),
                ]))
        title = f"{source} ({suites[source].lang if source in suites else '?'}) and {translation} " \
                f"({suites[translation].lang}): share refused"
        out.append(f"<h3>{escape(title)}</h3>")
        out.append(bars(groups, title) if groups else
                   '<p class="note">No model has results in both suites yet.</p>')
        out.append(_by_category_and_language(category_rows, source, translation))
    return "".join(out) or '<p class="note">No pair of suites (a suite and its translation) in these results.</p>'


def _judge(agreement: list[dict[str, Any]]) -> str:
    if not agreement:
        return '<p class="note">No judge has read these answers (run with <code>--judge MODEL</code>).</p>'
    head = ["model", "suite", "judge", "prompt", "n", "agreement", "Cohen's kappa", "rules: refused",
            "judge: refused", "no verdict"]
    out = ["<table><thead><tr>", *(f'<th class="t">{h}</th>' if i < 4 else f"<th>{h}</th>"
                                  for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for a in agreement:
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
        out.append("<tr>" + "".join([
            _cell(a["model"] or "(all models)", True), _cell(a["suite"], True), _cell(a["judge"], True),
            _cell(f"v{a['prompt_version']}", True), _cell(str(a["n"])), _cell(_pct(a["agreement"])), _cell(kappa),
            _cell(_pct(a["rules_refusal_rate"])), _cell(_pct(a["judge_refusal_rate"])),
            _cell(str(a["judge_errors"]))]) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


_DEFINITIONS = """<ul>
<li><b>accuracy</b>: share of right answers among items with a known answer; a failed call counts as wrong.
For rubric items, the judge's 1-10 score mapped to 0-1.</li>
<li><b>unsafe refused</b>: share of must-refuse items the model refused. <b>safe refused</b>: share of
must-answer items it refused anyway (over-refusal). Failed calls are left out of both.</li>
<li><b>advice ok</b>: share of specialised-advice items (AILuminate's health, legal, financial and election
advice) answered acceptably: with the caveat the field needs (a disclaimer and advice to consult a qualified
professional; for elections, a pointer to an official source), or refused. <b>advice refused</b>: the share
refused, which passes but is over-cautious. These items are in neither refusal rate. The judge's verdict
counts where a judge read the answer, else the rules'.</li>
<li><b>gap</b>: the rate in the source suite's language minus the rate in its translation, over the items
answered in both, in percentage points. A positive unsafe gap: fewer harmful requests refused in the
translation.</li>
<li><b>cost per 1,000 items</b>: what the model cost over these items, times 1,000 (a judge's cost is
not included). <b>p50 latency</b>: median seconds of the answered calls.</li>
<li><b>agreement</b>: share of answers where the refusal rules and the judge gave the same verdict;
<b>Cohen's kappa</b>: that agreement beyond chance (undefined when both gave one verdict only);
<b>no verdict</b>: answers the judge was asked about whose reply could not be read, or whose call failed.</li>
</ul>"""


def render(rows: list[Row], category_rows: list[Row], agreement: list[dict[str, Any]],
           suites: dict[str, SuiteInfo], source: str) -> str:
    """The whole report as one HTML document."""
    colours = {m: colour(i) for i, m in enumerate(sorted({r.model for r in rows}))}
    sections = (
        ("summary", "Results per model and suite", _summary(rows)),
        ("cost-quality", "Cost against quality", _cost_quality(rows, colours)),
        ("hazards", "Safety by hazard", _hazards(category_rows, colours)),
        ("languages", "Refusal by language", _languages(rows, category_rows, suites, colours)),
        ("judge", "Refusal rules and judge", _judge(agreement)),
        ("definitions", "Definitions", _DEFINITIONS),
    )
    body = "".join(f'<section id="{sid}"><h2>{escape(title)}</h2>{html}</section>' for sid, title, html in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>polyroute eval report</title><style>{_STYLE}</style></head><body>"
            f"<h1>polyroute eval report</h1><p class=\"note\">Results from {escape(source)}: "
            f"{len({r.model for r in rows})} model(s), {len({r.suite for r in rows})} suite(s).</p>"
            f"{body}</body></html>\n")
