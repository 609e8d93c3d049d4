"""``python -m bench.ledger_tail``: what one look of the console costs, at a given request rate.

Fills a SQLite ledger with five minutes of rows at ``--rate`` requests a second, then times
(``time.thread_time``, the CPU of the thread that reads, as the console's does) the two ways
a look can find what is new: re-reading the last five minutes by request time, and reading
the rows written since the last look (``written_after``), five seconds of them, as the
console's pages ask every five seconds; and the same five minutes summed per minute by
the store (``traffic``), as the first look takes its day. Last, the usage report over the
same rows (``polyroute usage``, ``GET /admin/usage``), made row by row and by SQLite; and the
console's Usage page, its totals and its chart (cost per step per group), summed from the
rows as before and from the rollup (``polyroute.tenancy.rollup``) as now. The writer's CPU
per row, rollup included, is timed as the rows are written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from polyroute.tenancy.rollup import RATIO, STEP
from polyroute.tenancy.sqlite import _GROUP_BY, SqliteStore, _stamp
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
        now = datetime.fromtimestamp(time.time() // STEP * STEP, UTC)  # the window on the rollup's steps
        chunk = 5000
        written = 0.0
        for k in range(0, WINDOW_S * args.rate, chunk):
            batch = _rows(chunk, now - timedelta(seconds=WINDOW_S - k / args.rate), f"r{k}-", args.rate)
            w0 = time.thread_time()
            store.write(batch)
            written += time.thread_time() - w0
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
        since = now - timedelta(seconds=WINDOW_S)
        conn = store._conn()
        seconds = "CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER)"
        conn.execute(  # the chart as it was summed before the rollup: from every row of the span
            f"SELECT {_GROUP_BY['model']} AS g, ({seconds} - ?) / ? AS i, sum(cost_usd) FROM usage WHERE at >= ? "
            "GROUP BY g, i", (int(since.timestamp()), 60, _stamp(since))).fetchall()
        t6 = time.thread_time()
        rolled = store.rollup_summary(since, "model")
        store.cost_by_step(since, "model", STEP)
        t7 = time.thread_time()
        store.close()
    assert by_rows == by_sql
    assert [(e["requests"], e["cost_usd"]) for e in rolled] == [(e["requests"], e["cost_usd"]) for e in by_sql]
    print(f"{args.rate} req/s, a look every {POLL_S} s:")
    print(f"  the last {WINDOW_S} s again, row by row: {len(window):>8} rows  {t1 - t0:6.3f} s CPU")
    print(f"  written since the last look:         {len(new):>8} rows  {t2 - t1:6.3f} s CPU")
    print(f"  the last {WINDOW_S} s summed by SQLite:  {len(summed.totals):>8} minutes  {t3 - t2:6.3f} s CPU "
          "(as a first look takes its day)")
    print(f"  `polyroute usage --by model` over them, row by row: {t4 - t3:6.3f} s CPU; summed by SQLite: "
          f"{t5 - t4:6.3f} s CPU")
    print(f"  the Usage page over them: from the rows {t6 - t4:6.3f} s CPU (totals and chart); "
          f"from the rollup {t7 - t6:6.3f} s CPU")
    rows = WINDOW_S * args.rate
    print(f"  the writer, rollup included: {written / rows * 1e6:.1f} µs CPU per row ({rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
