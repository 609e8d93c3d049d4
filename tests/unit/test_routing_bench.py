"""The routing-decision benchmark runs, and a decision stays far from the 100 µs budget."""

from __future__ import annotations

from bench.routing_decision import STRATEGIES, run


def test_every_strategy_decides_quickly_over_fifty_models() -> None:
    rows = run(50, repeat=3, loops=200)
    assert [(r["strategy"], r["policy"]) for r in rows] == [
        (s, p) for s in STRATEGIES for p in ("(none)", "tenant + route-cap")
    ]
    for r in rows:
        assert r["route_models"] == 50
        # The policies keep 17 of 50: no CN origin, 32K context, a price cap that local models (free) pass.
        assert r["candidates"] == (50 if r["policy"] == "(none)" else 17)
        # The budget is 100 µs; a loaded test machine gets five times that before this fails.
        assert r["us_per_decision"] < 500, r
