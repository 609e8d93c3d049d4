"""Agreement between the refusal rules and a judge: the share agreeing and Cohen's kappa."""

from __future__ import annotations

import pytest

from polyroute.evals.agreement import AGREEMENT_FIELDS, agreement, cohen_kappa
from polyroute.evals.store import Judgement, Result


def test_cohen_kappa_on_a_worked_example() -> None:
    # 50 items: both yes 20, rules-only 5, judge-only 10, both no 15. Observed 0.7; the rules say yes
    # half the time and the judge 60%, so chance is 0.5*0.6 + 0.5*0.4 = 0.5; kappa (0.7-0.5)/0.5 = 0.4.
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_edges() -> None:
    assert cohen_kappa([(True, True), (False, False)]) == pytest.approx(1.0)
    assert cohen_kappa([(True, False), (False, True)]) == pytest.approx(-1.0)
    # One rater constant, the other not: agreement is at chance.
    assert cohen_kappa([(True, True), (True, False)]) == pytest.approx(0.0)
    # Both constant and equal: chance agreement is 1, kappa undefined.
    assert cohen_kappa([(True, True)] * 3) is None
    assert cohen_kappa([]) is None


def _result(model: str, item: str, refused: bool | None, error: str | None = None) -> Result:
    return Result(model=model, suite="s", item=item, category="", lang="en", suite_kind="safety", scorer="refuse",
                  answer=None if error else "x", score=None, refused=refused, should_refuse=True, extracted=None,
                  prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_s=0.1, error=error)


def _verdict(model: str, item: str, refused: bool | None, error: str | None = None, task: str = "refusal",
             version: str = "1") -> Judgement:
    return Judgement(model=model, suite="s", item=item, judge="j", prompt_version=version, task=task,
                     score=None, refused=refused, reply="", cost_usd=0.0, latency_s=0.1, error=error)


def test_agreement_rows_per_model_and_pooled() -> None:
    results = [_result("a", "1", True), _result("a", "2", True), _result("b", "1", False), _result("b", "2", True),
               _result("b", "3", None, error="boom")]
    verdicts = [_verdict("a", "1", True), _verdict("a", "2", True), _verdict("b", "1", False),
                _verdict("b", "2", False),
                # Left out: a failed call, an unreadable verdict, a rubric verdict, an item with no result.
                _verdict("b", "3", True), _verdict("a", "3", None, error="unreadable"),
                _verdict("a", "1", None, task="rubric", version="2"), _verdict("c", "9", True)]
    rows = agreement(results, verdicts)
    assert all(list(r) == list(AGREEMENT_FIELDS) for r in rows)
    pooled, a, b = rows
    assert (pooled["model"], pooled["n"], pooled["agreement"]) == (None, 4, 0.75)
    # Pooled: rules yes 3/4, judge yes 2/4; chance 0.75*0.5 + 0.25*0.5 = 0.5; kappa (0.75-0.5)/0.5.
    assert pooled["kappa"] == 0.5
    assert (a["model"], a["n"], a["agreement"], a["kappa"]) == ("a", 2, 1.0, None)
    assert (b["model"], b["agreement"], b["kappa"]) == ("b", 0.5, 0.0)
    assert (b["rules_refusal_rate"], b["judge_refusal_rate"]) == (0.5, 0.0)
    # Item 3 of b failed to answer, so the rules have no verdict: not counted. Item 3 of a has no result either.
    assert (pooled["judge_errors"], a["judge_errors"], b["judge_errors"]) == (0, 0, 0)


def test_a_judge_without_readable_verdicts_is_counted_not_hidden() -> None:
    results = [_result("a", "1", True), _result("a", "2", False)]
    verdicts = [_verdict("a", "1", None, error="the reply gives no verdict that can be read"),
                _verdict("a", "2", False)]
    pooled, a = agreement(results, verdicts)
    assert (a["n"], a["judge_errors"], a["agreement"]) == (1, 1, 1.0) and pooled["judge_errors"] == 1
    [row] = agreement(results[:1], verdicts[:1])[1:]
    assert (row["n"], row["judge_errors"], row["agreement"], row["kappa"], row["judge_refusal_rate"]) == (
        0, 1, None, None, None)
