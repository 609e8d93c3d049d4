"""How long one routing decision takes: ``Router.plan`` over a 50-model route.

    .venv/bin/python -m bench.routing_decision [--models 50] [--repeat 5] [--json]

For each strategy, with no policy and with a policy that excludes about half the
route (the key's and the route's together), it times ``Router.plan`` for a short
chat request with ``timeit`` (the best of ``--repeat`` runs of auto-sized loops)
and prints microseconds per decision. A decision includes everything done per
request: the request's needs (token estimate, capabilities), the capability and
context checks, the strategy's ordering and the plan object. The policy half is
worked out once per (route, policies) at start, as in the gateway; ``fastest``
runs with every model measured.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import timeit
from dataclasses import dataclass
from typing import Any

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.errors import Attempt
from polyroute.fleet import Fleet, ModelEntry
from polyroute.routing import Principal, Router
from polyroute.types import ChatRequest, Usage, make_usage

STRATEGIES = ("ordered", "cheapest", "fastest", "weighted")
TENANT = {"origins_deny": ["CN"], "min_context": 32000}
ROUTE_POLICY = {"max_price_per_mtok": 6.0}


def fleet_config(n: int) -> dict[str, Any]:
    families = sorted(f.id for f in load_catalog().families.values() if not f.embeds)  # chat models only
    models = {
        f"m{i:02d}": {"backend": "box" if i % 3 == 0 else "cloud", "family": families[i % len(families)]}
        for i in range(n)
    }
    names = list(models)
    routes: dict[str, Any] = {}
    for s in STRATEGIES:
        extra = {"weights": {m: float(1 + i % 5) for i, m in enumerate(names)}} if s == "weighted" else {}
        routes[s] = {"models": names, "strategy": s, **extra}
        routes[f"{s}-policy"] = {"models": names, "strategy": s, "policy": "route-cap", **extra}
    return {
        "backends": {"box": {"type": "fake"}, "cloud": {"type": "fake", "locality": "remote"}},
        "models": models,
        "policies": {"tenant": TENANT, "route-cap": ROUTE_POLICY},
        "keys": {"acme": {"secret": "env:BENCH_KEY", "policy": "tenant"}},
        "routes": routes,
    }


@dataclass
class Answered:
    """One successful attempt, shaped as the failover report the router reads."""

    attempts: list[Attempt]
    model: ModelEntry
    usage: Usage


def measure_all(fleet: Fleet, router: Router) -> None:
    """Give ``fastest`` a measurement for every model, as after some traffic."""
    rng = random.Random(0)
    for entry in fleet.models.values():
        ms = rng.uniform(200, 2000)
        done = Answered([Attempt(entry.backend, entry.name, "ok", ms)], entry, make_usage(20, 100))
        router.observe(done, first_token_at=0.0, ended_at=ms / 2000)


def run(n: int, repeat: int, loops: int | None = None) -> list[dict[str, Any]]:
    """One row per strategy and policy; ``loops`` fixes the timeit loop count (default: auto-sized)."""
    config = cfg.parse(fleet_config(n), env={"BENCH_KEY": "x"}, source="<bench>")
    fleet = Fleet.build(config, load_catalog())
    router = Router(fleet, rng=random.Random(1))
    measure_all(fleet, router)
    req = ChatRequest.from_json({
        "model": "x", "max_tokens": 200,
        "messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is the capital of France? Answer in one word."}],
    })
    rows: list[dict[str, Any]] = []
    for s in STRATEGIES:
        for with_policy in (False, True):
            route = fleet.routes[f"{s}-policy" if with_policy else s]
            principal = Principal(key="acme", policy="tenant") if with_policy else Principal()
            plan = router.plan(route, req, principal)
            timer = timeit.Timer(lambda r=route, p=principal: router.plan(r, req, p))  # type: ignore[misc]
            number = loops or timer.autorange()[0]
            best = min(timer.repeat(repeat=repeat, number=number)) / number
            rows.append({
                "strategy": s, "policy": plan.policy or "(none)", "route_models": len(route.models),
                "candidates": len(plan.candidates), "us_per_decision": round(best * 1e6, 2),
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50, help="models in the route (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats; the best is kept (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    rows = run(args.models, args.repeat)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'strategy':<10} {'policy':<18} {'models':>6} {'kept':>5} {'µs/decision':>12}")
    for r in rows:
        print(f"{r['strategy']:<10} {r['policy']:<18} {r['route_models']:>6} {r['candidates']:>5} "
              f"{r['us_per_decision']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
