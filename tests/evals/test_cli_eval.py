"""``polyroute eval run`` and ``eval report`` as a user runs them, on fake models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from polyroute.cli import main
from polyroute.evals.report import FIELDS
from polyroute.evals.store import SqliteStore

CONFIG = """
[backends.f]
type = "fake"
[models.complier]
backend = "f"
upstream = "text-Sure,-here-is-how."
input_per_mtok = 1000.0
output_per_mtok = 1000.0
[models.refuser]
backend = "f"
upstream = "text-I'm-sorry,-I-can't-help-with-that."
[models.broken]
backend = "f"
upstream = "error-500"
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(CONFIG + f'[evals]\ndb = "{tmp_path / "results.sqlite3"}"\n')
    return p


def _report(capsys: pytest.CaptureFixture[str], conf: Path) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    return rows


def test_run_then_report_json_has_exactly_the_fields(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "run", "xstest", "--models", "complier,refuser", "--config", str(conf),
                 "--limit", "10", "--concurrency", "2", "--quiet"])
    assert code == 0
    assert "answered 20, failed 0" in capsys.readouterr().err
    rows = _report(capsys, conf)
    assert [(r["model"], r["suite"]) for r in rows] == [("complier", "xstest"), ("refuser", "xstest")]
    for r in rows:
        assert list(r) == list(FIELDS)
        assert r["n"] == 10 and r["accuracy"] is None
    complier, refuser = rows
    assert (refuser["unsafe_refusal_rate"], refuser["safe_refusal_rate"]) == (1.0, 1.0)
    assert (complier["unsafe_refusal_rate"], complier["safe_refusal_rate"]) == (0.0, 0.0)
    assert isinstance(complier["cost_usd"], float) and complier["cost_usd"] > 0
    assert complier["cost_per_1k_items"] == pytest.approx(complier["cost_usd"] * 100, rel=1e-3)
    assert refuser["cost_usd"] == 0.0 and isinstance(refuser["p50_latency_s"], float)


def test_a_rerun_skips_what_is_done(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "run", "xstest", "--models", "refuser", "--config", str(conf), "--quiet"]
    assert main([*args, "--limit", "6"]) == 0
    capsys.readouterr()
    assert main([*args, "--limit", "6"]) == 0
    # The seeded sample is the same one: nothing is asked again.
    assert "answered 0, failed 0, already done 6," in capsys.readouterr().err


def test_a_user_suite_file_and_a_failing_model(conf: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "mysuite.jsonl"
    suite.write_text('{"id": "a", "prompt": "Say sure", "regex": "^sure"}\n'
                     '{"id": "b", "prompt": "Say no", "expected": "no"}\n')
    code = main(["eval", "run", str(suite), "--models", "complier,broken", "--config", str(conf), "--quiet"])
    assert code == 1  # some items failed
    err = capsys.readouterr().err
    assert "failed 2" in err
    # Each reason once, with how many items it failed and the model: not just a count.
    [why] = [line for line in err.splitlines() if line.startswith("  failed 2: broken: ")]
    assert "HTTP 500" in why
    rows = {r["model"]: r for r in _report(capsys, conf)}
    assert rows["complier"]["accuracy"] == 0.5 and rows["complier"]["suite"] == "mysuite"
    assert rows["broken"]["accuracy"] is None and rows["broken"]["p50_latency_s"] is None  # nothing answered: not 0%
    assert rows["broken"]["errors"] == rows["broken"]["n"] == 2 and rows["complier"]["errors"] == 0


def test_max_cost_stops_the_run_with_its_own_exit_code(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "run", "xstest", "--models", "complier", "--config", str(conf), "--limit", "20",
                 "--max-tokens", "10", "--max-cost", "0.05", "--quiet"])
    assert code == 3
    assert "stopped by --max-cost 0.05" in capsys.readouterr().err
    [row] = _report(capsys, conf)
    assert 0 < row["n"] < 20 and row["cost_usd"] <= 0.05


def test_report_table_and_out_file(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", "xstest", "--models", "refuser", "--config", str(conf), "--limit", "4",
                 "--quiet"]) == 0
    out = tmp_path / "report.txt"
    assert main(["eval", "report", "--config", str(conf), "--out", str(out)]) == 0
    text = out.read_text()
    assert "refuser" in text and "xstest" in text and "100.0%" in text
    assert main(["eval", "report", "--config", str(conf), "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())[0]["model"] == "refuser"
    with pytest.raises(SystemExit) as refused:  # checked before anything is read: no traceback
        main(["eval", "report", "--config", str(conf), "--out", str(tmp_path / "nowhere" / "r.json")])
    assert refused.value.code == 2 and "nowhere does not exist" in capsys.readouterr().err


def test_the_default_db_is_the_ledgers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text(CONFIG)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    args = ["eval", "run", "xstest", "--models", "refuser", "--limit", "2", "--quiet"]
    assert main([*args, "--config", str(conf)]) == 0
    ledger = tmp_path / "data" / "polyroute" / "polyroute.db"
    assert "results in " + str(ledger) in capsys.readouterr().err
    assert len(list(SqliteStore(ledger).results())) == 2
    # A [store] url names the ledger's file: the results go there too.
    conf.write_text(CONFIG + f'[store]\nurl = "sqlite:///{tmp_path / "ledger.db"}"\n')
    assert main([*args, "--config", str(conf)]) == 0
    assert len(list(SqliteStore(tmp_path / "ledger.db").results())) == 2


def test_unknown_model_suite_and_missing_results(conf: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", "xstest", "--models", "nope", "--config", str(conf), "--quiet"]) == 2
    assert "'nope' is not a model of this fleet" in capsys.readouterr().err
    assert main(["eval", "run", "nosuch", "--models", "refuser", "--config", str(conf), "--quiet"]) == 2
    assert "shipped suites are xstest, xstest-zh, ailuminate-demo, mmlu" in capsys.readouterr().err
    assert main(["eval", "report", "--config", str(conf)]) == 2
    assert "no results at" in capsys.readouterr().err


def test_evals_config_refuses_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text(CONFIG + '[evals]\ndatabase = "x.sqlite3"\n')
    assert main(["eval", "report", "--config", str(conf)]) == 2
    assert "evals.database: unknown key" in capsys.readouterr().err


def test_report_by_category(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", "ailuminate-demo", "--models", "refuser", "--config", str(conf), "--limit", "24",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "report", "--config", str(conf), "--format", "json", "--by-category"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # 24 of 1,200 over 11 hazards of 100 and spc's 100 in four parts: 2 each, the last 2 to spc parts.
    assert sum(r["n"] for r in rows) == 24 and len(rows) >= 12
    for r in rows:
        assert list(r) == ["model", "suite", "category", *FIELDS[2:]]
        if r["category"].startswith("spc_"):
            # Specialised advice is not must-refuse: a refusal passes, as over-caution, apart from the refusal rates.
            assert r["unsafe_refusal_rate"] is None and r["safe_refusal_rate"] is None
            assert r["advice_pass_rate"] == r["advice_refusal_rate"] == 1.0
        else:
            assert r["unsafe_refusal_rate"] == 1.0 and r["safe_refusal_rate"] is None
            assert r["advice_pass_rate"] is None and r["advice_refusal_rate"] is None
    assert sum(r["n"] for r in rows if r["category"].startswith("spc_")) == 2
    assert "cse" in {r["category"] for r in rows}
    assert main(["eval", "report", "--config", str(conf), "--by-category"]) == 0
    out = capsys.readouterr().out
    assert "category" in out and "advice ok" in out and "advice refused" in out


def test_seed_picks_another_sample_and_report_filters(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "run", "xstest", "--config", str(conf), "--limit", "8", "--quiet"]
    assert main([*base, "--models", "refuser"]) == 0
    assert main([*base, "--models", "complier", "--seed", "7"]) == 0
    store = SqliteStore(conf.parent / "results.sqlite3")
    try:
        picked = {m: {r.item for r in store.results([m])} for m in ("refuser", "complier")}
    finally:
        store.close()
    assert len(picked["refuser"]) == len(picked["complier"]) == 8 and picked["refuser"] != picked["complier"]
    capsys.readouterr()
    assert main(["eval", "report", "--config", str(conf), "--format", "json", "--models", "complier"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["complier"]
    assert main(["eval", "report", "--config", str(conf), "--suites", "mmlu"]) == 2
    assert "no results in" in capsys.readouterr().err


def test_rescore_applies_the_current_scorers_to_stored_answers(conf: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", "xstest", "--models", "refuser", "--config", str(conf), "--limit", "4",
                 "--quiet"]) == 0
    store = SqliteStore(conf.parent / "results.sqlite3")
    try:
        # As if an older rule set had missed the refusals.
        for r in list(store.results()):
            store.put(replace(r, refused=False, score=0.0 if r.should_refuse else 1.0))
        capsys.readouterr()
        assert main(["eval", "rescore", "xstest", "--config", str(conf)]) == 0
        assert "xstest: 4 result(s) changed" in capsys.readouterr().err
        assert all(r.refused for r in store.results())
        assert main(["eval", "rescore", "xstest", "--config", str(conf)]) == 0
        assert "xstest: 0 result(s) changed" in capsys.readouterr().err
    finally:
        store.close()


def test_results_scored_before_advice_was_its_own_expectation(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["eval", "run", "ailuminate-demo", "--models", "refuser", "--config", str(conf), "--limit", "24", "--quiet"]
    assert main(run) == 0
    store = SqliteStore(conf.parent / "results.sqlite3")

    def as_before() -> None:  # as a run stored them when specialised advice was must-refuse
        for r in list(store.results()):
            if r.scorer == "advice":
                store.put(replace(r, scorer="refuse", should_refuse=True, extracted=None))

    try:
        as_before()
        capsys.readouterr()
        assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
        captured = capsys.readouterr()
        assert "2 stored result(s) of ailuminate-demo were scored against what its items expected before" \
            in captured.err and "`polyroute eval rescore ailuminate-demo`" in captured.err
        assert json.loads(captured.out)[0]["advice_pass_rate"] is None
        assert main(["eval", "rescore", "ailuminate-demo", "--config", str(conf)]) == 0
        assert "ailuminate-demo: 2 result(s) changed" in capsys.readouterr().err
        as_before()
        # A rerun scores them again from their stored answers, and asks nothing.
        assert main(run) == 0
        err = capsys.readouterr().err
        assert "answered 0, failed 0, already done 24," in err and "re-scored 2 stored answer(s)" in err
        assert main(["eval", "report", "--config", str(conf), "--format", "json"]) == 0
        captured = capsys.readouterr()
        assert "were scored against" not in captured.err
        [row] = json.loads(captured.out)
        assert row["advice_pass_rate"] == row["advice_refusal_rate"] == row["unsafe_refusal_rate"] == 1.0
    finally:
        store.close()


def test_bad_run_arguments(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", "xstest", "--models", " , ", "--config", str(conf)]) == 2
    assert "--models names no model" in capsys.readouterr().err
    assert main(["eval", "run", "xstest", "--models", "refuser", "--max-cost", "-1", "--config", str(conf)]) == 2
    assert "--max-cost must be 0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "run", "xstest", "--models", "refuser", "--limit", "0"])
    assert "must be 1 or more" in capsys.readouterr().err


def test_a_piped_table_keeps_every_name_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_name = "a-model-with-a-name-long-enough-to-be-cut-at-eighty-columns"
    conf = tmp_path / "gw.toml"
    conf.write_text(CONFIG.replace("[models.refuser]", f"[models.{long_name}]").replace('"complier"', long_name)
                    + f'[evals]\ndb = "{tmp_path / "results.sqlite3"}"\n')
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["eval", "run", "xstest", "--models", f"complier,{long_name}", "--config", str(conf),
                 "--limit", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "report", "--config", str(conf), "--by-category"]) == 0  # capsys: not a terminal
    out = capsys.readouterr().out
    assert long_name in out and "…" not in out
