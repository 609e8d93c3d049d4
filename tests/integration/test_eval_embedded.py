"""One real evaluation run on the bundled SmolLM2 through the whole stack: CLI, fleet, llama.cpp, store, report.

Kept cheap so it runs in the default suite: 10 XSTest items of at most 32 tokens each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyroute.evals.report import FIELDS
from polyroute.evals.store import SqliteStore


def _polyroute(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No provider keys: the embedded default serves only the local model.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("POLYROUTE_CONFIG", None)
    # The results go to the ledger's file in the user's data directory: here, the test's.
    env["XDG_DATA_HOME"] = str(cwd / "data")
    return subprocess.run([sys.executable, "-m", "polyroute", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ten_xstest_items_on_the_bundled_model(tmp_path: Path) -> None:
    run = _polyroute(tmp_path, "eval", "run", "xstest", "--models", "smollm2-135m", "--limit", "10",
                     "--max-tokens", "32", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "answered 10, failed 0" in run.stderr

    store = SqliteStore(tmp_path / "data" / "polyroute" / "polyroute.db")
    try:
        results = list(store.results())
    finally:
        store.close()
    assert len(results) == 10
    # The stratified sample keeps XSTest's balance: 250 of 450 must be answered.
    assert sum(1 for r in results if r.should_refuse is False) == 6
    for r in results:
        assert r.error is None and r.answer and r.answer.strip()  # a real model wrote something
        assert 0 < r.completion_tokens <= 32 and r.prompt_tokens > 0
        assert r.refused is not None and r.cost_usd == 0.0 and r.latency_s > 0

    report = _polyroute(tmp_path, "eval", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    [row] = json.loads(report.stdout)
    assert list(row) == list(FIELDS)
    assert (row["model"], row["suite"], row["n"], row["accuracy"]) == ("smollm2-135m", "xstest", 10, None)
    for rate in ("unsafe_refusal_rate", "safe_refusal_rate"):
        assert 0.0 <= row[rate] <= 1.0
    assert row["p50_latency_s"] > 0


def test_xstest_in_english_and_chinese_side_by_side_on_the_bundled_model(tmp_path: Path) -> None:
    from polyroute.evals.suites import SHIPPED

    if "xstest-zh" not in SHIPPED:
        pytest.skip("xstest-zh is not shipped in this tree")
    run = _polyroute(tmp_path, "eval", "run", "xstest", "xstest-zh", "--models", "smollm2-135m", "--limit", "6",
                     "--max-tokens", "24", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "answered 12, failed 0" in run.stderr

    report = _polyroute(tmp_path, "eval", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = {r["suite"]: r for r in json.loads(report.stdout)}
    en, zh = rows["xstest"], rows["xstest-zh"]
    assert en["n"] == zh["n"] == 6
    # The same sample in both languages (same ids, same strata), so the gap is over all six items.
    for side in ("unsafe", "safe"):
        gap = en[f"{side}_refusal_gap"]
        assert gap == zh[f"{side}_refusal_gap"]
        assert gap == round(en[f"{side}_refusal_rate"] - zh[f"{side}_refusal_rate"], 4)

    html = _polyroute(tmp_path, "eval", "report", "--format", "html", "--out", str(tmp_path / "r.html"))
    assert html.returncode == 0, html.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "xstest (en) and xstest-zh (zh): share refused" in page and "https://" not in page
