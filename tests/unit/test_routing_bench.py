"""The routing-decision benchmark runs, and a decision stays far from the 100 µs budget."""

from __future__ import annotations

from bench.routing_decision import ROUTE_POLICY, STRATEGIES, TENANT, fleet_config, run
from polyroute.catalog import load_catalog


def _kept_by_the_policies(n: int) -> int:
    """How many of the benchmark's models pass its tenant and route policies, from the catalog's facts."""
    catalog = load_catalog()
    kept = 0
    for model in fleet_config(n)["models"].values():
        family = catalog.families[model["family"]]
        local = model["backend"] == "box"
        kept += (
            family.country not in TENANT["origins_deny"]
            and family.context_window >= TENANT["min_context"]
            and (local or family.mean_price() <= ROUTE_POLICY["max_price_per_mtok"])
        )
    return kept


def test_every_strategy_decides_quickly_over_fifty_models() -> None:
    rows = run(50, repeat=3, loops=200)
    assert [(r["strategy"], r["policy"]) for r in rows] == [
        (s, p) for s in STRATEGIES for p in ("(none)", "tenant + route-cap")
    ]
    kept = _kept_by_the_policies(50)
    assert 0 < kept < 50  # the policies do filter, and leave something to rank
    for r in rows:
        assert r["route_models"] == 50
        # The policies keep: no CN origin, 32K context, a price cap that local models (free) pass.
        assert r["candidates"] == (50 if r["policy"] == "(none)" else kept)
        # The budget is 100 µs; a loaded test machine gets five times that before this fails.
        assert r["us_per_decision"] < 500, r
