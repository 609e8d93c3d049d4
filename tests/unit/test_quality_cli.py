"""``polyroute router train`` and ``polyroute router eval`` on small labelled CSVs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from polyroute.cli import main
from polyroute.quality.data import load

EASY = "What colour is the sky on a clear day?\nA. Blue\nB. Green\nC. Red\nD. Black\nAnswer:"
HARD = (
    "Let f(x) = x^3 - 6x^2 + 11x - 6 and g(x) = 2x + 1. Compute the sum of all real x with f(g(x)) = 0, "
    "then give the remainder when 17^{42} is divided by 13.\nA. 3\nB. 7\nC. 11\nD. 12\nAnswer:"
)


def _write(folder: Path, group: str, n: int) -> None:
    with (folder / f"{group}.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["prompt", "weak", "strong", "mid"])
        for i in range(n):
            # Easy prompts both models answer; hard ones only the strong model.
            hard = i % 3 == 0
            tag = f"{group} {i}"
            text = (HARD if hard else EASY).replace("?", f" ({tag})?").replace("Compute", f"[{tag}] Compute")
            out.writerow([text, not hard, True, not hard or i % 2 == 0])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for group in ("alpha", "beta", "gamma"):
        _write(folder, group, 30)
    return folder


def test_train_then_eval_prints_the_metrics_beside_the_baselines(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "router.json"
    args = ["router", "train", "--data", str(data), "--weak", "weak", "--strong", "strong", "--out", str(out)]
    assert main(args) == 0
    model = json.loads(out.read_text())
    assert model["columns"] == ["weak", "strong"]
    capsys.readouterr()
    args = ["router", "eval", "--router", str(out), "--data", str(data), "--weak", "weak", "--strong", "strong"]
    assert main([*args, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["weak_accuracy"] == pytest.approx(60 / 90)
    assert got["strong_accuracy"] == 1.0
    # The hard third is separable: the router sends it first, recovering the gap at a third of the calls.
    assert got["cpt50"] <= 0.2 and got["cpt80"] <= 0.3
    assert got["apgr"] > 0.8
    assert got["random"]["apgr"] == pytest.approx(0.5)
    assert got["oracle"]["cpt50"] == pytest.approx(15 / 90, abs=1 / 90)
    assert got["decision_us_p99"] > 0
    assert main(args) == 0
    text = capsys.readouterr().out
    for word in ("APGR", "CPT(50%)", "length", "random", "oracle", "strong calls", "decision time"):
        assert word in text


def test_eval_cross_validates_by_group_without_a_router(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["router", "eval", "--folds", "3", "--data", str(data), "--weak", "weak", "--strong", "strong", "--json"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["folds"] == 3 and got["prompts"] == 90
    assert [(f["groups"], f["prompts"]) for f in got["per_fold"]] == [(1, 30)] * 3
    assert all(f["apgr"] > 0.8 and "length_apgr" in f for f in got["per_fold"])
    assert got["apgr"] > 0.8  # each group is scored by a model trained on the two others


def test_too_many_folds_is_a_clear_error(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["router", "eval", "--folds", "4", "--data", str(data), "--weak", "weak", "--strong", "strong"]
    assert main(args) == 2
    assert "--folds must be between 2 and the number of groups (3)" in capsys.readouterr().err


def test_a_missing_column_is_named(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["router", "train", "--data", str(data), "--weak", "mixtral", "--strong", "strong",
            "--out", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    assert "no column 'mixtral'" in capsys.readouterr().err


def test_contaminated_prompts_are_dropped(data: Path) -> None:
    first = load([data], ["weak", "strong"]).examples[0].prompt
    (data / "contaminated_prompts.jsonl").write_text(json.dumps({"train_prompt": "x", "eval_prompt": first}) + "\n")
    again = load([data], ["weak", "strong"])
    assert again.dropped == 1 and len(again.examples) == 89
    assert all(e.prompt != first for e in again.examples)


def test_several_model_columns_give_one_head_each(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "router.json"
    args = ["router", "train", "--data", str(data), "--weak", "weak", "--strong", "strong",
            "--model", "mid", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert list(json.loads(out.read_text())["heads"]) == ["weak", "strong", "mid"]


def test_eval_refuses_data_where_the_strong_model_is_not_stronger(
    data: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """PGR divides by the strong model's lead: with the columns swapped it is negative, and every figure would
    read as its opposite (an oracle below random). Refused, saying so, rather than printed."""
    args = ["router", "eval", "--folds", "3", "--data", str(data), "--weak", "strong", "--strong", "weak", "--json"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--strong 'weak' is right on 66.7% and --weak 'strong' on 100.0%" in captured.err
    assert "Swap --weak and --strong" in captured.err


@pytest.mark.parametrize("command", [
    ["router", "train", "--weak", "weak", "--strong", "strong", "--out"],
    ["router", "eval", "--weak", "weak", "--strong", "strong", "--plot"],
])
def test_an_output_in_a_folder_that_does_not_exist_is_refused_before_any_work(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, str(tmp_path / "no-such-folder" / "out.file"), "--data", str(data)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "no-such-folder does not exist" in err
