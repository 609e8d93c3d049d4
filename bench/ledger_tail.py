"""``python -m bench.ledger_tail``: what one look of the console costs, at a given request rate.

Fills a SQLite ledger with five minutes of rows at ``--rate`` requests a second, then times
(``time.thread_time``, the CPU of the thread that reads, as the console's does) the two ways
a look can find what is new: re-reading the last five minutes by request time, and reading
the rows written since the last look (``written_after``), five seconds of them, as the
console's pages ask every five seconds; and the same five minutes summed per minute by
the store (``traffic``), as the first look takes its day. Last, the usage report over the
same rows (``polyroute usage``, ``GET /admin/usage``), made row by row and by SQLite, and the
console's Usage chart (cost per step per group, ``cost_by_step``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from polyroute.console.recent import RATIO
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import UsageRow
from polyroute.tenancy.usage import summarize

WINDOW_S = 300  # what the console re-read at each look before
POLL_S = 5  # the pages' poll


def _rows(n: int, start: datetime, prefix: str, rate: int) -> list[UsageRow]:
    return [UsageRow(f"{prefix}{i}", start + timedelta(seconds=i / rate), "k", "t", "main", "m", "b", "[]", 5, 10,
                     0.001, False, 50.0, None, 200, None, False) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger_tail", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=1000, help="requests a second (default 1000)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="polyroute-tail-") as tmp:
        store = SqliteStore(Path(tmp) / "ledger.db")
        now = datetime.now(UTC)
        chunk = 5000
        for k in range(0, WINDOW_S * args.rate, chunk):
            store.write(_rows(chunk, now - timedelta(seconds=WINDOW_S - k / args.rate), f"r{k}-", args.rate))
        _, mark = store.written_after(None)
        store.write(_rows(POLL_S * args.rate, now, "new-", args.rate))
        t0 = time.thread_time()
        window = store.rows(now - timedelta(seconds=WINDOW_S))
        t1 = time.thread_time()
        new, _ = store.written_after(mark)
        t2 = time.thread_time()
        summed = store.traffic(now - timedelta(seconds=WINDOW_S), mark, RATIO)
        t3 = time.thread_time()
        by_rows = summarize(store.rows(now - timedelta(seconds=WINDOW_S)), "model")
        t4 = time.thread_time()
        by_sql = store.summary(now - timedelta(seconds=WINDOW_S), "model")
        t5 = time.thread_time()
        store.cost_by_step(now - timedelta(seconds=WINDOW_S), "model", 60)
        t6 = time.thread_time()
        store.close()
    assert by_rows == by_sql
    print(f"{args.rate} req/s, a look every {POLL_S} s:")
    print(f"  the last {WINDOW_S} s again, row by row: {len(window):>8} rows  {t1 - t0:6.3f} s CPU")
    print(f"  written since the last look:         {len(new):>8} rows  {t2 - t1:6.3f} s CPU")
    print(f"  the last {WINDOW_S} s summed by SQLite:  {len(summed.totals):>8} minutes  {t3 - t2:6.3f} s CPU "
          "(as a first look takes its day)")
    print(f"  `polyroute usage --by model` over them, row by row: {t4 - t3:6.3f} s CPU; summed by SQLite: "
          f"{t5 - t4:6.3f} s CPU")
    print(f"  the Usage page's cost per step per group over them, summed by SQLite: {t6 - t5:6.3f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
