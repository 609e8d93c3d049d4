"""``python -m bench.tenancy``: what keys, budgets, rate limits (Redis) and the ledger (PostgreSQL) add.

    loadgen --HTTP/1.1--> polyroute (plain)            --> fake upstream
    loadgen --HTTP/1.1--> polyroute (keys + Redis + PG) --> fake upstream

The same gateway twice, both up for the whole run, taking turns scenario by scenario
and round by round, so the host's drift weighs on both alike. The second one checks a
key with a budget, an ``rpm`` and a ``tpm`` limit, reserves and settles in Redis, and
writes every request to the PostgreSQL ledger. Targets: at most +0.5 ms added p50
latency, and throughput within 10%. Needs Redis on 127.0.0.1:6379 and PostgreSQL on
127.0.0.1:5432 (user postgres, trust); says so and exits 2 when either is missing.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import machine
from bench.plan import CHAT, SATURATE, STREAM, Plan, Scenario
from bench.runner import _alternate, _sigterm_unwinds, native_tools, start_upstreams
from bench.targets import Polyroute, Target

HERE = Path(__file__).resolve().parent
DATABASE = "polyroute_bench"
ADDED_P50_MS = 0.5
THROUGHPUT_RATIO = 0.90

KEY = """
[keys.bench]
secret = "env:BENCH_CLIENT_KEY"
budget_usd = 1000000
budget_period = "month"
rpm = 100000000
tpm = 1000000000
"""
# What the tenancy gateway adds to the plain one, tier by tier.
TIERS = {
    # keys with a budget and limits, counted in the process, the ledger in a SQLite file
    "sqlite": '[admin]\nsecret = "env:BENCH_ADMIN_KEY"\n[store]\nurl = "sqlite:///{tmp}/bench.db"\n',
    # the counters in Redis, the ledger in a SQLite file
    "redis": '[admin]\nsecret = "env:BENCH_ADMIN_KEY"\n[store]\nurl = "sqlite:///{tmp}/bench.db"\n'
             'redis = "redis://127.0.0.1:6379/0"\n',
    # the scale-out tier: counters in Redis, keys and the ledger in PostgreSQL
    "full": '[admin]\nsecret = "env:BENCH_ADMIN_KEY"\n[store]\n'
            f'url = "postgresql://postgres@127.0.0.1:5432/{DATABASE}"\nredis = "redis://127.0.0.1:6379/0"\n',
}


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v.get(p, {}) if isinstance(v, dict) else {}
        if isinstance(v, (int, float)):
            values.append(float(v))
    return statistics.median(values) if values else float("nan")


def summarize(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for scenario, by_target in out.items():
        plain, full = by_target["polyroute"], by_target["polyroute-tenancy"]
        p50_a, p50_b = _median(plain, "latency_ms", "p50"), _median(full, "latency_ms", "p50")
        rps_a, rps_b = _median(plain, "rps"), _median(full, "rps")
        added, ratio = p50_b - p50_a, rps_b / rps_a if rps_a else float("nan")
        errors = sum(int(r.get("errors", 0)) for r in plain + full)
        rows.append({
            "scenario": scenario, "p50_ms": round(p50_a, 2), "p50_tenancy_ms": round(p50_b, 2),
            "added_p50_ms": round(added, 2), "rps": round(rps_a, 1), "rps_tenancy": round(rps_b, 1),
            "throughput_ratio": round(ratio, 3), "errors": errors,
            "pass": added <= ADDED_P50_MS and ratio >= THROUGHPUT_RATIO and errors == 0,
        })
    return rows


def markdown(rows: list[dict[str, Any]], note: str) -> str:
    lines = [
        "# Tenancy overhead (python -m bench.tenancy)", "", note, "",
        f"Targets: added p50 ≤ {ADDED_P50_MS} ms, throughput ≥ {THROUGHPUT_RATIO:.0%} of the plain gateway.", "",
        "| scenario | p50 plain ms | p50 tenancy ms | added p50 ms | req/s plain | req/s tenancy | ratio | errors | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['p50_ms']} | {r['p50_tenancy_ms']} | {r['added_p50_ms']} | {r['rps']} "
                     f"| {r['rps_tenancy']} | {r['throughput_ratio']} | {r['errors']} | "
                     f"{'PASS' if r['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tenancy", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="turns each gateway takes per scenario (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="where tenancy.md and tenancy.json go")
    p.add_argument("--tier", choices=sorted(TIERS), default="full",
                   help="sqlite: keys and ledger in SQLite, counters in the process; redis: counters in Redis; "
                        "full (default): counters in Redis, keys and ledger in PostgreSQL")
    p.add_argument("--scenarios", default="chat-c1,chat-c64,stream-c64,saturate-c64",
                   help="comma-separated, from chat-cN, stream-cN, saturate-cN")
    args = p.parse_args(argv)
    needs = {"sqlite": (), "redis": (("Redis", 6379),), "full": (("Redis", 6379), ("PostgreSQL", 5432))}[args.tier]
    missing = [name for name, port in needs if not _reachable(port)]
    if missing:
        print(f"bench.tenancy: {' and '.join(missing)} not reachable on 127.0.0.1", file=sys.stderr)
        return 2
    if args.tier == "full":
        _database()
    plan = Plan(duration=args.duration, paired_rounds=args.rounds)
    kinds = {"chat": CHAT, "stream": STREAM, "saturate": SATURATE}
    scenarios = [Scenario(kinds[k], int(c)) for k, c in (n.strip().split("-c") for n in args.scenarios.split(","))]
    tools, _ = native_tools()
    with _sigterm_unwinds(), ExitStack() as stack, tempfile.TemporaryDirectory(prefix="polyroute-tenancy-") as tmp:
        workdir = Path(tmp)
        tenancy = TIERS[args.tier].format(tmp=tmp) + KEY
        pair: dict[str, Target] = {"polyroute": Polyroute(1), "polyroute-tenancy": Polyroute(1, tenancy=tenancy)}
        upstreams, services = start_upstreams(plan, stack, workdir, tools)
        out = _alternate(pair, scenarios, plan, upstreams, services, workdir, tools)
        if not out or "failed" in out:
            print(f"bench.tenancy: {out.get('failed', 'a gateway could not be prepared')}", file=sys.stderr)
            return 1
    rows = summarize(out)
    info = machine.machine(0.2)
    note = (f"Tier: {args.tier}. {info['cpus_usable']} usable CPUs ({info['cpu_model']}); load average at the end "
            f"{info['loadavg_at_start']}; {args.rounds} rounds of {args.duration:g} s per scenario and gateway.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tenancy.json").write_text(json.dumps({"rows": rows, "raw": out}, indent=2) + "\n")
    (args.out / "tenancy.md").write_text(markdown(rows, note))
    print(markdown(rows, note))
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
