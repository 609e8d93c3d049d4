"""RouteLLM's metrics against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from polyroute.quality.metrics import curve, oracle_scores, random_curve

# Four prompts: the weak model answers only the first, the strong one the first three.
WEAK = [True, False, False, False]
STRONG = [True, True, True, False]


def test_a_router_that_picks_the_gains_first() -> None:
    c = curve([0.1, 0.9, 0.8, 0.2], WEAK, STRONG)
    assert c.weak_accuracy == 0.25 and c.strong_accuracy == 0.75
    # Shares 0, 1/4, ... 1: accuracy 0.25, 0.5, 0.75, 0.75, 0.75 -> PGR 0, .5, 1, 1, 1.
    np.testing.assert_allclose(c.accuracy, [0.25, 0.5, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(c.pgr, [0, 0.5, 1, 1, 1])
    # Trapezoids of width 1/4: (0+.5)/2 + (.5+1)/2 + 1 + 1 = 3 -> 3/4.
    assert c.apgr() == pytest.approx(0.75)
    assert c.cpt(0.5) == 0.25
    assert c.cpt(0.8) == 0.5


def test_a_router_that_picks_them_last() -> None:
    c = curve([0.9, 0.1, 0.2, 0.8], WEAK, STRONG)
    np.testing.assert_allclose(c.pgr, [0, 0, 0, 0.5, 1])
    assert c.apgr() == pytest.approx(0.25)
    assert c.cpt(0.5) == 0.75


def test_random_routing_is_the_diagonal() -> None:
    c = random_curve(WEAK, STRONG)
    np.testing.assert_allclose(c.pgr, [0, 0.25, 0.5, 0.75, 1])
    assert c.apgr() == pytest.approx(0.5)
    assert c.cpt(0.5) == 0.5
    assert c.cpt(0.8) == 1.0


def test_ties_are_the_expectation_over_orders() -> None:
    # Block {0, 1} gains 0 then 1, block {2, 3} gains 1 then 0: straight lines between block ends.
    c = curve([1, 1, 0, 0], WEAK, STRONG)
    np.testing.assert_allclose(c.accuracy, [0.25, 0.375, 0.5, 0.625, 0.75])


def test_the_oracle_can_recover_more_than_the_gap() -> None:
    weak, strong = [False, True, False], [True, False, True]
    c = curve(oracle_scores(weak, strong), weak, strong)
    # Gains 1, 1, -1 in oracle order: accuracy 1/3, 2/3, 1, 2/3 -> PGR 0, 1, 2, 1.
    np.testing.assert_allclose(c.pgr, [0, 1, 2, 1])
    assert c.apgr() == pytest.approx(7 / 6)
    assert c.cpt(0.5) == pytest.approx(1 / 3)
    assert c.at(2 / 3) == (pytest.approx(1.0), pytest.approx(2.0))


def test_no_gap_gives_zero_pgr_not_a_division_error() -> None:
    c = curve([0.5, 0.4], [True, False], [True, False])
    assert c.apgr() == 0.0


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError):
        curve([0.5], [True, False], [True, False])


def test_the_group_rate_oracle_scores_each_prompt_by_its_groups_gain() -> None:
    from polyroute.quality.data import Dataset, Example
    from polyroute.quality.evaluate import report

    # Group "hard": the strong model alone answers both prompts (gain 1 each); "easy": both answer (gain 0).
    rows = [("hard", False, True), ("easy", True, True), ("hard", False, True), ("easy", True, True)]
    data = Dataset([Example(f"q{i}", grp, {"w": wk, "s": st}) for i, (grp, wk, st) in enumerate(rows)], 0)
    rep = report(data, np.zeros(4), "w", "s", None)
    # The hard group goes first: accuracy 0.5, 0.75, 1, 1, 1 -> PGR 0, .5, 1, 1, 1 -> APGR 3/4.
    np.testing.assert_allclose(rep.group_rate.accuracy, [0.5, 0.75, 1.0, 1.0, 1.0])
    assert rep.group_rate.apgr() == pytest.approx(0.75)
    assert rep.summary()["group_rate_oracle"] == {"apgr": pytest.approx(0.75), "cpt50": 0.25, "cpt80": 0.5}
