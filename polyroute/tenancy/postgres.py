"""Keys, teams and the usage ledger in PostgreSQL (psycopg 3): one database for every replica.

Tables are named ``polyroute_*``, so the database may hold others. The usage table
is partitioned by month on ``at`` (``polyroute_usage_YYYY_MM``): a month's partition
is made before the first row of that month is written, the next month's with it,
and retention drops whole months (a ``DROP TABLE`` where a ``DELETE`` would rewrite
millions of rows). A month is dropped once all of it is older than
``retention_days``, so rows are kept up to a month longer than that.

A partitioned table's primary key must hold its partition key, so a row is keyed by
``(request_id, at)``. A request's ``at`` is fixed once, when the ledger is told that
it finished, and travels with the row through the spool: a row written twice (a
batch retried after a lost acknowledgement, a spool replayed) has the same key and
is kept once (``ON CONFLICT DO NOTHING``).

A batch of usage rows is one ``INSERT`` over one JSON array of rows, each row an
object keyed by column (the spool's encoding), typed by ``json_to_recordset``: the
server parses it in one step and the client's work is one ``orjson.dumps``, where a
statement per row (``executemany``) costs the writer thread, holding the GIL, an
adaptation and a message per row. Arrays per column (``unnest``) cost the client
more still, since psycopg inspects every element of a list in Python to type it;
``COPY`` into a temporary table saves little server time on whole batches and costs
four more round trips and a table kept per connection. Duplicates inside one batch
are kept once too.

The schema is made and migrated at start in one transaction that first takes an
advisory lock, so replicas starting together apply each step once, in order;
partitions are made and dropped under the same lock. A connection that fails is
closed and the next call opens a new one, so the store outlives a restart of the
server.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from polyroute.errors import ConfigError, StoreUnavailable
from polyroute.tenancy.blocking import BlockingKeyStore
from polyroute.tenancy.columns import (
    KEY_COLS,
    TEAM_COLS,
    USAGE_COLS,
    group_by,
    key_of,
    key_row,
    team_of,
    team_row,
    traffic_sql,
    usage_of,
)
from polyroute.tenancy.fault import failed_sql, refused_sql
from polyroute.tenancy.model import KeyRecord, TeamRecord
from polyroute.tenancy.rollup import (
    STEP,
    add_refused_sql,
    bucket_sql,
    report_of,
    report_sql,
    rollup_sql,
    rollup_start,
    table_sql,
)
from polyroute.tenancy.stores import Rejected, Traffic, UsageRow
from polyroute.tenancy.usage import entry

LOCK_ID = 0x706F6C79726F7574  # the advisory lock of schema changes ("polyrout")
# A server that vanished without closing its connections (a host down, a network cut) is found out
# within about half a minute instead of the kernel's two hours, so a write blocked on it fails and is retried.
LIVENESS: dict[str, Any] = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": 30_000}
IDLE_CONNECTIONS = 4

# A row's five minutes, and its latency's bucket (``polyroute.tenancy.rollup``).
_FIVE_MINUTES = f"(floor(extract(epoch FROM at) / {STEP}) * {STEP})::bigint"
_LATENCY_BUCKET = bucket_sql("latency_ms", "floor({})::int")

# The rollup, and every row of the ledger added to it: when it is made, and when it is summed again.
_ROLLUP_TABLE = table_sql("polyroute_usage_rollup", "BIGINT", "DOUBLE PRECISION")
_ROLLUP_ALL = rollup_sql("polyroute_usage_rollup", "polyroute_usage", "true", _FIVE_MINUTES, _LATENCY_BUCKET)

# Each step runs once, in order; ``polyroute_meta.schema`` counts the steps done.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS polyroute_keys (
            name TEXT PRIMARY KEY, digest BYTEA NOT NULL UNIQUE, team TEXT, policy TEXT, routes TEXT,
            budget_usd DOUBLE PRECISION, budget_period TEXT NOT NULL, rpm INTEGER, tpm INTEGER,
            expires_at TIMESTAMPTZ, revoked BOOLEAN NOT NULL DEFAULT false, created_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS polyroute_teams (
            name TEXT PRIMARY KEY, budget_usd DOUBLE PRECISION, budget_period TEXT NOT NULL,
            rpm INTEGER, tpm INTEGER)""",
        "INSERT INTO polyroute_meta VALUES ('keys_version', 0) ON CONFLICT DO NOTHING",
        """CREATE TABLE IF NOT EXISTS polyroute_usage (
            request_id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL, key TEXT, team TEXT, route TEXT NOT NULL,
            model TEXT, backend TEXT, attempts JSONB NOT NULL, tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, estimated BOOLEAN NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION, status SMALLINT NOT NULL,
            error TEXT, stream BOOLEAN NOT NULL,
            PRIMARY KEY (request_id, at)) PARTITION BY RANGE (at)""",
        "CREATE INDEX IF NOT EXISTS polyroute_usage_at ON polyroute_usage (at)",
        "CREATE INDEX IF NOT EXISTS polyroute_usage_key_at ON polyroute_usage (key, at)",
        "CREATE INDEX IF NOT EXISTS polyroute_usage_team_at ON polyroute_usage (team, at)",
    ),
    (
        # Console logouts, so every replica refuses a signed session cookie once it is logged out.
        """CREATE TABLE IF NOT EXISTS polyroute_console_logouts (
            session_id TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL)""",
    ),
    (
        # When a row landed (its transaction's start, by the database's clock), for the console to read
        # only what is new. Rows already there take the time of this step.
        "ALTER TABLE polyroute_usage ADD COLUMN IF NOT EXISTS written_at TIMESTAMPTZ NOT NULL DEFAULT now()",
        "CREATE INDEX IF NOT EXISTS polyroute_usage_written_at ON polyroute_usage (written_at)",
    ),
    (
        # The rollup the console's Usage page reads (``polyroute.tenancy.rollup``), with the rows already there.
        _ROLLUP_TABLE,
        _ROLLUP_ALL,
    ),
    (
        # Refusals counted apart from failures (``polyroute.tenancy.fault``), older periods too: the rollup is
        # summed again from the rows. The ALTER holds the table until this commits, so a replica's write waits
        # and then adds to the new sums, as ``rebuild_rollup``'s lock has it.
        add_refused_sql("polyroute_usage_rollup", "BIGINT", unless_there=True),
        "DELETE FROM polyroute_usage_rollup",
        _ROLLUP_ALL,
    ),
)
# Seconds ``written_after`` reads back: replicas' write transactions can commit in another order than
# they began, and a transaction's time is its start.
WRITTEN_LAG = 5.0
_SELECT_USAGE = USAGE_COLS.replace("attempts", "attempts::text")
# The type of each usage column as a batch's JSON is read: the table's, but ``attempts`` is JSON kept in a
# string (``UsageRow.attempts``), so it is read as text and cast, rather than stored as a JSON string.
USAGE_BATCH_TYPES = ("text", "timestamp with time zone", "text", "text", "text", "text", "text", "text", "integer",
                     "integer", "double precision", "boolean", "double precision", "double precision", "smallint",
                     "text", "boolean")
_BATCH = ", ".join(f"{c} {t}" for c, t in zip(USAGE_COLS.split(", "), USAGE_BATCH_TYPES, strict=True))
# The batch's rows, and (in the same statement) those the table took, not one it held already, added
# to the rollup.
_INSERT_USAGE = (f"WITH added AS (INSERT INTO polyroute_usage ({USAGE_COLS}) "
                 f"SELECT {USAGE_COLS.replace('attempts', 'attempts::jsonb')} "
                 f"FROM json_to_recordset(%s::json) AS batch({_BATCH}) ON CONFLICT DO NOTHING "
                 "RETURNING at, key, team, route, model, backend, latency_ms, status, error, tokens_in, tokens_out, "
                 "cost_usd) "
                 + rollup_sql("polyroute_usage_rollup", "added", "true", _FIVE_MINUTES, _LATENCY_BUCKET))
# A NUL character as JSON writes it (``\u0000``), not preceded by an escaping backslash.
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_KEY_VALUES = ",".join(["%s"] * 12)
_UPSERT_KEY = (f"INSERT INTO polyroute_keys ({KEY_COLS}) VALUES ({_KEY_VALUES}) ON CONFLICT (name) DO UPDATE SET "
               + ", ".join(f"{c} = EXCLUDED.{c}" for c in KEY_COLS.split(", ")[1:]))
_UPSERT_TEAM = (f"INSERT INTO polyroute_teams ({TEAM_COLS}) VALUES (%s,%s,%s,%s,%s) ON CONFLICT (name) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in TEAM_COLS.split(", ")[1:]))

# The report's groups as SQL (``polyroute.tenancy.usage.group_of``): a missing name is "-", a day is UTC's.
_GROUP_BY = group_by("to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
_ROLLUP_GROUP_BY = group_by("to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

Month = tuple[int, int]


def where_of(url: str) -> str:
    """``postgresql://HOST:PORT/DB``: the database a URL names, without user or password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an unreadable URL)"
    return f"postgresql://{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


class _Connections:
    """A few idle connections; one that broke is closed instead of returned."""

    def __init__(self, url: str, password: str | None) -> None:
        self.url = url
        self.where = where_of(url)
        self._extra: dict[str, Any] = {"password": password} if password else {}
        self._idle: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        # Run on the first connection made (the schema's migrations), until it has succeeded once.
        self.prepare: Callable[[psycopg.Connection[tuple[Any, ...]]], None] | None = None

    @contextmanager
    def get(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A connection; a server that cannot be reached is ``StoreUnavailable`` (psycopg's errors end here)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self.url, autocommit=True, application_name="polyroute", **LIVENESS,
                                       **self._extra)
            if (prepare := self.prepare) is not None:
                prepare(conn)
                self.prepare = None
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            if not isinstance(exc, psycopg.OperationalError):
                raise
            raise StoreUnavailable(f"the store {self.where} cannot be reached: {_reason(exc)}") from None
        try:
            yield conn
        except psycopg.OperationalError as exc:
            conn.close()
            raise StoreUnavailable(f"the store {self.where} cannot be reached: {_reason(exc)}") from None
        except BaseException:
            if conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            raise
        finally:
            self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        if conn.closed:
            return
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresStore(BlockingKeyStore):
    """``KeyStore`` and ``LedgerStore`` over one PostgreSQL database."""

    remote = True

    def __init__(self, url: str, password: str | None = None, *, lazy: bool = False) -> None:
        """Open the store and bring its schema up to date. With ``lazy`` (a gateway starting), a server
        that cannot be reached yet for a passing cause is not an error: ``waiting`` is set, and the
        schema is brought up to date on the first connection that succeeds."""
        self.where = where_of(url)
        self._db = _Connections(url, password)
        self._months: set[Month] = set()  # partitions known to exist
        self._db.prepare = self._prepare
        self.waiting: str | None = None  # why the store could not be reached when it was opened
        try:
            with self._db.get():
                pass
        except StoreUnavailable as exc:
            if not (lazy and passing(exc.message)):
                self._db.close()
                raise ConfigError(f"cannot open the store: {exc.message}", key="store.url") from None
            self.waiting = exc.message
        except psycopg.Error as exc:
            self._db.close()
            raise ConfigError(f"cannot open the store: {_reason(exc)}", key="store.url") from None

    def close(self) -> None:
        self._db.close()

    def _prepare(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._migrate(conn)
        self._partitions_on(conn, _month_of(datetime.now(UTC)))

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS polyroute_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
            row = conn.execute("SELECT value FROM polyroute_meta WHERE name = 'schema'").fetchone()
            done = int(row[0]) if row else 0
            for step in MIGRATIONS[done:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute("INSERT INTO polyroute_meta VALUES ('schema', %s) "
                         "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (len(MIGRATIONS),))

    # -- keys and teams ----------------------------------------------------------------------

    def _change(self, sql: str, args: Sequence[object]) -> int:
        """One change of keys or teams, and the version bumped with it, in one transaction."""
        with self._db.get() as conn, conn.transaction():
            count = conn.execute(sql, args).rowcount
            if count:
                conn.execute("UPDATE polyroute_meta SET value = value + 1 WHERE name = 'keys_version'")
        return count

    def _select(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._db.get() as conn:
            return conn.execute(sql, args).fetchall()

    def version_now(self) -> int:
        rows = self._select("SELECT value FROM polyroute_meta WHERE name = 'keys_version'")
        return int(rows[0][0]) if rows else 0

    def add_key_now(self, r: KeyRecord) -> None:
        try:
            self._change(f"INSERT INTO polyroute_keys ({KEY_COLS}) VALUES ({_KEY_VALUES})", key_row(r, _same))
        except psycopg.errors.UniqueViolation:
            raise KeyError(r.name) from None

    def put_key_now(self, r: KeyRecord) -> None:
        self._change(_UPSERT_KEY, key_row(r, _same))

    def keys_now(self, name: str | None = None) -> list[KeyRecord]:
        where, args = ("WHERE name = %s", (name,)) if name is not None else ("", ())
        return [key_of(row) for row in self._select(f"SELECT {KEY_COLS} FROM polyroute_keys {where} ORDER BY name",
                                                    args)]

    def delete_key_now(self, name: str) -> bool:
        return self._change("DELETE FROM polyroute_keys WHERE name = %s", (name,)) > 0

    def put_team_now(self, t: TeamRecord) -> None:
        self._change(_UPSERT_TEAM, team_row(t))

    def teams_now(self, name: str | None = None) -> list[TeamRecord]:
        where, args = ("WHERE name = %s", (name,)) if name is not None else ("", ())
        return [team_of(row) for row in self._select(
            f"SELECT {TEAM_COLS} FROM polyroute_teams {where} ORDER BY name", args)]

    def delete_team_now(self, name: str) -> bool:
        return self._change("DELETE FROM polyroute_teams WHERE name = %s", (name,)) > 0

    def revoke_session_now(self, session_id: str, until: float, now: float) -> None:
        with self._db.get() as conn, conn.transaction():
            conn.execute("DELETE FROM polyroute_console_logouts WHERE until < %s", (now,))
            conn.execute("INSERT INTO polyroute_console_logouts VALUES (%s, %s) "
                         "ON CONFLICT (session_id) DO UPDATE SET until = EXCLUDED.until", (session_id, until))

    def session_revoked_now(self, session_id: str) -> bool:
        return bool(self._select("SELECT 1 FROM polyroute_console_logouts WHERE session_id = %s", (session_id,)))

    # -- the ledger ----------------------------------------------------------------------------

    def write(self, rows: Sequence[UsageRow]) -> list[Rejected] | None:
        for month in sorted({_month_of(r.at) for r in rows} - self._months):
            self._partitions(month)
        try:
            self._insert(rows)
        except (psycopg.DataError, psycopg.IntegrityError):
            return self._one_by_one(rows)  # a row the table cannot take: the others must not wait for it
        return None

    def _insert(self, rows: Sequence[UsageRow]) -> None:
        batch = orjson.dumps(list(rows)).decode()  # a dataclass is an object keyed by its fields: the columns
        if "\\u0000" in batch:
            batch = _NUL.sub(r"\1\\ufffd", batch)  # PostgreSQL's text holds no NUL (an upstream's message may)
        with self._db.get() as conn:
            conn.execute(_INSERT_USAGE, (batch,))  # one statement: all of the batch or none of it

    def _one_by_one(self, rows: Sequence[UsageRow]) -> list[Rejected]:
        refused = []
        for row in rows:
            try:
                self._insert([row])
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                refused.append(Rejected(row, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
        return refused

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        sql = f"SELECT {_SELECT_USAGE} FROM polyroute_usage WHERE at >= %s"
        args: tuple[object, ...] = (since,)
        if key is not None:
            sql, args = sql + " AND key = %s", (*args, key)
        return [usage_of(r) for r in self._select(sql + " ORDER BY at", args)]

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]:
        if mark is None:
            return [], float(self._select("SELECT extract(epoch FROM now())")[0][0])
        got = self._select(f"SELECT {_SELECT_USAGE}, extract(epoch FROM written_at) FROM polyroute_usage "
                           "WHERE written_at > to_timestamp(%s) ORDER BY written_at", (mark - WRITTEN_LAG,))
        return [usage_of(r[:-1]) for r in got], max(mark, float(got[-1][-1])) if got else mark

    def latest(self, count: int, mark: float) -> list[UsageRow]:
        got = self._select(f"SELECT {_SELECT_USAGE} FROM polyroute_usage WHERE written_at <= to_timestamp(%s) "
                           "ORDER BY written_at DESC, at DESC LIMIT %s", (mark - WRITTEN_LAG, count))
        return [usage_of(r) for r in reversed(got)]

    def traffic(self, since: datetime, mark: float, ratio: float) -> Traffic:
        def bucket(col: str) -> str:  # ``polyroute.tenancy.rollup``'s, ``ratio`` apart
            return bucket_sql(col, "floor({})::int", ratio)

        minute = "(floor(extract(epoch FROM at) / 60) * 60)::bigint"
        args = (since, mark - WRITTEN_LAG)  # what ``written_after(mark)`` reads again is left to it
        totals, latency, ttft, routes = (
            self._select(sql, args)
            for sql in traffic_sql("polyroute_usage", minute, "at >= %s AND written_at <= to_timestamp(%s)", bucket))
        return Traffic(
            [(int(m), int(n), int(e), int(r), float(c), int(i), int(o)) for m, n, e, r, c, i, o in totals],
            [(int(m), int(b), int(n)) for m, b, n in latency],
            [(int(m), int(b), int(n)) for m, b, n in ttft],
            [(int(m), str(r), int(n)) for m, r, n in routes],
        )

    def cost_by_step(self, since: datetime, by: str, step: int) -> list[tuple[str, int, float]]:
        start = rollup_start(since, step)
        return [(str(g), int(i), float(c)) for g, i, c in self._select(
            f"SELECT {_ROLLUP_GROUP_BY[by]} AS g, (at - %s::bigint) / %s::bigint AS i, sum(cost_usd) "
            "FROM polyroute_usage_rollup WHERE at >= %s::bigint GROUP BY g, i", (start, int(step), start))]

    def rollup_summary(self, since: datetime, by: str) -> list[dict[str, Any]]:
        totals, histograms = (self._select(sql, (rollup_start(since),))
                              for sql in report_sql("polyroute_usage_rollup", _ROLLUP_GROUP_BY[by], "%s::bigint"))
        return report_of(totals, histograms)

    def summary(self, since: datetime, by: str, key: str | None = None) -> list[dict[str, Any]]:
        """Summed in the database; ``percentile_disc`` is the nearest rank, as ``summarize`` takes it."""
        group = _GROUP_BY[by]
        answered = f"FILTER (WHERE NOT {refused_sql()})"  # percentiles of the requests not refused
        sql = (f"SELECT {group}, count(*), COALESCE(sum(tokens_in), 0), COALESCE(sum(tokens_out), 0), "
               f"COALESCE(sum(cost_usd), 0), count(*) FILTER (WHERE {failed_sql()}), "
               f"count(*) FILTER (WHERE {refused_sql()}), "
               f"percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) {answered}, "
               f"percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) {answered} "
               "FROM polyroute_usage WHERE at >= %s")
        args: tuple[object, ...] = (since,)
        if key is not None:
            sql, args = sql + " AND key = %s", (*args, key)
        found = self._select(sql + f" GROUP BY {group}", args)
        return [entry(str(g), int(n), int(tin), int(tout), float(cost), int(err), int(ref), float(p50 or 0.0),
                      float(p95 or 0.0))
                for g, n, tin, tout, cost, err, ref, p50, p95 in sorted(found, key=lambda r: str(r[0]))]

    def rebuild_rollup(self) -> int:
        with self._db.get() as conn, conn.transaction():
            # Writers add to the rollup in the statement that inserts their rows: this lock holds each one
            # until the new sums are committed, and this transaction's next statement sees every row
            # committed before it.
            conn.execute(_ROLLUP_TABLE)  # made again if it was dropped by hand
            conn.execute("LOCK TABLE polyroute_usage_rollup IN EXCLUSIVE MODE")
            conn.execute("DELETE FROM polyroute_usage_rollup")
            conn.execute(_ROLLUP_ALL)
            found = conn.execute("SELECT count(*) FROM polyroute_usage").fetchone()
        return int(found[0]) if found else 0

    def spent(self, kind: str, name: str, since: datetime) -> float:
        column = "key" if kind == "key" else "team"
        rows = self._select(f"SELECT COALESCE(SUM(cost_usd), 0) FROM polyroute_usage WHERE {column} = %s "
                            "AND at >= %s", (name, since))
        return float(rows[0][0])

    def expire(self, before: datetime) -> None:
        """Drop every month that ends at or before ``before``, and the rollup of what they held."""
        with self._db.get() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            kept_from: datetime | None = None
            for month in self._partition_months(conn):
                if _start_of(_next(month)) <= before:
                    conn.execute(f"DROP TABLE IF EXISTS {_partition(month)}")
                    self._months.discard(month)
                    kept_from = _start_of(_next(month))
            if kept_from is not None:
                conn.execute("DELETE FROM polyroute_usage_rollup WHERE at < %s::bigint", (int(kept_from.timestamp()),))

    def partitions(self) -> list[str]:
        """The usage table's partitions, oldest first."""
        with self._db.get() as conn:
            return [_partition(m) for m in self._partition_months(conn)]

    def _partition_months(self, conn: psycopg.Connection[tuple[Any, ...]]) -> list[Month]:
        names = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = 'polyroute_usage'::regclass").fetchall()
        months = []
        for (name,) in names:
            year, _, month = str(name).removeprefix("polyroute_usage_").partition("_")
            if year.isdigit() and month.isdigit():
                months.append((int(year), int(month)))
        return sorted(months)

    def _partitions(self, month: Month) -> None:
        with self._db.get() as conn:
            self._partitions_on(conn, month)

    def _partitions_on(self, conn: psycopg.Connection[tuple[Any, ...]], month: Month) -> None:
        """Make the partitions of ``month`` and of the month after it, unless they exist."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            for m in (month, _next(month)):
                start, end = _start_of(m).isoformat(), _start_of(_next(m)).isoformat()
                conn.execute(f"CREATE TABLE IF NOT EXISTS {_partition(m)} PARTITION OF polyroute_usage "
                             f"FOR VALUES FROM ('{start}') TO ('{end}')")
        self._months.update((month, _next(month)))


def _month_of(at: datetime) -> Month:
    at = at.astimezone(UTC)
    return at.year, at.month


def _next(month: Month) -> Month:
    year, m = month
    return (year + 1, 1) if m == 12 else (year, m + 1)


def _start_of(month: Month) -> datetime:
    return datetime(month[0], month[1], 1, tzinfo=UTC)


def _partition(month: Month) -> str:
    return f"polyroute_usage_{month[0]:04d}_{month[1]:02d}"


def _same(at: datetime) -> datetime:
    return at


# Words of a server that was reached and refused us for good: the config's to change, not an outage to wait out.
_FOR_GOOD = ("does not exist", "authentication failed", "pg_hba.conf", "invalid", "certificate")


def passing(reason: str) -> bool:
    """Whether a store that cannot be reached for ``reason`` may be there soon (down, starting, full)."""
    return not any(words in reason for words in _FOR_GOOD)


def side_tables(
    url: str, password: str | None, make_tables: Callable[[psycopg.Connection[tuple[Any, ...]]], None]
) -> _Connections:
    """A few connections of their own for tables kept beside the store's (stored responses, conversations), the
    tables made at the first connection that works. A server down for now is waited out; one that refuses us
    for good (``passing``) is the config's error."""
    db = _Connections(url, password)
    db.prepare = make_tables
    try:
        with db.get():
            pass
    except StoreUnavailable as exc:
        if not passing(exc.message):
            db.close()
            raise ConfigError(f"cannot open the store: {exc.message}", key="store.url") from None
    return db


def _reason(exc: psycopg.Error) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
