"""The usage ledger into PostgreSQL: what the writer sustains, what the spool costs, how fast it replays.

    python -m bench.ledger_postgres [--server postgresql://postgres@127.0.0.1:5432/postgres] [--rows 50000]

Makes a database with a random name on the server, drops it after, and prints:

- ``store.write``: rows per second committed by ``PostgresStore.write`` alone, per batch size, and the
  CPU this process spends per row doing it (the gateway's share; the server's is not counted);
- ledger end to end: rows per second from ``Ledger.finished`` to committed, through the spool;
- spool append: milliseconds to encode, write and ``fsync`` one batch (the spooler's cost per tick);
- replay: rows per second drained from a full spool once the database is reachable again.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from polyroute.attempts import Report
from polyroute.finish import Finished
from polyroute.gateway import RequestContext
from polyroute.tenancy.ledger import Ledger
from polyroute.tenancy.postgres import PostgresStore
from polyroute.tenancy.spool import Spool
from polyroute.tenancy.stores import UsageRow

ATTEMPTS = '[{"backend": "openai", "model": "gpt-4.1-mini", "outcome": "ok", "ms": 812.4}]'


def rows(n: int, prefix: str) -> list[UsageRow]:
    at = datetime.now(UTC)
    return [UsageRow(f"{prefix}{i:09d}", at + timedelta(microseconds=i), "app-key", "team", "main", "gpt-4.1-mini",
                     "openai", ATTEMPTS, 812, 145, 0.0004123, False, 815.2, 240.1, 200, None, True)
            for i in range(n)]


def write_rate(store: PostgresStore, n: int, batch: int, prefix: str) -> tuple[float, float]:
    """Rows per second, and this process's CPU microseconds per row."""
    todo = rows(n, prefix)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        store.write(todo[i:i + batch])
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


def ledger_rate(store: PostgresStore, n: int, folder: Path) -> float:
    ledger = Ledger(store, batch_size=500, flush_interval=0.05, spool=Spool(folder / "end-to-end.jsonl"))
    ledger.start()
    started = time.perf_counter()
    for i in range(n):
        ledger.finished(RequestContext(), Report(route="main"), Finished(f"e2e{i:09d}", 200, False, 0.0, 0.8))
    assert ledger.flush(timeout=600)
    rate = n / (time.perf_counter() - started)
    ledger.close()
    return rate


def append_ms(folder: Path, batch: int) -> float:
    spool = Spool(folder / "append.jsonl")
    times = []
    for k in range(50):
        todo = rows(batch, f"ap{k}-")
        started = time.perf_counter()
        spool.append(todo)
        times.append((time.perf_counter() - started) * 1000)
    spool.close()
    return statistics.median(times)


def replay_rate(store: PostgresStore, n: int, folder: Path) -> tuple[float, int]:
    path = folder / "replay.jsonl"
    spool = Spool(path)
    for i in range(0, n, 5000):
        spool.append(rows(min(5000, n - i), f"rp{i}-"))
    size = path.stat().st_size
    spool.close()
    ledger = Ledger(store, batch_size=500, flush_interval=0.5, spool=Spool(path))
    started = time.perf_counter()
    ledger.start()  # a spool left behind is replayed at once
    assert ledger.flush(timeout=600)
    rate = n / (time.perf_counter() - started)
    ledger.close()
    return rate, size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rows", type=int, default=50_000)
    args = p.parse_args()
    name = "polyroute_bench_" + secrets.token_hex(6)
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        store = PostgresStore(args.server.rsplit("/", 1)[0] + "/" + name)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print("| measure | figure |\n|---|---|")
            for batch in (100, 500, 2000):
                rate, cpu = write_rate(store, args.rows, batch, f"w{batch}-")
                print(f"| store.write, batches of {batch} | {rate:,.0f} rows/s, {cpu:.1f} µs CPU/row here |")
            print(f"| ledger end to end (finished -> spool -> database) | {ledger_rate(store, args.rows, folder):,.0f}"
                  " rows/s |")
            for batch in (250, 2500):
                print(f"| spool append + fsync, {batch} rows | {append_ms(folder, batch):.2f} ms (median) |")
            rate, size = replay_rate(store, args.rows, folder)
            print(f"| replay of a spool of {args.rows:,} rows ({size / 1e6:.1f} MB) | {rate:,.0f} rows/s, "
                  f"{args.rows / rate:.2f} s |")
        store.close()
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
