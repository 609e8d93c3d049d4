"""How long a ``strategy = "quality"`` decision takes: ``Router.plan`` with a trained router.

    .venv/bin/python -m bench.quality_decision --router router.json --data routellm-mmlu/ \\
        --weak COL --strong COL [--n 2000] [--core 0] [--json]

The process is pinned to one core (``--core``). For ``--n`` prompts taken evenly
from ``--data`` (all lengths, so long passages are in), after one warm pass over
them, it times ``Router.plan`` on a two-model quality route: the request's needs,
the prompt's features (word lookups, embedding, cheap features), every head of the
router and the ordering. It prints p50, p99 and the maximum in microseconds, both
as wall time and as this thread's CPU time: on a machine shared with other work the
wall time includes waiting for the core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.fleet import Fleet
from polyroute.quality.data import load
from polyroute.routing import Principal, Router
from polyroute.types import ChatRequest


def route_config(router: str, weak: str, strong: str) -> dict[str, Any]:
    return {
        "backends": {"box": {"type": "fake"}},
        "models": {
            "weak": {"backend": "box", "input_per_mtok": 0.6, "output_per_mtok": 0.6},
            "strong": {"backend": "box", "input_per_mtok": 10.0, "output_per_mtok": 30.0},
        },
        "routes": {
            "smart": {"models": ["strong", "weak"], "strategy": "quality", "router": router,
                      "quality_target": 0.7, "router_columns": {"weak": weak, "strong": strong}},
        },
    }


def measure(router: Router, fleet: Fleet, prompts: list[str]) -> dict[str, dict[str, float]]:
    route = fleet.resolve("smart")
    who = Principal()
    reqs = [ChatRequest.from_json({"model": "smart", "messages": [{"role": "user", "content": p}]}) for p in prompts]
    for req in reqs:  # warm: caches of split words, allocator
        router.plan(route, req, who)
    wall: list[float] = []
    cpu: list[float] = []
    for req in reqs:
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        router.plan(route, req, who)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        wall.append((time.perf_counter_ns() - w0) / 1000)
    return {name: _summary(v) for name, v in (("wall_us", wall), ("cpu_us", cpu))}


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", required=True)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--weak", required=True)
    ap.add_argument("--strong", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {args.core})
    prompts = [e.prompt for e in load(args.data, [args.weak, args.strong]).examples]
    prompts = prompts[:: max(1, len(prompts) // args.n)][: args.n]
    config = cfg.parse(route_config(os.path.abspath(args.router), args.weak, args.strong), env={})
    fleet = Fleet.build(config, load_catalog())
    result = {"prompts": len(prompts), "mean_chars": float(np.mean([len(p) for p in prompts])),
              **measure(Router(fleet), fleet, prompts)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['prompts']} prompts (mean {result['mean_chars']:.0f} chars), one core, Router.plan:")
        for kind in ("wall_us", "cpu_us"):
            s = result[kind]
            print(f"  {kind[:-3]:4}  p50 {s['p50']:7.0f} us  p99 {s['p99']:7.0f} us  max {s['max']:7.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
