"""The ledger summed as it is written: what the console's Usage page reads, whatever the ledger's size.

Each row the ledger commits is also added, in the same transaction, to the rollup:
one row per five minutes (``STEP``), key, team, route, model, backend and latency
bucket, holding requests, failures (``errors``), refusals (``refused``), tokens and
cost, each request counted by ``polyroute.tenancy.fault``. A month of a busy gateway is
then a few thousand rollup rows per key and model, where it was hundreds of
millions of usage rows summed again at every poll of the page.

    usage rows of a batch ──(same transaction)──▶ rollup: += per (5 min, key, team, route, model, backend, latency)

Sums are exact; a histogram_percentile is read from the latency buckets (``RATIO`` apart, the
console's own scale), as the upper edge of the bucket that holds it, counting in each bucket
its requests less its refusals: percentiles of the requests not refused, as ``summarize``
takes them. A row written twice (a batch retried, a spool replayed) is counted once: only rows
the usage table took are added. Both stores build the statement here (``rollup_sql``); each
gives its own expressions of a row's five minutes and of its latency's bucket.

A rollup made before ``refused`` was counted gains the column when a store opens it
(``add_refused_sql``) and is summed again from the ledger's rows, so that older periods count
refusals apart too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from polyroute.tenancy.fault import failed_sql, refused_sql
from polyroute.tenancy.usage import entry

STEP = 300  # seconds: a multiple divides every step of the Usage page's charts
RATIO = 1.1  # latency buckets: [RATIO**(i-1), RATIO**i) ms, and 0 under 1 ms
KEY = "at, key, team, route, model, backend, lat"
SUMS = ("requests", "errors", "refused", "tokens_in", "tokens_out", "cost_usd")
DIMENSIONS = ("key", "team", "route", "model", "backend")


def latency_bucket(ms: float) -> int:
    """The bucket of a latency; the SQL of ``bucket_sql`` gives the same."""
    return 0 if ms < 1 else int(math.log(ms, RATIO)) + 1


def bucket_sql(column: str, floor: str, ratio: float = RATIO) -> str:
    """A store's expression of ``latency_bucket`` (buckets ``ratio`` apart); ``floor`` is its template of
    the whole-number floor of a positive expression ``{}``."""
    return f"CASE WHEN {column} < 1 THEN 0 ELSE {floor.format(f'ln({column}) / ln({float(ratio)!r})')} + 1 END"


def upper_edge(index: int) -> float:
    return 1.0 if index == 0 else RATIO ** index


def histogram_percentile(histogram: Counter[int], q: float) -> float | None:
    """The upper edge of the bucket holding the ``q`` quantile (nearest rank); None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(math.ceil(q * total), 1)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(upper_edge(index), 1)
    return None  # unreachable: the loop reaches ``total``


def rollup_sql(target: str, source: str, where: str, at: str, lat: str) -> str:
    """The statement that adds the ``source`` rows ``where`` picks to the rollup table ``target``.

    ``at`` is the store's expression of a row's five minutes (seconds since the epoch), ``lat`` of
    its latency's bucket. A missing name is kept as ''. Rows go in in key order, so writers of
    several replicas that add to the same rollup rows wait for one another rather than deadlock.
    """
    names = ", ".join(f"COALESCE({d}, '')" for d in DIMENSIONS)
    return (
        f"INSERT INTO {target} ({KEY}, {', '.join(SUMS)}) "
        f"SELECT {at}, {names}, {lat}, count(*), "
        f"sum(CASE WHEN {failed_sql()} THEN 1 ELSE 0 END), sum(CASE WHEN {refused_sql()} THEN 1 ELSE 0 END), "
        f"sum(tokens_in), sum(tokens_out), sum(cost_usd) FROM {source} WHERE {where} "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7 "
        f"ON CONFLICT ({KEY}) DO UPDATE SET " + ", ".join(f"{c} = {target}.{c} + excluded.{c}" for c in SUMS)
    )


def table_sql(name: str, integer: str, real: str) -> str:
    """The rollup table, with the store's names of a 64-bit integer and a double."""
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (at {integer} NOT NULL, "
        + "".join(f"{d} TEXT NOT NULL, " for d in DIMENSIONS)
        + f"lat INTEGER NOT NULL, requests {integer} NOT NULL, errors {integer} NOT NULL, "
        # (a default: a writer of a version from before the column adds to the table as it did)
        f"refused {integer} NOT NULL DEFAULT 0, tokens_in {integer} NOT NULL, tokens_out {integer} NOT NULL, "
        f"cost_usd {real} NOT NULL, "
        f"PRIMARY KEY ({KEY}))"
    )


def add_refused_sql(name: str, integer: str, unless_there: bool = False) -> str:
    """The column ``refused`` added to a rollup table made before it (its rows then count 0 refused);
    ``unless_there``: not when the table has it (PostgreSQL's ``IF NOT EXISTS``, which SQLite lacks)."""
    guard = "IF NOT EXISTS " if unless_there else ""
    return f"ALTER TABLE {name} ADD COLUMN {guard}refused {integer} NOT NULL DEFAULT 0"


def report_sql(table: str, group: str, mark: str) -> tuple[str, str]:
    """Totals per group, and each group's latency histogram (of the requests not refused), of the rollup rows
    from ``mark`` on."""
    return (
        f"SELECT {group} AS g, sum(requests), sum(tokens_in), sum(tokens_out), sum(cost_usd), sum(errors), "
        f"sum(refused) FROM {table} WHERE at >= {mark} GROUP BY g",
        f"SELECT {group} AS g, lat, sum(requests - refused) FROM {table} WHERE at >= {mark} GROUP BY g, lat "
        "HAVING sum(requests - refused) > 0",
    )


def report_of(totals: Iterable[tuple[Any, ...]], histograms: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The report's entries (``polyroute.tenancy.usage.entry``) of ``report_sql``'s results, by group."""
    latency: dict[str, Counter[int]] = {}
    for g, lat, n in histograms:
        latency.setdefault(str(g), Counter())[int(lat)] += int(n)
    out = []
    for g, n, tokens_in, tokens_out, cost, errors, refused in sorted(totals, key=lambda r: str(r[0])):
        h = latency.get(str(g), Counter())
        out.append(entry(str(g), int(n), int(tokens_in), int(tokens_out), float(cost), int(errors), int(refused),
                         histogram_percentile(h, 0.5) or 0.0, histogram_percentile(h, 0.95) or 0.0))
    return out


def rollup_start(since: datetime, step: int = STEP) -> int:
    """``since`` as the rollup's seconds since the epoch; it and ``step`` must fall on the rollup's steps,
    or a step would take part of a rollup row that is not its own."""
    if since.timestamp() % STEP or step % STEP:
        raise ValueError(f"the rollup sums whole steps of {STEP} s: {since.isoformat()} and {step} s are not")
    return int(since.timestamp())
