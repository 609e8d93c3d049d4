"""``polyroute router train`` from eval results and from feedback, and ``router eval --plot``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from polyroute.cli import main
from polyroute.evals.store import Result, SqliteStore
from polyroute.quality.decision_store import DecisionRow, DecisionStore
from polyroute.quality.features import FEATURE_SET, Embedder, cheap_features
from polyroute.quality.model import QualityModel
from polyroute.quality.scorer import Scorer

EASY = "What colour is the sky on a clear day ({i})?"
HARD = "[{i}] Let f(x) = x^3 - 6x^2 + 11x - 6 and g(x) = 2x + 1. Compute the sum of all real x with f(g(x)) = 0."
CHOICES = ["3", "7", "11", "12"]


def _suite(path: Path, n: int) -> None:
    lines = [json.dumps({"suite": "mini", "kind": "accuracy"})]
    for i in range(n):
        hard = i % 3 == 0
        lines.append(json.dumps({"id": f"q{i}", "prompt": (HARD if hard else EASY).format(i=i),
                                 "category": "algebra" if hard else "sky", "choices": CHOICES, "answer": "B"}))
    path.write_text("\n".join(lines) + "\n")


def _result(model: str, item: str, score: float | None) -> Result:
    return Result(model=model, suite="mini", item=item, category="", lang="en", suite_kind="accuracy",
                  scorer="choice", answer="B", score=score, refused=None, should_refuse=None, extracted="B",
                  prompt_tokens=10, completion_tokens=2, cost_usd=0.0, latency_s=0.1,
                  error=None if score is not None else "upstream_error")


@pytest.fixture
def evals(tmp_path: Path) -> tuple[Path, Path]:
    """A suite file and an eval store: "small" answers the easy two thirds, "big" everything."""
    suite, db = tmp_path / "mini.jsonl", tmp_path / "results.sqlite3"
    _suite(suite, 60)
    store = SqliteStore(db)
    for i in range(60):
        hard = i % 3 == 0
        store.put(_result("small", f"q{i}", 0.0 if hard else 1.0))
        store.put(_result("big", f"q{i}", 1.0))
    store.put(_result("small", "q60", None))  # a failed call: no label, counted
    store.put(_result("other", "q1", 1.0))  # a model not asked for
    store.close()
    return suite, db


def test_train_from_evals_gives_one_head_per_model(
    evals: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite, db = evals
    out = tmp_path / "router.json"
    args = ["router", "train", "--from-evals", "--models", "small,big", "--suites", str(suite),
            "--evals-db", str(db), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "60 eval items (left out: 1 without a score)" in said and "heads: small, big" in said
    scorer = Scorer.load(out)
    assert scorer.columns == ("small", "big")
    easy, hard = scorer.predict(EASY.format(i=1000)), scorer.predict(HARD.format(i=1000))
    # The choices are appended to the prompt as the gateway would send it.
    hard_sent = scorer.predict(HARD.format(i=1000) + "\nA. 3\nB. 7\nC. 11\nD. 12")
    assert easy["small"] > 0.8 and hard["small"] < 0.3 and hard_sent["small"] < 0.3
    assert easy["big"] > 0.8 and hard["big"] > 0.8


def test_train_from_evals_reads_the_db_of_the_config(
    evals: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite, db = evals
    conf = tmp_path / "gw.toml"
    conf.write_text(f'[backends.f]\ntype = "fake"\n[models.m]\nbackend = "f"\n[evals]\ndb = "{db}"\n')
    out = tmp_path / "router.json"
    args = ["router", "train", "--from-evals", "--models", "big", "--suites", str(suite), "--config", str(conf),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert QualityModel.load(out).columns == ("big",)


def test_a_stored_suite_that_cannot_be_found_is_named(
    evals: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = evals
    args = ["router", "train", "--from-evals", "--models", "small,big", "--evals-db", str(db),
            "--out", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No scored results" in err and "suites not found (mini: pass the suite file with --suites)" in err


def test_no_eval_results_and_no_source_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r.json")
    assert main(["router", "train", "--from-evals", "--models", "a", "--evals-db", str(tmp_path / "none.db"),
                 "--out", out]) == 2  # fmt: skip
    assert "No eval results at" in capsys.readouterr().err
    assert main(["router", "train", "--out", out]) == 2
    assert "give --data, --from-evals or --from-feedback" in capsys.readouterr().err
    assert main(["router", "train", "--from-evals", "--out", out]) == 2
    assert "Name the models to learn: --models A,B" in capsys.readouterr().err


def _feedback_store(path: Path, embedder: Embedder, rows: list[tuple[str, str, float]]) -> None:
    """Decisions with feedback: (prompt, column of the model that answered, score)."""
    store = DecisionStore(path)
    decisions = []
    for i, (prompt, column, _) in enumerate(rows):
        cheap, emb = cheap_features(prompt, embedder)
        assert emb is not None
        feats = np.concatenate([np.asarray(cheap, dtype="<f4"), emb.astype("<f4")]).tobytes()
        decisions.append(DecisionRow(f"req_{i}", f"chatcmpl-{i}", 1.0 + i, None, "smart", "0" * 64, FEATURE_SET,
                                     feats, "[]", 0.7, column, column, column, 200))
    decisions.append(DecisionRow("req_old", None, 0.5, None, "smart", "0" * 64, "another-layout", b"\0" * 8, "[]",
                                 0.7, "small", "small", "small", 200))
    store.write(decisions)
    for i, (_, _, score) in enumerate(rows):
        store.put_feedback(f"req_{i}", score)
    store.put_feedback("req_old", 1.0)
    store.close()


def test_train_from_feedback_moves_the_heads_it_has_scores_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedder = Embedder()
    base = tmp_path / "base.json"
    csv_dir = tmp_path / "data"
    csv_dir.mkdir()
    with (csv_dir / "mixed.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "small", "big"])
        for i in range(60):
            # The base has it the wrong way round: the small model answers the hard prompts only.
            w.writerow([(HARD if i % 3 == 0 else EASY).format(i=i), i % 3 == 0, True])
    assert main(["router", "train", "--data", str(csv_dir), "--models", "small,big", "--out", str(base)]) == 0
    db = tmp_path / "store.db"
    # Feedback says otherwise: the small model fails every hard prompt and answers every easy one.
    rows = [((HARD if i % 2 else EASY).format(i=100 + i), "small", 0.0 if i % 2 else 1.0) for i in range(300)]
    _feedback_store(db, embedder, rows)
    out = tmp_path / "new.json"
    capsys.readouterr()
    assert main(["router", "train", "--from-feedback", "--store", str(db), "--router", str(base),
                 "--out", str(out)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert f"300 feedback scores (from {db}, 1 recorded with other features left out)" in said
    assert f"started from {base}" in said
    old, new = Scorer.load(base, embedder), Scorer.load(out, embedder)
    hard, easy = HARD.format(i=999), EASY.format(i=999)
    assert new.predict(hard)["small"] < old.predict(hard)["small"] - 0.2
    assert new.predict(easy)["small"] > old.predict(easy)["small"] + 0.2
    assert new.predict(hard)["big"] == pytest.approx(old.predict(hard)["big"])  # no feedback: kept as it was


def test_from_feedback_without_a_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["router", "train", "--from-feedback", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "No store at" in capsys.readouterr().err


def test_plot_draws_the_curve_beside_the_baselines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for group in ("alpha", "beta", "gamma"):
        with (data / f"{group}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["prompt", "weak", "strong"])
            for i in range(20):
                w.writerow([(HARD if i % 3 == 0 else EASY).format(i=f"{group}{i}"), i % 3 != 0, True])
    png = tmp_path / "curve.png"
    args = ["router", "eval", "--folds", "3", "--data", str(data), "--weak", "weak", "--strong", "strong",
            "--plot", str(png), "--json"]  # fmt: skip
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    for field in ("apgr", "cpt50", "cpt80", "weak_accuracy", "strong_accuracy", "decision_us_p99"):
        assert isinstance(got[field], float), field
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (900, 576)
        # Not a blank canvas: the four curves and their legend are drawn in several colours.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_plot_to_a_folder_that_does_not_exist_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    data.write_text("prompt,weak,strong\nA?,True,True\nB?,False,True\nC?,False,False\n")
    router = tmp_path / "r.json"
    assert main(["router", "train", "--data", str(data), "--weak", "weak", "--strong", "strong",
                 "--out", str(router)]) == 0  # fmt: skip
    args = ["router", "eval", "--router", str(router), "--data", str(data), "--weak", "weak", "--strong", "strong",
            "--plot", str(tmp_path / "no" / "such" / "curve.png")]  # fmt: skip
    with pytest.raises(SystemExit) as refused:  # before the router is loaded or anything scored
        main(args)
    assert refused.value.code == 2 and "such does not exist" in capsys.readouterr().err


def test_train_refuses_to_leave_a_named_model_without_a_head_and_warns_of_too_little(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_dir = tmp_path / "data"
    csv_dir.mkdir()
    with (csv_dir / "few.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "small", "big"])
        for i in range(12):
            w.writerow([(HARD if i % 3 == 0 else EASY).format(i=i), i % 3 != 0, True])
    out = tmp_path / "r.json"
    assert main(["router", "train", "--data", str(csv_dir), "--models", "small,big", "--out", str(out)]) == 0
    assert "warning: trained from scratch on 12 rows; a router needs hundreds" in capsys.readouterr().err
    db = tmp_path / "store.db"
    _feedback_store(db, Embedder(), [(EASY.format(i=i), "small", 1.0) for i in range(5)])
    again = tmp_path / "r2.json"
    assert main(["router", "train", "--from-feedback", "--store", str(db), "--router", str(out),
                 "--models", "small,smal", "--out", str(again)]) == 2  # fmt: skip
    assert "Nothing was learnt for smal: no labels for it" in capsys.readouterr().err and not again.exists()


def test_safety_results_are_left_out_unless_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A safety suite scores whether a model refused, not how well it answered: not a quality label by default."""
    from dataclasses import replace

    from polyroute.evals.suites import load_suite

    db = tmp_path / "results.sqlite3"
    store = SqliteStore(db)
    item = load_suite("xstest").items[0]
    for model, refused in (("small", True), ("big", False)):
        store.put(replace(_result(model, item.id, 1.0 if refused else 0.0), suite="xstest", suite_kind="safety",
                          refused=refused, should_refuse=True))
    store.close()
    out = str(tmp_path / "r.json")
    assert main(["router", "train", "--from-evals", "--models", "small,big", "--evals-db", str(db),
                 "--out", out]) == 2
    assert "2 of safety suites (a refusal is not an answer's quality" in capsys.readouterr().err
    assert main(["router", "train", "--from-evals", "--models", "small,big", "--evals-db", str(db),
                 "--suites", "xstest", "--out", out]) == 0
    assert "trained on 1 eval items" in capsys.readouterr().out


def test_feedback_of_a_route_the_config_does_not_have_is_named(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text('[backends.b]\ntype = "fake"\n[models.m]\nbackend = "b"\n'
                    '[routes.smart]\nmodels = ["m"]\n[routes.plain]\nmodels = ["m"]\n')
    (tmp_path / "store.db").write_bytes(b"")
    assert main(["router", "train", "--from-feedback", "--config", str(conf), "--store", str(tmp_path / "store.db"),
                 "--route", "smrat", "--out", str(tmp_path / "r.json")]) == 2
    assert f"--route smrat: no such route in {conf}" in capsys.readouterr().err
