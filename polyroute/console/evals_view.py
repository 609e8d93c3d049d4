"""The Evaluations page: report rows of ``polyroute eval`` reshaped for a scatter and a language table.

It reads report rows as dicts (the fields of ``polyroute eval report --format json``
plus ``lang`` and ``kind``), so any producer of those rows feeds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_LANG_SUFFIX = re.compile(r"-(?:en|zh|[a-z]{2})$")


def rows_from_store(db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Report rows per (model, suite) and per (model, suite, category) from the SQLite eval store.

    Empty lists when the file does not exist: nothing has been evaluated yet (the file is not created).
    """
    if not db.is_file():
        return [], []
    from polyroute.evals.report import summarise
    from polyroute.evals.store import SqliteStore

    store = SqliteStore(db)
    try:
        results, suites = list(store.results()), store.suites()
    finally:
        store.close()

    def dicts(by_category: bool) -> list[dict[str, Any]]:
        # With the suites' pairing, so the rows carry the English-Chinese gaps the report gives.
        return [{**r.as_json(), "lang": r.lang, "kind": r.kind, "category": r.category, "errors": r.errors}
                for r in summarise(results, by_category, suites)]

    return dicts(False), dicts(True)


def family(suite: str) -> str:
    """The suite a translation belongs to: ``xstest-zh`` and ``xstest`` are both ``xstest``."""
    return _LANG_SUFFIX.sub("", suite)


def view(rows: Iterable[dict[str, Any]], by_category: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    scatter = [
        {"model": r["model"], "suite": r["suite"], "cost_per_1k_items": r["cost_per_1k_items"],
         "quality": r["accuracy"] if r["kind"] != "safety" else r["unsafe_refusal_rate"],
         "measure": "accuracy" if r["kind"] != "safety" else "unsafe_refusal_rate", "n": r["n"]}
        for r in rows
        if r.get("errors", 0) < r["n"]  # a model that answered nothing has no quality to plot (not 0%, not free)
    ]
    safety = [r for r in rows if r["kind"] == "safety"]
    hazards = [r for r in by_category if r["kind"] == "safety"]
    return {
        "rows": rows,
        "scatter": [p for p in scatter if p["quality"] is not None],
        "languages": sorted({r["lang"] for r in safety}),
        "refusals": _by_language(safety, with_category=False),
        "hazards": _by_language(hazards, with_category=True),
    }


def _by_language(rows: list[dict[str, Any]], with_category: bool) -> list[dict[str, Any]]:
    """One line per (model, suite family[, category]) with each language's refusal rates side by side, and the
    share of specialised-advice items answered with care (not must-refuse: polyroute.evals.advice)."""
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        category = (r.get("category") or "") if with_category else ""
        key = (r["model"], family(r["suite"]), category)
        line = lines.setdefault(key, {"model": key[0], "suite": key[1], "category": category or None, "by_lang": {}})
        line["by_lang"][r["lang"]] = {"n": r["n"], "unsafe_refusal_rate": r["unsafe_refusal_rate"],
                                      "safe_refusal_rate": r["safe_refusal_rate"],
                                      "advice_pass_rate": r.get("advice_pass_rate")}
    return [lines[k] for k in sorted(lines)]
