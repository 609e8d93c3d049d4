"""``python -m bench.tenancy_handler``: what tenancy adds to one chat request, in process, with no HTTP.

Builds the app as ``polyroute serve`` does, over the ``fake`` backend (no upstream, no
socket), and awaits it for ``/v1/chat/completions`` request after request, timing the
whole call: the key check, the plan, admission, the attempt, the headers and every
observer of the finished request. Each configuration runs in a process of its own:

    plain    no keys at all
    key      a key with no budget or limits
    limits   a key with a budget, an ``rpm`` and a ``tpm`` limit, counters in the process
    store    the admin API and a SQLite store (the ledger, the console), a key with no limits
    full     the store and a key with limits: ``bench.tenancy --tier sqlite``; with ``--redis``
             the counters are in Redis (``--tier redis``)

The loop turns once between two requests (``asyncio.sleep(0)``), as it does when serving:
awaited back to back with nothing else to do, uvloop would never get to close the timers
that requests cancel, and their objects would pile up for the garbage collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

MODES = ("plain", "key", "limits", "store", "full")
CLIENT_KEY = "sk-bench-tenancy-handler-0123456789"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
BASE = """[gateway]
listen = "127.0.0.1:18999"
[backends.fk]
type = "fake"
[models.m]
backend = "fk"
upstream = "text-hello-world"
"""
KEY = '[keys.bench]\nsecret = "env:BENCH_CLIENT_KEY"\n'
LIMITS = 'budget_usd = 1000000\nbudget_period = "month"\nrpm = 100000000\ntpm = 1000000000\n'
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there, how are you"}],
                     "max_tokens": 20})


def config_text(mode: str, tmp: str, redis: str | None) -> str:
    store = f'[admin]\nsecret = "env:BENCH_ADMIN_KEY"\n[store]\nurl = "sqlite:///{tmp}/bench.db"\n'
    if redis:
        store += f'redis = "{redis}"\n'
    return BASE + {"plain": "", "key": KEY, "limits": KEY + LIMITS, "store": store + KEY,
                   "full": store + KEY + LIMITS}[mode]


async def _time(mode: str, requests: int, rounds: int, redis: str | None) -> list[float]:
    import logging

    from polyroute.catalog import load_catalog_for
    from polyroute.gateway import Gateway
    from polyroute.server.app import create_app
    from polyroute.server.http11 import Request
    from polyroute.settings import effective_config

    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="polyroute-handler-") as tmp:
        path = Path(tmp) / "polyroute.toml"
        path.write_text(config_text(mode, tmp, redis))
        config = effective_config(str(path))
        app = create_app(Gateway.from_config(config, load_catalog_for(config)))
        await app.startup()
        headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
                   (b"authorization", b"Bearer " + CLIENT_KEY.encode())]
        try:
            first = await app(Request("POST", "/v1/chat/completions", headers, BODY, True))
            if first.status != 200:
                raise SystemExit(f"{mode}: the first request got {first.status}")
            for _ in range(2000):  # warm up
                await app(Request("POST", "/v1/chat/completions", headers, BODY, True))
                await asyncio.sleep(0)
            out = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                for _ in range(requests):
                    await app(Request("POST", "/v1/chat/completions", headers, BODY, True))
                    await asyncio.sleep(0)
                out.append((time.perf_counter() - t0) / requests * 1e6)
            return out
        finally:
            await app.shutdown()


def _child(mode: str, requests: int, rounds: int, redis: str | None) -> None:
    import uvloop

    os.environ["BENCH_CLIENT_KEY"] = CLIENT_KEY
    os.environ["BENCH_ADMIN_KEY"] = ADMIN_KEY
    print(json.dumps(uvloop.run(_time(mode, requests, rounds, redis))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tenancy_handler", description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--requests", type=int, default=20_000, help="requests per round (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per configuration (default 5)")
    p.add_argument("--redis", help="counters in this Redis, e.g. redis://127.0.0.1:6379/0 (store and full)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.requests, args.rounds, args.redis)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        p.error(f"unknown mode(s): {', '.join(unknown)}")
    base: float | None = None
    print(f"{'configuration':<10} {'µs per request (median of rounds)':>34}  {'added':>8}  rounds")
    for mode in modes:
        cmd = [sys.executable, "-m", "bench.tenancy_handler", "--child", mode, "--requests", str(args.requests),
               "--rounds", str(args.rounds)] + (["--redis", args.redis] if args.redis else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{mode}: failed\n{done.stderr.strip()[-2000:]}", file=sys.stderr)
            return 1
        runs = json.loads(done.stdout.strip().splitlines()[-1])
        median = statistics.median(runs)
        base = median if base is None else base
        added = f"{median - base:+.1f}" if mode != modes[0] else ""
        print(f"{mode:<10} {median:>34.1f}  {added:>8}  {' '.join(f'{r:.1f}' for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
