"""``python -m bench.failover``: every fault at a fixed load; writes bench/failover/results.{md,json}.

    fault upstream (process) <--HTTP-- polyroute serve (process) <--HTTP-- this load generator

Each scenario is a route of two candidates: the first has the fault, the second is
healthy. Every scenario runs twice: with breakers that never open (every request
meets the fault: the cost of failover itself) and with the default breakers (the
fault is learnt and skipped). See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.failover import load as loadgen
from bench.failover.report import markdown, summarize
from bench.failover.scenarios import MODES, SCENARIOS, gateway_config, to_toml
from bench.procs import Service, free_port, wait_for_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=160, help="requests per scenario and mode (default 160)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--time-limit", type=float, default=15.0, help="seconds per scenario at most (default 15)")
    p.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    p.add_argument("--out", type=Path, default=HERE, help="where results.md and results.json go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",") or s.name == "healthy"]
    work = Path(tempfile.mkdtemp(prefix="polyroute-failover-bench-"))
    started_at = datetime.datetime.now(datetime.UTC)
    runs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        up_port = free_port()
        upstream = Service("fault-upstream", [sys.executable, "-m", "bench.failover.upstream", str(up_port)],
                           work / "upstream.log", cwd=REPO)
        stack.callback(upstream.stop)
        wait_for_port(up_port, upstream, 15)
        for mode in MODES:
            runs[mode] = run_mode(mode, chosen, args, work, up_port)
    doc = {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": machine.machine(),
        "versions": machine.versions(),
        "load": {"requests": args.requests, "concurrency": args.concurrency, "time_limit_s": args.time_limit},
        "scenarios": [{"name": s.name, "fault": s.fault, "what": s.what, "where": s.where} for s in chosen],
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    text, passed = markdown(doc, chosen)
    (args.out / "results.md").write_text(text)
    print(text)
    print(f"logs and configs: {work}", file=sys.stderr)
    return 0 if passed else 1


def run_mode(mode: str, chosen: list[Any], args: argparse.Namespace, work: Path, up_port: int) -> dict[str, Any]:
    port = free_port()
    config = work / f"{mode}.toml"
    raw = gateway_config(f"http://127.0.0.1:{up_port}/v1", f"http://127.0.0.1:{free_port()}/v1", mode)
    config.write_text(to_toml(raw))
    # This interpreter's polyroute (the one on its path), so a worktree's code is what runs.
    command = [sys.executable, "-m", "polyroute", "serve", "--config", str(config), "--port", str(port),
               "--log-level", "warning"]
    gateway = Service(f"polyroute-{mode}", command, work / f"polyroute-{mode}.log", cwd=REPO)
    try:
        wait_for_port(port, gateway, 30)
        base = f"http://127.0.0.1:{port}/v1"
        asyncio.run(loadgen.run(base, "healthy", 40, args.concurrency, 10))  # warm-up: pools, caches
        out: dict[str, Any] = {}
        for scenario in chosen:
            t0 = time.monotonic()
            result = asyncio.run(loadgen.run(base, scenario.name, args.requests, args.concurrency, args.time_limit,
                                             stream=scenario.stream))
            out[scenario.name] = summarize(result)
            print(f"[{mode}] {scenario.name}: {out[scenario.name]['success_pct']:.1f}% ok, "
                  f"{len(result.reads)} requests in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        return out
    finally:
        gateway.stop()


if __name__ == "__main__":
    raise SystemExit(main())
