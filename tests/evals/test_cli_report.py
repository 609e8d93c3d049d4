"""``eval run --judge`` and ``eval report --format html|json`` as a user runs them, on bilingual fakes."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from polyroute.cli import main
from polyroute.evals.agreement import AGREEMENT_FIELDS
from polyroute.evals.report import FIELDS
from tests.evals.support import PAIRED_EN, PAIRED_ZH, Judging

MODELS = ("steady", "leaky-zh", "prudish-zh", "judge-reads")


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Every fake backend answers by the prompt's language (tests/evals/support.py).
    monkeypatch.setattr("polyroute.fleet.build_adapter",
                        lambda name, bc, source=None: Judging(name, bc))  # type: ignore[arg-type]
    lines = ['[backends.f]\ntype = "fake"']
    for i, m in enumerate(MODELS):
        price = i * 100.0  # the models cost 0, 100, 200 ... USD per million tokens
        lines.append(f'[models.{m}]\nbackend = "f"\nupstream = "{m}"\n'
                     f"input_per_mtok = {price}\noutput_per_mtok = {price}")
    lines.append(f'[evals]\ndb = "{tmp_path / "results.sqlite3"}"')
    p = tmp_path / "gw.toml"
    p.write_text("\n".join(lines) + "\n")
    for name, doc in (("mini.jsonl", PAIRED_EN), ("mini-zh.jsonl", PAIRED_ZH)):
        (tmp_path / name).write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in doc) + "\n",
                                     encoding="utf-8")
    return p


def _run(conf: Path, *args: str) -> int:
    return main(["eval", "run", *args, "--config", str(conf), "--quiet"])


def test_judge_and_gap_in_json_and_table(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = conf.parent
    assert _run(conf, str(d / "mini.jsonl"), str(d / "mini-zh.jsonl"), "--models", "leaky-zh,steady",
                "--judge", "judge-reads") == 0
    assert "judge judge-reads: judged 16, failed 0" in capsys.readouterr().err
    assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(list(r) == list(FIELDS) for r in rows)
    leaky = {r["suite"]: r for r in rows if r["model"] == "leaky-zh"}
    assert leaky["mini"]["unsafe_refusal_gap"] == leaky["mini-zh"]["unsafe_refusal_gap"] == 1.0
    assert main(["eval", "report", "--config", str(conf), "--format", "json", "--agreement"]) == 0
    agreed = json.loads(capsys.readouterr().out)
    assert all(list(a) == list(AGREEMENT_FIELDS) and a["agreement"] == 1.0 for a in agreed)
    assert {a["model"] for a in agreed} == {None, "leaky-zh", "steady"}
    assert main(["eval", "report", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "unsafe gap" in out and "+100.0 pt" in out
    assert "refusal rules against the judge" in out and "(all models)" in out


def test_rubric_needs_a_judge_and_the_judge_must_be_a_model(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = conf.parent / "tutor.jsonl"
    suite.write_text('{"id": 1, "prompt": "Explain recursion", "rubric": "uses an example"}\n')
    assert _run(conf, str(suite), "--models", "steady") == 2
    assert "tutor have rubric items, which a judge scores: name a model of the fleet with --judge MODEL" \
        in capsys.readouterr().err
    assert _run(conf, str(suite), "--models", "steady", "--judge", "nope") == 2
    assert "'nope' is not a model of this fleet" in capsys.readouterr().err
    assert _run(conf, str(suite), "--models", "steady", "--judge", "judge-reads") == 0
    assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["accuracy"] == 0.8889  # score 9 of 10


class _Doc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    doc.close()
    return doc


def test_html_report_is_one_offline_file_with_its_charts(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = conf.parent
    assert _run(conf, str(d / "mini.jsonl"), str(d / "mini-zh.jsonl"), "ailuminate-demo", "mmlu",
                "--models", "steady,leaky-zh,prudish-zh", "--limit", "24", "--judge", "judge-reads") == 0
    out = d / "report.html"
    assert main(["eval", "report", "--config", str(conf), "--format", "html", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    doc = _parse(html)
    tags = [t for t, _ in doc.tags]
    # Nothing to fetch: no script, no stylesheet link, no image, no URL in any attribute.
    assert not {"script", "link", "img", "iframe", "object"} & set(tags)
    for _, attrs in doc.tags:
        for name, value in attrs.items():
            assert not re.search(r"(?i)(https?:|//)", value or ""), (name, value)
    assert "http://" not in html and "https://" not in html and "@import" not in html
    sections = [a.get("id") for t, a in doc.tags if t == "section"]
    assert sections == ["summary", "cost-quality", "hazards", "languages", "judge", "definitions"]
    text = " ".join(doc.text)
    # One scatter per suite, a point per model; a bar chart per safety suite by category, one for AILuminate's
    # specialised advice apart, and one per pair.
    assert tags.count("svg") == 4 + 3 + 1 + 1 + 3  # and per model, each category in both languages
    assert tags.count("circle") == 4 * 3
    for hazard in ("Child sexual exploitation", "Indiscriminate weapons (CBRNE)", "Hate"):
        assert hazard in text
    assert "mini (en) and mini-zh (zh): share refused" in text and "(gap +100.0 pt)" in text
    assert "leaky-zh: share refused per category, mini and mini-zh" in text
    assert "contrast_homonyms (must refuse)" in text
    # Specialised advice is charted apart from the refusal rates, with how its outcomes split.
    assert "ailuminate-demo: specialised advice, share answered with the caveat it needs or refused" in text
    assert "unqualified or harmful" in text and "Specialized advice:" in text
    assert "Specialized advice" not in html.split("ailuminate-demo: share refused per category", 1)[1].split(
        "ailuminate-demo: specialised advice", 1)[0]
    assert "Cohen's kappa" in text and "(all models)" in text


def test_html_report_without_pairs_or_judge_says_so(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(conf, "mmlu", "--models", "steady", "--limit", "3") == 0
    assert main(["eval", "report", "--config", str(conf), "--format", "html"]) == 0
    text = " ".join(_parse(capsys.readouterr().out).text)
    assert "No pair of suites" in text and "No judge has read these answers" in text
    assert "No safety suite with categories" in text and "mmlu: accuracy against cost" in text


def test_report_rows_is_the_json_for_other_front_ends(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polyroute.evals.report import report_rows
    from polyroute.evals.store import SqliteStore

    d = conf.parent
    assert _run(conf, str(d / "mini.jsonl"), str(d / "mini-zh.jsonl"), "--models", "prudish-zh") == 0
    capsys.readouterr()
    assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
    printed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    store = SqliteStore(d / "results.sqlite3")
    try:
        assert report_rows(store) == printed
    finally:
        store.close()


def test_html_report_escapes_names() -> None:
    from polyroute.evals.html_report import render
    from polyroute.evals.report import Row
    from polyroute.evals.store import SuiteInfo

    evil = '<script>alert("x")</script>'
    row = Row(model=evil, suite="s&t", category=None, lang="en", kind="safety", n=2, errors=0, unscored=0,
              accuracy=None, unsafe_refusal_rate=0.5, safe_refusal_rate=0.0, unsafe_refusal_gap=None,
              safe_refusal_gap=None, cost_usd=0.0, cost_per_1k_items=0.0, p50_latency_s=0.2)
    html = render([row], [], [], {"s&t": SuiteInfo("s&t", "en", "safety", None, 2)}, "db")
    doc = _parse(html)
    assert "script" not in {t for t, _ in doc.tags}
    assert evil in " ".join(doc.text) and "&lt;script&gt;" in html


def test_a_judge_that_gives_no_verdict_says_why(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = conf.parent
    assert _run(conf, str(d / "mini.jsonl"), "--models", "leaky-zh", "--judge", "steady") == 1  # not every item scored
    err = capsys.readouterr().err
    assert re.search(r"judge steady: judged 0, failed (\d+)", err)
    assert "judge failed " in err and ": the reply gives no verdict that can be read" in err
