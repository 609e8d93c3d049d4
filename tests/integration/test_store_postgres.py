"""The PostgreSQL store against a real server: keys and teams as SQLite keeps them, the partitioned
ledger, migrations raced by three replicas, retention, and reports summed in SQL."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from polyroute import config as cfg
from polyroute.cli import main
from polyroute.errors import ConfigError
from polyroute.tenancy.columns import USAGE_COLS
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord, digest
from polyroute.tenancy.postgres import MIGRATIONS, USAGE_BATCH_TYPES, PostgresStore
from polyroute.tenancy.spool import Spool
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import Store, UsageRow
from polyroute.tenancy.usage import GROUPS, summarize
from tests.support.live import live_gateway
from tests.support.postgres import database, psycopg, shared_or_skip

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    shared_or_skip()
    with database() as url:
        yield url


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


def row(rid: str, at: datetime, key: str | None = "k", latency: float = 10.0, status: int = 200,
        cost: float = 0.25, model: str | None = "m") -> UsageRow:
    return UsageRow(rid, at, key, "t" if key else None, "main", model, "b",
                    '[{"backend": "b", "model": "m", "outcome": "ok", "ms": 1.5}]', 3, 4, cost, False, latency,
                    None, status, None if status < 400 else "upstream failed", False)


def count(url: str, sql: str = "SELECT count(*), count(DISTINCT request_id) FROM polyroute_usage") -> tuple[int, ...]:
    with psycopg.connect(url) as conn:
        found = conn.execute(sql).fetchone()
        assert found is not None
        return tuple(found)


def test_keys_and_teams_are_kept_alike_by_both_stores(store: Store) -> None:
    import asyncio

    made = KeyRecord("alice", digest("s1"), "red", "open", ("main", "cheap"), Limits(2.5, "week", 10, 1000),
                     NOW + timedelta(days=30), False, NOW)
    before = asyncio.run(store.version())
    asyncio.run(store.add_key(made))
    assert asyncio.run(store.key("alice")) == made
    with pytest.raises(KeyError):
        asyncio.run(store.add_key(KeyRecord("alice", digest("s2"), created_at=NOW)))
    revoked = KeyRecord("alice", digest("s1"), "red", None, None, Limits(), None, True, NOW)
    asyncio.run(store.put_key(revoked))
    assert asyncio.run(store.keys()) == [revoked]
    asyncio.run(store.put_team(TeamRecord("red", Limits(9.0, "day", None, 50))))
    asyncio.run(store.put_team(TeamRecord("red", Limits(8.0, "day", None, 50))))
    assert asyncio.run(store.teams()) == [TeamRecord("red", Limits(8.0, "day", None, 50))]
    assert asyncio.run(store.version()) == before + 4
    assert asyncio.run(store.delete_key("alice")) and not asyncio.run(store.delete_key("alice"))
    assert asyncio.run(store.delete_team("red")) and asyncio.run(store.team("red")) is None
    assert asyncio.run(store.version()) == before + 6


def test_a_row_written_twice_is_kept_once_and_reads_back_whole(store: Store) -> None:
    rows = [row(f"r{i}", NOW + timedelta(seconds=i)) for i in range(5)]
    store.write(rows)
    store.write(rows[2:])  # a batch tried again after a lost acknowledgement, or a spool replayed
    got = store.rows(NOW - timedelta(hours=1))
    assert [r.request_id for r in got] == [f"r{i}" for i in range(5)]
    assert [json.loads(r.attempts) for r in got] == [json.loads(r.attempts) for r in rows]
    assert [r.at for r in got] == [r.at for r in rows]
    assert got == [replace(r, attempts=g.attempts) for r, g in zip(rows, got, strict=True)]
    assert store.spent("key", "k", NOW) == pytest.approx(1.25)
    assert store.spent("team", "t", NOW + timedelta(seconds=3)) == pytest.approx(0.5)
    assert [r.request_id for r in store.rows(NOW - timedelta(hours=1), key="nobody")] == []


def test_a_batch_keeps_every_value_exactly(store: Store) -> None:
    # Full-precision floats, text out of ASCII and quotes, absent values, both booleans, a batch of many.
    rows = [
        UsageRow(f"q{i}", NOW + timedelta(microseconds=7 * i), None if i % 3 else f"k\"é{i}", None, "ro'ute",
                 None if i % 2 else "模型", "b", '[{"backend": "b", "model": "m", "outcome": "ok", "ms": 0.1}]',
                 i, 2**20 + i, (i + 1) / 3e7, bool(i % 2), 1 / (i + 7), None if i % 2 else 2 / (i + 3),
                 200 + i, None if i % 2 else "cut", not i % 2)
        for i in range(700)
    ]
    store.write(rows)
    got = store.rows(NOW - timedelta(hours=1))
    assert got == [replace(r, attempts=g.attempts) for r, g in zip(rows, got, strict=True)]


def test_absent_values_both_booleans_and_repeated_rows_are_kept_once_and_exactly(
    store: Store, tmp_path: Path
) -> None:
    attempts = '[{"backend": "b", "model": "m", "outcome": "ok", "ms": 1.5}]'
    # Every nullable column absent, with ints where floats go (as a spool's JSON may give them back).
    bare = UsageRow("bare", NOW, None, None, "main", None, None, "[]", 0, 0, 0, True, 3, None, 502, None, False)
    full = UsageRow("full", NOW + timedelta(seconds=1), "k", "t", "main", "m", "b", attempts, 7, 9, 1e-9, False,
                    812.125, 240.5, 200, "upstream failed", True)
    mixed = replace(full, request_id="mixed", at=NOW + timedelta(seconds=2), key=None, error=None, ttft_ms=None,
                    estimated=True, stream=False)
    store.write([bare, full, bare, mixed, full])  # repeated within the batch
    spool = Spool(tmp_path / "replayed.jsonl")
    spool.append([full, mixed, bare])
    replayed, _ = spool.next(10)
    spool.close()
    store.write(replayed)  # and again in a later batch, as a spool replays it
    got = store.rows(NOW - timedelta(hours=1))
    assert [json.loads(r.attempts) for r in got] == [[], json.loads(attempts), json.loads(attempts)]
    assert got == [replace(r, attempts=g.attempts) for r, g in zip([bare, full, mixed], got, strict=True)]
    assert [type(v) for v in (got[0].cost_usd, got[0].latency_ms)] == [float, float]
    assert (got[0].ttft_ms, got[0].key, got[0].team, got[0].model, got[0].backend, got[0].error) == (None,) * 6


def test_a_batch_is_read_with_the_types_of_the_usage_table(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        table = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                             "WHERE attrelid = 'polyroute_usage'::regclass AND attnum > 0 AND NOT attisdropped "
                             "ORDER BY attnum").fetchall()
    # ``attempts`` travels as text (JSON in a string) and is cast to the table's jsonb.
    batch = [(c, "jsonb" if c == "attempts" else t) for c, t in zip(USAGE_COLS.split(", "), USAGE_BATCH_TYPES,
                                                                     strict=True)]
    # ``written_at`` is the database's own (when the row landed), never in a batch.
    assert table == [*batch, ("written_at", "timestamp with time zone")]


def test_the_sql_report_is_the_same_as_the_python_one(store: Store) -> None:
    rows = [row(f"a{i}", NOW + timedelta(minutes=i), "alice", latency=float(i * 7 % 23), cost=0.1 * i)
            for i in range(40)]
    rows += [row(f"b{i}", NOW - timedelta(days=1, minutes=i), "bob", latency=float(i), status=502 if i % 3 else 200,
                 model=None) for i in range(9)]
    rows += [row("anon", NOW, None)]
    store.write(rows)
    since = NOW - timedelta(days=3)
    for by in GROUPS:
        assert store.summary(since, by) == summarize(rows, by), by
    assert store.summary(since, "key", "bob") == summarize([r for r in rows if r.key == "bob"], "key")
    assert store.summary(NOW + timedelta(days=1), "key") == []


def test_usage_rows_are_partitioned_by_month_and_retention_drops_whole_months(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    now = datetime.now(UTC)
    this_month = f"polyroute_usage_{now:%Y_%m}"
    assert store.partitions()[0] == this_month and len(store.partitions()) == 2  # this month and the next
    old = now - timedelta(days=200)
    store.write([row("old", old), row("older", old - timedelta(days=40)), row("new", now)])
    assert f"polyroute_usage_{old:%Y_%m}" in store.partitions()
    store.expire(now - timedelta(days=100))
    assert [r.request_id for r in store.rows(now - timedelta(days=400))] == ["new"]
    assert store.partitions()[0] == this_month
    # A month that is only partly past retention stays whole.
    store.expire(now - timedelta(days=1) if now.day > 1 else now)
    assert [r.request_id for r in store.rows(now - timedelta(days=400))] == ["new"]
    store.close()


def test_sqlite_retention_deletes_older_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([row("old", NOW - timedelta(days=10)), row("new", NOW)])
    store.expire(NOW - timedelta(days=5))
    assert [r.request_id for r in store.rows(NOW - timedelta(days=30))] == ["new"]
    store.close()


def test_three_replicas_starting_at_once_make_the_schema_once(pg_url: str) -> None:
    opened: list[PostgresStore] = []
    failed: list[BaseException] = []
    go = threading.Barrier(3)

    def replica() -> None:
        go.wait()
        try:
            opened.append(PostgresStore(pg_url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failed == [] and len(opened) == 3
    assert count(pg_url, "SELECT value FROM polyroute_meta WHERE name = 'schema'") == (len(MIGRATIONS),)
    opened[0].write([row("x", NOW)])
    # A later start finds the schema done and changes nothing.
    again = PostgresStore(pg_url)
    assert [r.request_id for r in again.rows(NOW - timedelta(days=1))] == ["x"]
    for s in [*opened, again]:
        s.close()


def test_an_unreachable_database_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError) as bad:
        PostgresStore("postgresql://nobody@127.0.0.1:1/nothing")
    text = str(bad.value)
    assert "store.url" in text and "postgresql://127.0.0.1:1/nothing" in text


def test_config_takes_a_postgresql_url_its_password_as_a_secret_and_retention(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    good = cfg.parse({"store": {"url": "postgresql://gw@db:5432/polyroute", "password": "env:PGPW",
                                "retention_days": 90, "spool": "/var/lib/polyroute/spool.jsonl"}},
                     env={"PGPW": "hunter22"})
    assert good.store.retention_days == 90 and good.store.password is not None
    assert "hunter22" not in json.dumps(good.redacted())
    for url, says in [("postgresql://gw:hunter22@db/p", "password = 'env:VAR'"),
                      ("postgresql://gw@db/p?password=hunter22", "password = 'env:VAR'"),
                      ("mysql://db/p", "sqlite:///PATH")]:
        with pytest.raises(ConfigError) as bad:
            cfg.parse({"store": {"url": url}})
        assert says in str(bad.value) and "hunter22" not in str(bad.value)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError) as missing:
        cfg.parse({"store": {"url": "postgresql://gw@db/p"}})
    assert "pip install 'polyroute[postgres]'" in str(missing.value)


def test_a_gateway_on_postgresql_writes_its_ledger_and_reports_it(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"ALICE_KEY": "sk-alice-0123456789abcdef"}
    raw = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
                   "down": {"backend": "f", "upstream": "error-503"}},
        "store": {"url": pg_url, "flush_interval": 0.05, "spool": str(tmp_path / "spool.jsonl")},
        "keys": {"alice": {"secret": "env:ALICE_KEY", "budget_usd": 1.0}},
    }
    h = {"authorization": f"Bearer {env['ALICE_KEY']}"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "count me"}]}
    with live_gateway(raw, env=env) as g:
        answers = [httpx.post(f"{g.base_url}/chat/completions", json=body, headers=h, timeout=10) for _ in range(3)]
        answers.append(httpx.post(f"{g.base_url}/chat/completions", json={**body, "model": "down"}, headers=h,
                                  timeout=10))
        assert [a.status_code for a in answers] == [200, 200, 200, 502]
        ledger = g.gateway.tenancy.ledger
        assert ledger is not None and ledger.flush()
        spool = tmp_path / "spool.jsonl"  # the writer's, with a remote store
        assert spool.exists() and not spool.read_bytes()  # emptied once the database had every row
        mine = httpx.get(f"{g.base_url}/usage", headers=h).json()
        assert mine["usage"]["requests"] == 4 and mine["usage"]["errors"] == 1
    assert count(pg_url) == (4, 4)
    assert main(["usage", "--store", pg_url, "--by", "model", "--since", "1h", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [set(r) for r in report] == [{"group", "requests", "tokens_in", "tokens_out", "cost_usd", "errors",
                                         "refused", "p50_ms", "p95_ms"}] * 2
    assert {r["group"]: r["requests"] for r in report} == {"echo": 3, "-": 1}
    echo = next(r for r in report if r["group"] == "echo")
    assert echo["cost_usd"] == pytest.approx(sum(float(a.headers["x-polyroute-cost-usd"]) for a in answers[:3]))
    # The rollup the console's Usage page reads, written by the gateway's writer process, sums the same.
    store = PostgresStore(pg_url)
    try:
        hour_ago = datetime.fromtimestamp(time.time() // 300 * 300 - 3600, UTC)
        rolled = {r["group"]: (r["requests"], r["errors"], r["cost_usd"])
                  for r in store.rollup_summary(hour_ago, "model")}
    finally:
        store.close()
    assert rolled == {r["group"]: (r["requests"], r["errors"], pytest.approx(r["cost_usd"])) for r in report}
    assert main(["usage", "--store", pg_url, "--by", "day", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "group,requests,tokens_in,tokens_out,cost_usd,errors,refused,p50_ms,p95_ms"
    days = [line.split(",") for line in lines[1:]]
    assert sum(int(d[1]) for d in days) == 4 and all(re.fullmatch(r"\d{4}-\d\d-\d\d", d[0]) for d in days)


def test_a_console_logout_is_seen_by_another_store_on_the_same_database(pg_url: str) -> None:
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        assert not second.session_revoked_now("a" * 32)
        first.revoke_session_now("a" * 32, until=2e9, now=1e9)
        assert second.session_revoked_now("a" * 32)
        first.revoke_session_now("b" * 32, until=3e9, now=2.5e9)  # past "a"'s until: its record goes
        assert not second.session_revoked_now("a" * 32) and second.session_revoked_now("b" * 32)
    finally:
        first.close()
        second.close()


def test_a_row_the_table_cannot_take_is_returned_and_the_others_are_written(pg_url: str) -> None:
    """One bad row must not hold the ledger up: the batch would fail every time it is tried again."""
    s = PostgresStore(pg_url)
    try:
        nul = replace(row("nul", NOW), error="upstream said \x00 here", model="m\x00")
        overflow = replace(row("overflow", NOW), tokens_in=2**40)  # past INTEGER
        literal = replace(row("literal", NOW), error="a backslash-u0000 as text: \\u0000")
        refused = s.write([row("before", NOW), nul, overflow, literal, row("after", NOW)])
        assert refused is not None and [r.row.request_id for r in refused] == ["overflow"]
        assert "out of range" in refused[0].reason
        kept = {r.request_id: r for r in s.rows(NOW - timedelta(days=1))}
        assert sorted(kept) == ["after", "before", "literal", "nul"]
        assert kept["nul"].error == "upstream said \ufffd here" and kept["nul"].model == "m\ufffd"
        assert kept["literal"].error == literal.error, "text that only looks like a NUL is kept as it is"
        assert s.write([row("fine", NOW)]) is None
    finally:
        s.close()


def test_the_ledger_keeps_refused_rows_in_a_file_and_goes_on(pg_url: str, tmp_path: Path) -> None:
    from polyroute.tenancy.ledger import Ledger

    s = PostgresStore(pg_url)
    kept = tmp_path / "ledger-rejected.jsonl"
    ledger = Ledger(s, batch_size=10, flush_interval=0.05, spool=Spool(tmp_path / "spool.jsonl"), rejected=kept)
    try:
        rows = [row("a", NOW), replace(row("bad", NOW), tokens_out=2**40), row("b", NOW)]
        spool = ledger.spool
        assert spool is not None
        spool.append(rows)  # as the spooler leaves them for the writer
        ledger.start()
        assert ledger.flush(timeout=30)
        assert sorted(r.request_id for r in s.rows(NOW - timedelta(days=1))) == ["a", "b"]
        (line,) = kept.read_text().splitlines()
        doc = json.loads(line)
        assert doc["row"]["request_id"] == "bad" and doc["row"]["tokens_out"] == 2**40 and doc["reason"]
    finally:
        ledger.close()
        s.close()


def test_rows_are_read_as_they_land_whenever_their_requests_finished(store: Store) -> None:
    none, mark = store.written_after(None)
    assert none == []
    store.write([row("a", NOW), row("b", NOW - timedelta(days=40))])  # b: a spool replayed very late
    got, mark = store.written_after(mark)
    assert {r.request_id for r in got} == {"a", "b"}
    store.write([row("c", NOW)])
    again, mark = store.written_after(mark)
    # PostgreSQL reads a few seconds back (its writers can commit out of order): c, and maybe a and b again.
    assert "c" in {r.request_id for r in again} and {r.request_id for r in again} <= {"a", "b", "c"}
    if isinstance(store, SqliteStore):
        assert [r.request_id for r in again] == ["c"]
        assert store.written_after(mark)[0] == []


def test_a_ledger_made_before_rows_were_marked_as_they_land_is_brought_up_to_date(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the schema as the earlier steps left it
        conn.execute("CREATE TABLE polyroute_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute("INSERT INTO polyroute_meta VALUES ('schema', 2)")
        conn.execute("CREATE TABLE polyroute_usage_2026_12 PARTITION OF polyroute_usage "
                     "FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')")
        conn.execute("INSERT INTO polyroute_usage (request_id, at, route, attempts, tokens_in, tokens_out, "
                     "cost_usd, estimated, latency_ms, status, stream) "
                     "VALUES ('old', %s, 'main', '[]', 1, 1, 0.1, false, 1.0, 200, false)", (NOW,))
    s = PostgresStore(pg_url)
    try:
        assert count(pg_url, "SELECT value FROM polyroute_meta WHERE name = 'schema'") == (len(MIGRATIONS),)
        _, mark = s.written_after(None)
        s.write([row("new", NOW)])
        got, _ = s.written_after(mark)
        assert "new" in {r.request_id for r in got}
        assert [r.request_id for r in s.rows(NOW - timedelta(days=1))] == ["old", "new"]
        # The rollup holds the row from before it (summed when it was made) and the one written since.
        assert [(e["group"], e["requests"]) for e in s.rollup_summary(NOW - timedelta(days=1), "key")] == [
            ("-", 1), ("k", 1)]
    finally:
        s.close()


def test_the_day_summed_by_the_store_is_what_counting_its_rows_gives(store: Store) -> None:
    from polyroute.console.recent import Minute, minutes_of
    from polyroute.tenancy.rollup import RATIO

    latencies = (0.4, 1.0, 9.99, 10.0, 123.4, 5000.0)
    rows = [UsageRow(f"r{i}", NOW - timedelta(minutes=i % 5, seconds=i % 50), "k", "t",
                     ("main", "other", "")[i % 3], "m", "b", "[]", i, 2 * i, 0.001 * i, False, latencies[i % 6],
                     None if i % 4 == 0 else latencies[(i + 2) % 6], 503 if i % 7 == 0 else 200,
                     "upstream failed" if i % 11 == 0 else None, False) for i in range(60)]
    rows.append(row("old", NOW - timedelta(days=3)))  # before ``since``: not summed
    store.write(rows)
    _, mark = store.written_after(None)
    summed = minutes_of(store.traffic(NOW - timedelta(days=1), mark + 60, RATIO))  # + 60: every row written
    counted: dict[int, Minute] = {}
    for r in rows[:-1]:
        start = int(r.at.timestamp()) // 60 * 60
        counted.setdefault(start, Minute(start)).add(r)
    assert sorted(summed) == sorted(counted)
    for start, m in counted.items():
        s = summed[start]
        assert (s.requests, s.errors, s.refused, s.tokens_in, s.tokens_out) == (
            m.requests, m.errors, m.refused, m.tokens_in, m.tokens_out)
        assert s.cost_usd == pytest.approx(m.cost_usd)
        assert (s.latency, s.ttft, s.routes) == (m.latency, m.ttft, m.routes)
    last = store.latest(3, mark + 60)
    if isinstance(store, SqliteStore):
        assert [r.request_id for r in last] == [r.request_id for r in rows[-3:]]  # the last written, oldest first
    else:  # one transaction's rows landed at the same time: the latest requests among them, oldest first
        assert len(last) == 3 and all(r.at >= NOW - timedelta(seconds=5) for r in last)
        assert [r.at for r in last] == sorted(r.at for r in last)


def test_the_console_counts_each_row_once_over_postgresql(pg_url: str) -> None:
    from polyroute.console.ledger_tail import LedgerTail

    store = PostgresStore(pg_url)
    tail = LedgerTail(store)

    async def looks() -> list[int]:
        seen = []
        store.write([row(f"a{i}", datetime.now(UTC)) for i in range(3)])  # within the read-back of the first look
        seen.append((await tail.overview())["windows"]["5m"]["requests"])
        store.write([row(f"b{i}", datetime.now(UTC)) for i in range(2)])
        seen.append((await tail.overview())["windows"]["5m"]["requests"])
        seen.append((await tail.overview())["windows"]["5m"]["requests"])  # the same seconds read back again
        return seen

    try:
        assert asyncio.run(looks()) == [3, 5, 5]
        assert tail.recent.model("m")["answers"] == 5
    finally:
        store.close()


def test_the_report_takes_the_same_percentile_ranks_as_python_for_every_group_size(store: Store) -> None:
    rows = [row(f"k{n}-{i}", NOW, f"k{n:02d}", latency=float((i * 37) % 101) + n / 100, cost=0.01)
            for n in range(1, 42) for i in range(n)]  # keys with 1 to 41 requests
    store.write(rows)
    assert store.summary(NOW - timedelta(days=1), "key") == summarize(rows, "key")


def test_cost_by_step_is_what_adding_each_rows_cost_to_its_step_gives(store: Store) -> None:
    from polyroute.tenancy.usage import group_of

    since, step = NOW - timedelta(hours=6), 3600
    rows = [row(f"r{i}", since + timedelta(minutes=17 * i, seconds=i % 60, microseconds=999_999 * (i % 2)),
                ("alice", "bob", None)[i % 3], cost=0.01 * (i + 1), model=("m", None)[i % 2]) for i in range(21)]
    rows.append(row("edge", since + timedelta(hours=2), "alice", cost=5.0))  # exactly on a step's edge: that step
    rows.append(row("before", since - timedelta(microseconds=1), "alice", cost=9.0))
    store.write(rows)
    for by in ("key", "team", "model", "route"):
        want: dict[tuple[str, int], float] = {}
        for r in rows:
            if r.at >= since:
                i = int((r.at - since) / timedelta(seconds=step))
                want[(group_of(r, by), i)] = want.get((group_of(r, by), i), 0.0) + r.cost_usd
        got = {(g, i): c for g, i, c in store.cost_by_step(since, by, step)}
        assert got.keys() == want.keys(), by
        assert all(got[k] == pytest.approx(want[k]) for k in want), by


def _rollup_rows() -> list[UsageRow]:
    """Rows over several five-minute steps and groups, with missing names, errors and latencies on and
    around bucket edges."""
    latencies = (0.2, 1.0, 1.1, 9.99, 10.0, 123.4, 480.0, 5000.0, 61_000.0)
    return [UsageRow(f"r{i}", NOW - timedelta(minutes=3 * i, seconds=i % 60, microseconds=i),
                     ("alice", "bob", None)[i % 3], ("red", None)[i % 2], ("main", "cheap")[i % 2],
                     ("m1", "m2", None)[i % 3], "b", "[]", i, 2 * i, 0.0011 * (i + 1), False, latencies[i % 9],
                     None, 503 if i % 7 == 0 else 200, "upstream failed" if i % 5 == 0 else None, False)
            for i in range(90)]


def _expected_from_rows(rows: list[UsageRow], by: str) -> list[dict[str, object]]:
    """``summarize`` of the rows, its percentiles read from the rollup's buckets of each group's rows not
    refused (0 where every one was)."""
    from collections import Counter

    from polyroute.tenancy.fault import refused
    from polyroute.tenancy.rollup import histogram_percentile, latency_bucket
    from polyroute.tenancy.usage import group_of

    out = []
    for e in summarize(rows, by):
        h = Counter(latency_bucket(r.latency_ms) for r in rows
                    if group_of(r, by) == e["group"] and not refused(r.status, r.error))
        out.append({**e, "p50_ms": histogram_percentile(h, 0.5) or 0.0, "p95_ms": histogram_percentile(h, 0.95) or 0.0})
    return out


def _same_report(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    assert [e["group"] for e in got] == [e["group"] for e in want]
    for g, w in zip(got, want, strict=True):
        assert g == {**w, "cost_usd": pytest.approx(w["cost_usd"], abs=1e-8)}, w["group"]


def test_the_rollup_sums_as_the_rows_do_and_counts_a_row_written_twice_once(store: Store) -> None:
    rows = _rollup_rows()
    store.write(rows[:40])
    store.write(rows[30:])  # ten rows again, among new ones
    store.write(rows[:5])  # a whole batch again
    since = NOW - timedelta(hours=5)  # on the rollup's steps, before every row
    for by in ("key", "team", "model", "route", "day"):
        _same_report(store.rollup_summary(since, by), _expected_from_rows(rows, by))
    later = NOW - timedelta(hours=2)  # rows from then on only
    _same_report(store.rollup_summary(later, "key"), _expected_from_rows([r for r in rows if r.at >= later], "key"))


def test_the_rollup_is_read_on_its_own_steps_only(store: Store) -> None:
    with pytest.raises(ValueError, match="whole steps"):
        store.rollup_summary(NOW - timedelta(minutes=7), "key")
    with pytest.raises(ValueError, match="whole steps"):
        store.cost_by_step(NOW - timedelta(hours=1), "key", 90)


def test_a_sqlite_ledger_from_before_the_rollup_is_summed_into_it_once(tmp_path: Path) -> None:
    import sqlite3

    rows = _rollup_rows()
    SqliteStore(tmp_path / "store.db").write(rows)
    with sqlite3.connect(tmp_path / "store.db") as conn:  # the file as a version without the rollup left it
        conn.execute("DROP TABLE usage_rollup")
        conn.execute("DELETE FROM meta WHERE name = 'rollup'")
    for _ in range(2):  # opened twice (a gateway and its writer): summed once
        s = SqliteStore(tmp_path / "store.db")
    _same_report(s.rollup_summary(NOW - timedelta(hours=5), "model"), _expected_from_rows(rows, "model"))


def test_retention_takes_the_rollup_with_the_rows(store: Store) -> None:
    rows = _rollup_rows()
    old = [replace(r, request_id=f"old-{r.request_id}", at=r.at - timedelta(days=60)) for r in rows[:10]]
    store.write(rows + old)
    long_ago = NOW - timedelta(days=90)
    assert sum(e["requests"] for e in store.rollup_summary(long_ago, "key")) == 100
    store.expire(NOW - timedelta(days=30))
    assert sum(e["requests"] for e in store.rollup_summary(long_ago, "key")) == 90


def test_replicas_writing_at_once_add_to_the_same_rollup_rows_exactly(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(3)]
    rows = _rollup_rows()
    failed: list[BaseException] = []

    def write(s: PostgresStore, replica: int) -> None:
        try:
            for batch in range(12):  # every batch adds to the same rollup rows as the other replicas' do
                s.write([replace(r, request_id=f"{replica}-{batch}-{r.request_id}") for r in rows[::-1]])
        except BaseException as exc:  # a deadlock or a lost update shows here or in the sums
            failed.append(exc)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failed
        got = stores[0].rollup_summary(NOW - timedelta(hours=5), "model")
        want = _expected_from_rows(rows, "model")
        assert [(g["group"], g["requests"], g["errors"], g["tokens_in"]) for g in got] == [
            (w["group"], 36 * w["requests"], 36 * w["errors"], 36 * w["tokens_in"]) for w in want]
    finally:
        for s in stores:
            s.close()


def test_rows_an_older_version_wrote_are_summed_in_when_the_rollup_is_rebuilt_while_others_write(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rollup_rows()
    store.write(rows[:30])
    old = [replace(r, request_id=f"old-{r.request_id}") for r in rows[30:60]]
    _write_without_rollup(store, old)  # as a replica of a version without the rollup does
    since = NOW - timedelta(hours=5)
    assert sum(e["requests"] for e in store.rollup_summary(since, "key")) == 30
    failed: list[BaseException] = []

    def write_on() -> None:  # another replica, writing while the rollup is summed again
        try:
            for i in range(30, 90, 3):
                store.write(rows[i:i + 3])
        except BaseException as exc:
            failed.append(exc)

    writer = threading.Thread(target=write_on)
    writer.start()
    assert store.rebuild_rollup() >= 60
    writer.join()
    assert not failed
    _same_report(store.rollup_summary(since, "model"), _expected_from_rows(rows + old, "model"))
    if isinstance(store, SqliteStore):  # the same from the command line
        _write_without_rollup(store, [replace(r, request_id=f"cli-{r.request_id}") for r in rows])
        assert main(["usage", "--store", f"sqlite:///{store.path}", "--rebuild-rollup"]) == 0
        assert capsys.readouterr().out.startswith("rollup summed again from 210 rows of ")
        assert sum(e["requests"] for e in store.rollup_summary(since, "key")) == 210
    # A rollup dropped by hand is made again by the rebuild.
    if isinstance(store, SqliteStore):
        store._conn().execute("DROP TABLE usage_rollup")
    else:
        assert isinstance(store, PostgresStore)
        with store._db.get() as conn:
            conn.execute("DROP TABLE polyroute_usage_rollup")
    store.rebuild_rollup()
    assert sum(e["requests"] for e in store.rollup_summary(since, "key")) == (210 if isinstance(store, SqliteStore)
                                                                              else 120)


def _write_without_rollup(store: Store, rows: list[UsageRow]) -> None:
    from polyroute.tenancy.columns import usage_row

    if isinstance(store, SqliteStore):
        marks = ",".join("?" * len(USAGE_COLS.split(",")))
        store._conn().executemany(f"INSERT INTO usage ({USAGE_COLS}) VALUES ({marks})",
                                  [usage_row(r, lambda at: at.isoformat(timespec="microseconds")[:-6] + "Z")
                                   for r in rows])
        return
    assert isinstance(store, PostgresStore)
    with store._db.get() as conn:
        for r in rows:
            conn.execute(f"INSERT INTO polyroute_usage ({USAGE_COLS}) VALUES ({','.join(['%s'] * 17)})",
                         usage_row(r, lambda at: at))
