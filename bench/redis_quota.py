"""What shared counters in Redis add to a request: `python -m bench.redis_quota [--requests N]`.

Two measurements, each side by side in one run:

- the counter store alone: ``reserve`` then ``settle`` of a request with a budget, an
  rpm and a tpm limit (three buckets), in Redis and in memory, one after the other;
- end to end: two `polyroute serve` processes with the same config and key (budget,
  rpm, tpm; ledger in SQLite), one counting in Redis (``[store] redis``), one in its
  own memory. Requests go to both in turn, one at a time over keep-alive connections,
  so both see the same load on the machine; the fake backend answers at once.

Needs Redis at ``--redis`` (default redis://127.0.0.1:6379/0); its keys go under a
random prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from polyroute.redislink import RedisLink
from polyroute.tenancy.memory import MemoryCounters
from polyroute.tenancy.rediscounters import RedisCounters
from polyroute.tenancy.stores import Charge, CounterStore

SECRET = "sk-bench-0123456789abcdef0123"
CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
[backends.f]
type = "fake"
[models.quick]
backend = "f"
input_per_mtok = 1.0
output_per_mtok = 2.0
[keys.bench]
secret = "env:BENCH_KEY"
budget_usd = 1000000.0
rpm = 100000000
tpm = 100000000
[store]
url = "sqlite:///{db}"
{redis}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def store_cost(counters: CounterStore, n: int) -> list[float]:
    took = []
    for i in range(n):
        now = time.time()
        charges = [Charge("key:bench:rpm:w", 1e12, 1, now + 60), Charge("key:bench:tpm:w", 1e12, 40, now + 60),
                   Charge("key:bench:usd:m", 1e12, 0.001, now + 20 * 86400)]
        started = time.perf_counter()
        await counters.reserve(charges, now)
        await counters.settle([(charges[0], 1), (charges[1], 25), (charges[2], 0.0004)], now, time.time())
        took.append((time.perf_counter() - started) * 1e6)
        if i == 0:
            took.clear()
    return took


def start(workdir: Path, name: str, redis_line: str) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = workdir / f"{name}.toml"
    config.write_text(CONFIG.format(port=port, db=workdir / f"{name}.db", redis=redis_line))
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "BENCH_KEY": SECRET})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start: see {workdir / name}.log")


def end_to_end(redis_url: str, prefix: str, n: int) -> dict[str, list[float]]:
    body = {"model": "quick", "max_tokens": 16, "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"authorization": f"Bearer {SECRET}"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        procs = {
            "memory": start(work, "memory", ""),
            "redis": start(work, "redis", f'redis = "{redis_url}"\nredis_prefix = "{prefix}"'),
        }
        took: dict[str, list[float]] = {name: [] for name in procs}
        try:
            clients = {name: httpx.Client(base_url=url, headers=headers, timeout=10) for name, (_, url) in
                       procs.items()}
            for i in range(n + 200):
                for name, client in clients.items():
                    started = time.perf_counter()
                    resp = client.post("/v1/chat/completions", json=body)
                    ms = (time.perf_counter() - started) * 1000
                    assert resp.status_code == 200, resp.text
                    if i >= 200:  # warm-up left out
                        took[name].append(ms)
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(30)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"bench-{os.urandom(4).hex()}:"

    async def stores() -> dict[str, list[float]]:
        link = RedisLink(args.redis, prefix)
        out = {"redis": await store_cost(RedisCounters(link), args.requests),
               "memory": await store_cost(MemoryCounters(), args.requests)}
        await link.aclose()
        return out

    try:
        for name, took in asyncio.run(stores()).items():
            print(f"reserve+settle, {name:6}: p50 {statistics.median(took):8.1f} us   p95 {pct(took, 0.95):8.1f} us")
        e2e = end_to_end(args.redis, prefix, args.requests)
        for name, took in e2e.items():
            print(f"request end to end, {name:6}: p50 {statistics.median(took):6.3f} ms   p95 {pct(took, 0.95):6.3f} ms"
                  f"   ({len(took)} requests)")
        added = statistics.median(e2e["redis"]) - statistics.median(e2e["memory"])
        print(f"added by Redis at p50: {added:+.3f} ms")
    finally:
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
