"""Refused requests counted apart from failures by both stores (SQLite, a real PostgreSQL): their SQL
sums as Python does, the rollup too, a rollup made before ``refused`` is brought up to date when the
store opens, and a gateway's own traffic reads so in ``polyroute usage``, ``/admin/usage`` and
``/v1/usage``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from polyroute.cli import main
from polyroute.console.recent import Minute, minutes_of
from polyroute.tenancy.columns import USAGE_COLS, usage_row
from polyroute.tenancy.fault import refused
from polyroute.tenancy.postgres import MIGRATIONS, PostgresStore
from polyroute.tenancy.rollup import RATIO, bucket_sql
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import Store, UsageRow
from polyroute.tenancy.usage import GROUPS, summarize
from tests.integration.test_store_postgres import _expected_from_rows, _rollup_rows, _same_report
from tests.support.live import live_gateway
from tests.support.postgres import database, psycopg, shared_or_skip
from tests.unit.test_usage_fault import ENDINGS, rows_of_every_ending

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=5)  # on the rollup's steps, before every row


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "store.db")
        yield s
        s.close()
        return
    shared_or_skip()
    with database() as url:
        s = PostgresStore(url)
        yield s
        s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    shared_or_skip()
    with database() as url:
        yield url


def _rows() -> list[UsageRow]:
    """Every ending, for two keys and at several times; and rows of a key that was only ever refused."""
    rows = rows_of_every_ending(NOW - timedelta(minutes=3), "alice")
    rows += rows_of_every_ending(NOW - timedelta(hours=1, minutes=7), "bob")
    rows += [r for r in rows_of_every_ending(NOW - timedelta(minutes=1), "mallory") if refused(r.status, r.error)]
    return rows


def test_both_stores_count_failures_refusals_and_percentiles_as_python_does(store: Store) -> None:
    rows = _rows()
    store.write(rows)
    for by in GROUPS:
        assert store.summary(SINCE, by) == summarize(rows, by), by
        _same_report(store.rollup_summary(SINCE, by), _expected_from_rows(rows, by))
    alice = summarize([r for r in rows if r.key == "alice"], "key")[0]
    theirs = sum(1 for *_, whose in ENDINGS if whose == "refused")
    assert (alice["requests"], alice["errors"], alice["refused"]) == (len(ENDINGS), len(ENDINGS) - theirs - 1, theirs)
    assert alice["p50_ms"] >= 100  # of the requests answered (or failed), not the refusals' microseconds
    mallory = next(e for e in store.summary(SINCE, "key") if e["group"] == "mallory")
    assert (mallory["errors"], mallory["refused"], mallory["p50_ms"], mallory["p95_ms"]) == (0, theirs, 0.0, 0.0)
    assert store.summary(SINCE, "key", "bob") == summarize([r for r in rows if r.key == "bob"], "key")


def test_the_day_summed_by_the_store_counts_refusals_apart_as_counting_its_rows_does(store: Store) -> None:
    rows = _rows()
    store.write(rows)
    _, mark = store.written_after(None)
    summed = minutes_of(store.traffic(NOW - timedelta(days=1), mark + 60, RATIO))
    counted: dict[int, Minute] = {}
    for r in rows:
        start = int(r.at.timestamp()) // 60 * 60
        counted.setdefault(start, Minute(start)).add(r)
    assert sorted(summed) == sorted(counted)
    for start, m in counted.items():
        s = summed[start]
        assert (s.requests, s.errors, s.refused) == (m.requests, m.errors, m.refused)
        assert (s.latency, s.ttft) == (m.latency, m.ttft)
    assert sum(m.refused for m in summed.values()) == sum(m.refused for m in counted.values()) > 0


# -- a rollup made by the version before ``refused`` ------------------------------------------------------

def _old_table(name: str, integer: str, real: str) -> str:
    """The rollup table as the version before ``refused`` made it."""
    return (f"CREATE TABLE {name} (at {integer} NOT NULL, key TEXT NOT NULL, team TEXT NOT NULL, "
            "route TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL, lat INTEGER NOT NULL, "
            f"requests {integer} NOT NULL, errors {integer} NOT NULL, tokens_in {integer} NOT NULL, "
            f"tokens_out {integer} NOT NULL, cost_usd {real} NOT NULL, "
            "PRIMARY KEY (at, key, team, route, model, backend, lat))")


def _old_sum(target: str, source: str, where: str, at: str, lat: str) -> str:
    """The statement with which the version before ``refused`` added rows to the rollup: every row of a status of
    400 or more, or with an error code, an error."""
    sums = ("requests", "errors", "tokens_in", "tokens_out", "cost_usd")
    return (f"INSERT INTO {target} (at, key, team, route, model, backend, lat, {', '.join(sums)}) "
            f"SELECT {at}, COALESCE(key, ''), COALESCE(team, ''), COALESCE(route, ''), COALESCE(model, ''), "
            f"COALESCE(backend, ''), {lat}, count(*), "
            "sum(CASE WHEN status >= 400 OR COALESCE(error, '') <> '' THEN 1 ELSE 0 END), "
            f"sum(tokens_in), sum(tokens_out), sum(cost_usd) FROM {source} WHERE {where} "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7 "
            "ON CONFLICT (at, key, team, route, model, backend, lat) DO UPDATE SET "
            + ", ".join(f"{c} = {target}.{c} + excluded.{c}" for c in sums))


_SQLITE_AT = "CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER) / 300 * 300"
_SQLITE_LAT = bucket_sql("latency_ms", "CAST({} AS INTEGER)")
_PG_AT = "(floor(extract(epoch FROM at) / 300) * 300)::bigint"
_PG_LAT = bucket_sql("latency_ms", "floor({})::int")


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def _as_the_old_version_left_it(path: Path, rows: list[UsageRow]) -> None:
    """A SQLite store file with ``rows`` and the rollup of the version before ``refused``."""
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE usage_rollup")
        conn.execute(_old_table("usage_rollup", "INTEGER", "REAL") + " WITHOUT ROWID")
        marks = ",".join("?" * len(USAGE_COLS.split(",")))
        conn.executemany(f"INSERT INTO usage ({USAGE_COLS}) VALUES ({marks})", [usage_row(r, _stamp) for r in rows])
        conn.execute(_old_sum("usage_rollup", "usage", "true", _SQLITE_AT, _SQLITE_LAT))
        conn.execute("UPDATE meta SET value = 1 WHERE name = 'rollup'")


def test_a_sqlite_rollup_from_before_refused_is_summed_again_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    rows = _rows() + _rollup_rows()
    _as_the_old_version_left_it(path, rows)
    with sqlite3.connect(path) as conn:  # the old rollup counts every refusal as an error
        assert conn.execute("SELECT sum(errors) FROM usage_rollup").fetchone()[0] == sum(
            1 for r in rows if r.status >= 400 or r.error)
    for _ in range(2):  # opened twice (a gateway and its writer): brought up to date once
        s = SqliteStore(path)
    for by in ("key", "model", "day"):
        _same_report(s.rollup_summary(SINCE, by), _expected_from_rows(rows, by))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'rollup'").fetchone() == (2,)
        # A writer of the version before (a worker not yet restarted) still adds to it: its rows count no
        # refusals apart until the rollup is summed again.
        late = [replace(r, request_id=f"late-{r.request_id}") for r in rows_of_every_ending(NOW, "late")]
        top = conn.execute("SELECT max(rowid) FROM usage").fetchone()[0]
        marks = ",".join("?" * len(USAGE_COLS.split(",")))
        conn.executemany(f"INSERT INTO usage ({USAGE_COLS}) VALUES ({marks})", [usage_row(r, _stamp) for r in late])
        conn.execute(_old_sum("usage_rollup", "usage", f"rowid > {top}", _SQLITE_AT, _SQLITE_LAT))
    old_way = next(e for e in s.rollup_summary(SINCE, "key") if e["group"] == "late")
    assert (old_way["requests"], old_way["refused"]) == (len(ENDINGS), 0)
    assert s.rebuild_rollup() == len(rows) + len(late)
    _same_report(s.rollup_summary(SINCE, "key"), _expected_from_rows(rows + late, "key"))
    s.close()


def test_a_postgresql_rollup_from_before_refused_is_summed_again_when_opened(pg_url: str) -> None:
    rows = _rows() + _rollup_rows()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the schema as the version before left it
        conn.execute("CREATE TABLE polyroute_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        for step in MIGRATIONS[:3]:
            for statement in step:
                conn.execute(statement)
        conn.execute("CREATE TABLE polyroute_usage_2026_12 PARTITION OF polyroute_usage "
                     "FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')")
        marks = ",".join(["%s"] * len(USAGE_COLS.split(",")))
        for r in rows:
            conn.execute(f"INSERT INTO polyroute_usage ({USAGE_COLS}) VALUES ({marks})", usage_row(r, lambda at: at))
        conn.execute(_old_table("polyroute_usage_rollup", "BIGINT", "DOUBLE PRECISION"))
        conn.execute(_old_sum("polyroute_usage_rollup", "polyroute_usage", "true", _PG_AT, _PG_LAT))
        conn.execute("INSERT INTO polyroute_meta VALUES ('schema', 4)")
    s = PostgresStore(pg_url)
    try:
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT value FROM polyroute_meta WHERE name = 'schema'").fetchone() == (
                len(MIGRATIONS),)
        for by in ("key", "model", "day"):
            _same_report(s.rollup_summary(SINCE, by), _expected_from_rows(rows, by))
        late = rows_of_every_ending(NOW, "late")
        s.write(late)  # this version's writer adds refusals apart
        _same_report(s.rollup_summary(SINCE, "key"), _expected_from_rows(rows + late, "key"))
        # A writer of the version before still adds to the table (the column has a default).
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(_old_sum("polyroute_usage_rollup", "polyroute_usage", "key = 'late'", _PG_AT, _PG_LAT))
        assert next(e for e in s.rollup_summary(SINCE, "key") if e["group"] == "late")["requests"] == 2 * len(late)
    finally:
        s.close()


# -- a gateway's own traffic ------------------------------------------------------------------------------

ALICE = "sk-alice-refused-0123456789"
ADMIN = "admin-refused-0123456789abcdef"


def test_a_gateway_reports_a_clients_refusals_apart_from_its_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "usage.db"
    raw = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "down": {"backend": "f", "upstream": "error-503"}},
        "admin": {"secret": "env:ADMIN"},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"alice": {"secret": "env:ALICE", "rpm": 3}},
    }
    h = {"authorization": f"Bearer {ALICE}"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "count me"}]}
    with live_gateway(raw, env={"ALICE": ALICE, "ADMIN": ADMIN}) as g:
        url = f"{g.base_url}/chat/completions"
        statuses = [
            httpx.post(url, json=body, headers=h, timeout=10).status_code,
            httpx.post(url, content=b"{not json", headers={**h, "content-type": "application/json"},
                       timeout=10).status_code,  # the client's: refused before admission
            httpx.post(url, json={**body, "model": "down"}, headers=h, timeout=10).status_code,  # a failure
            httpx.post(url, json=body, headers=h, timeout=10).status_code,
            httpx.post(url, json=body, headers=h, timeout=10).status_code,  # over the key's own rpm
        ]
        assert statuses == [200, 400, 502, 200, 429]
        ledger = g.gateway.tenancy.ledger
        assert ledger is not None and ledger.flush()
        mine = httpx.get(f"{g.base_url}/usage", headers=h, timeout=10).json()["usage"]
        admin = httpx.get(f"{g.root}/admin/usage?by=key&since=1h", timeout=10,
                          headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
        csv_text = httpx.get(f"{g.root}/admin/usage?by=key&since=1h&format=csv", timeout=10,
                             headers={"authorization": f"Bearer {ADMIN}"}).text
    assert (mine["requests"], mine["errors"], mine["refused"]) == (5, 1, 2)
    assert [e for e in admin if e["group"] == "alice"] == [mine]
    assert csv_text.splitlines()[0] == "group,requests,tokens_in,tokens_out,cost_usd,errors,refused,p50_ms,p95_ms"
    assert main(["usage", "--store", f"sqlite:///{db}", "--since", "1h", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == admin
    assert main(["usage", "--store", f"sqlite:///{db}", "--since", "1h"]) == 0
    head, *lines = capsys.readouterr().out.splitlines()
    assert head.split() == ["key", "requests", "tokens_in", "tokens_out", "cost_usd", "errors", "refused", "p50_ms",
                            "p95_ms"]
    alice = next(line.split() for line in lines if line.startswith("alice"))
    assert (alice[1], alice[5], alice[6]) == ("5", "1", "2")
