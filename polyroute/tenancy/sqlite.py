"""Keys, teams and the usage ledger in one SQLite file (WAL: readers never wait for the writer).

Each thread gets its own connection (SQLite connections are not shared across
threads): the event loop's calls go through ``asyncio.to_thread``, the ledger's
writer thread has its own. A row of the ledger is keyed by the gateway's request
id, so writing a batch again (after a failure part-way) keeps each row once.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    usage_row,
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
from polyroute.tenancy.sqlite_file import SqliteFile, immediate, snapshot
from polyroute.tenancy.stores import Traffic, UsageRow
from polyroute.tenancy.usage import entry

_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: text order is time order

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, digest BLOB NOT NULL UNIQUE, team TEXT, policy TEXT, routes TEXT,
    budget_usd REAL, budget_period TEXT NOT NULL, rpm INTEGER, tpm INTEGER,
    expires_at TEXT, revoked INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teams (
    name TEXT PRIMARY KEY, budget_usd REAL, budget_period TEXT NOT NULL, rpm INTEGER, tpm INTEGER);
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY, at TEXT NOT NULL, key TEXT, team TEXT, route TEXT NOT NULL,
    model TEXT, backend TEXT, attempts TEXT NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL, estimated INTEGER NOT NULL, latency_ms REAL NOT NULL, ttft_ms REAL,
    status INTEGER NOT NULL, error TEXT, stream INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS console_logouts (session_id TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('keys_version', 0);
CREATE INDEX IF NOT EXISTS usage_at ON usage (at);
CREATE INDEX IF NOT EXISTS usage_key_at ON usage (key, at);
"""
_ROLLUP_TABLE = table_sql("usage_rollup", "INTEGER", "REAL") + " WITHOUT ROWID"
# ``meta``'s mark of the rollup: 1, made before it counted refusals apart (``refused``); 2, with them.
_ROLLUP_VERSION = 2
# A row's five minutes, and its latency's bucket (``polyroute.tenancy.rollup``).
_SECONDS = "CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER)"  # a row's time, in whole seconds
_FIVE_MINUTES = f"{_SECONDS} / {STEP} * {STEP}"
_LATENCY_BUCKET = bucket_sql("latency_ms", "CAST({} AS INTEGER)")
# The rows a batch added (numbered after the last row before it), and every row (to fill a new rollup).
_ROLLUP_NEW = rollup_sql("usage_rollup", "usage", "rowid > ?", _FIVE_MINUTES, _LATENCY_BUCKET)
_ROLLUP_ALL = rollup_sql("usage_rollup", "usage", "true", _FIVE_MINUTES, _LATENCY_BUCKET)


def data_dir(env: dict[str, str] | None = None) -> Path:
    """polyroute's folder in the user's data directory ($XDG_DATA_HOME, else ~/.local/share)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "polyroute"


def default_path(env: dict[str, str] | None = None) -> Path:
    """``polyroute.db`` in the user's data directory."""
    return data_dir(env) / "polyroute.db"


def path_of(url: str | None) -> Path:
    """The file of ``sqlite:///PATH`` (as SQLAlchemy reads it: ``sqlite:////abs.db`` is absolute,
    ``sqlite:///rel.db`` relative to the working directory); the default path when unset."""
    return default_path() if url is None else Path(url.removeprefix("sqlite:///"))


class SqliteStore(SqliteFile, BlockingKeyStore):
    """``KeyStore`` and ``LedgerStore`` over one SQLite file."""

    remote = False
    waiting: str | None = None  # a local file is there, or opening it fails

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        conn = self._conn()
        conn.executescript(_SCHEMA)
        self._fill_rollup(conn)
        most = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._inserts = [(size, sql) for size, sql in _INSERTS_USAGE if size * _WIDTH <= most]

    def _opened(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("SELECT ln(2.0)")
        except sqlite3.OperationalError:  # an SQLite built without its math functions
            conn.create_function("ln", 1, math.log, deterministic=True)

    @staticmethod
    def _fill_rollup(conn: sqlite3.Connection) -> None:
        """Make the rollup, summing the rows a ledger from before it holds; a rollup from before ``refused``
        gains the column and is summed again, so its older periods count refusals apart too (once each:
        the version is marked in ``meta``)."""
        if _rollup_version(conn) >= _ROLLUP_VERSION:
            return  # made: no need to wait for the write lock
        with immediate(conn):
            if _rollup_version(conn) >= _ROLLUP_VERSION:
                return
            conn.execute(_ROLLUP_TABLE)
            if "refused" not in {column[1] for column in conn.execute("PRAGMA table_info(usage_rollup)")}:
                conn.execute(add_refused_sql("usage_rollup", "INTEGER"))
            conn.execute("DELETE FROM usage_rollup")
            conn.execute(_ROLLUP_ALL)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('rollup', ?)", (_ROLLUP_VERSION,))

    @property
    def where(self) -> str:
        return str(self.path)

    # -- keys and teams ----------------------------------------------------------------------

    def _change(self, sql: str, args: tuple[object, ...]) -> int:
        """One change of keys or teams, and the version bumped with it, in one transaction."""
        conn = self._conn()
        with immediate(conn):
            count = conn.execute(sql, args).rowcount
            if count:
                conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'keys_version'")
        return count

    def version_now(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE name = 'keys_version'").fetchone()
        return int(row[0]) if row else 0

    def add_key_now(self, r: KeyRecord) -> None:
        try:
            self._change(f"INSERT INTO keys ({KEY_COLS}) VALUES ({_marks(12)})", key_row(r, _iso))
        except sqlite3.IntegrityError:
            raise KeyError(r.name) from None

    def put_key_now(self, r: KeyRecord) -> None:
        self._change(f"INSERT OR REPLACE INTO keys ({KEY_COLS}) VALUES ({_marks(12)})", key_row(r, _iso))

    def keys_now(self, name: str | None = None) -> list[KeyRecord]:
        where, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._conn().execute(f"SELECT {KEY_COLS} FROM keys {where} ORDER BY name", args).fetchall()
        return [key_of(row) for row in rows]

    def delete_key_now(self, name: str) -> bool:
        return self._change("DELETE FROM keys WHERE name = ?", (name,)) > 0

    def put_team_now(self, t: TeamRecord) -> None:
        self._change(f"INSERT OR REPLACE INTO teams ({TEAM_COLS}) VALUES ({_marks(5)})", team_row(t))

    def teams_now(self, name: str | None = None) -> list[TeamRecord]:
        where, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._conn().execute(f"SELECT {TEAM_COLS} FROM teams {where} ORDER BY name", args).fetchall()
        return [team_of(row) for row in rows]

    def delete_team_now(self, name: str) -> bool:
        return self._change("DELETE FROM teams WHERE name = ?", (name,)) > 0

    def revoke_session_now(self, session_id: str, until: float, now: float) -> None:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM console_logouts WHERE until < ?", (now,))
            conn.execute("INSERT OR REPLACE INTO console_logouts VALUES (?, ?)", (session_id, until))

    def session_revoked_now(self, session_id: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM console_logouts WHERE session_id = ?", (session_id,)).fetchone()
        return row is not None

    # -- the ledger ----------------------------------------------------------------------------

    def write(self, rows: Sequence[UsageRow]) -> None:
        conn = self._conn()
        with immediate(conn):
            # One writer at a time: the rows this batch adds are numbered after the last one there now.
            top = conn.execute("SELECT COALESCE(max(rowid), 0) FROM usage").fetchone()[0]
            done = 0
            for size, insert in self._inserts:
                while len(rows) - done >= size:
                    conn.execute(insert, [v for r in rows[done:done + size] for v in usage_row(r, _stamp)])
                    done += size
            conn.execute(_ROLLUP_NEW, (top,))

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        sql = f"SELECT {USAGE_COLS} FROM usage WHERE at >= ?"
        args: tuple[object, ...] = (_stamp(since),)
        if key is not None:
            sql, args = sql + " AND key = ?", (*args, key)
        return [usage_of(r) for r in self._conn().execute(sql + " ORDER BY at", args).fetchall()]

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]:
        # By rowid: one writer at a time (BEGIN IMMEDIATE), so rows are numbered in the order they land.
        conn = self._conn()
        top = conn.execute("SELECT max(rowid) FROM usage").fetchone()[0] or 0
        if mark is None:
            return [], float(top)
        after = int(mark) if top >= mark else 0  # emptied (retention) meanwhile: numbered from 1 again
        got = conn.execute(f"SELECT {USAGE_COLS}, rowid FROM usage WHERE rowid > ? ORDER BY rowid",
                           (after,)).fetchall()
        return [usage_of(r[:-1]) for r in got], float(got[-1][-1] if got else after)

    def latest(self, count: int, mark: float) -> list[UsageRow]:
        got = self._conn().execute(f"SELECT {USAGE_COLS} FROM usage WHERE rowid <= ? ORDER BY rowid DESC LIMIT ?",
                                   (int(mark), count)).fetchall()
        return [usage_of(r) for r in reversed(got)]

    def traffic(self, since: datetime, mark: float, ratio: float) -> Traffic:
        def bucket(col: str) -> str:  # ``polyroute.tenancy.rollup``'s, ``ratio`` apart
            return bucket_sql(col, "CAST({} AS INTEGER)", ratio)

        conn = self._conn()
        minute = f"{_SECONDS} / 60 * 60"
        args = (_stamp(since), int(mark))
        totals, latency, ttft, routes = (
            conn.execute(sql, args).fetchall()
            for sql in traffic_sql("usage", minute, "at >= ? AND rowid <= ?", bucket))
        return Traffic(totals, latency, ttft, routes)

    def cost_by_step(self, since: datetime, by: str, step: int) -> list[tuple[str, int, float]]:
        start = rollup_start(since, step)
        return [(str(g), int(i), float(c)) for g, i, c in self._conn().execute(
            f"SELECT {_ROLLUP_GROUP_BY[by]} AS g, (at - ?) / ? AS i, sum(cost_usd) FROM usage_rollup WHERE at >= ? "
            "GROUP BY g, i", (start, int(step), start)).fetchall()]

    def rollup_summary(self, since: datetime, by: str) -> list[dict[str, Any]]:
        conn = self._conn()
        with snapshot(conn):  # the totals and the histograms of one set of sums
            totals, histograms = [conn.execute(sql, (rollup_start(since),)).fetchall()
                                  for sql in report_sql("usage_rollup", _ROLLUP_GROUP_BY[by], "?")]
        return report_of(totals, histograms)

    def summary(self, since: datetime, by: str, key: str | None = None) -> list[dict[str, Any]]:
        """Summed by SQLite, its percentiles the nearest rank as ``summarize`` takes it, with no row made."""
        group = _GROUP_BY[by]
        where, args = "at >= ?", [_stamp(since)]
        if key is not None:
            where, args = where + " AND key = ?", [*args, key]
        conn = self._conn()
        with snapshot(conn):  # the totals and the ranks of one set of rows, though writers go on adding
            totals, at_rank = self._summed(conn, group, where, args)
        out = []
        for g, n, tokens_in, tokens_out, cost, errors, refused in sorted(totals):
            answered = n - refused
            p50, p95 = (at_rank[(g, max(int(-(-q * answered // 1)), 1))] if answered else 0.0 for q in (0.5, 0.95))
            out.append(entry(g, n, tokens_in, tokens_out, cost, errors, refused, p50, p95))
        return out

    @staticmethod
    def _summed(conn: sqlite3.Connection, group: str, where: str,
                args: list[str]) -> tuple[list[Any], dict[tuple[str, int], float]]:
        totals = conn.execute(
            f"SELECT {group} AS g, count(*), COALESCE(sum(tokens_in), 0), COALESCE(sum(tokens_out), 0), "
            f"COALESCE(sum(cost_usd), 0), sum({failed_sql()}), sum({refused_sql()}) "
            f"FROM usage WHERE {where} GROUP BY g", args).fetchall()
        # The rows at the ranks of p50 and p95 of each group's requests not refused (ceil(q * n), as a float, as
        # ``percentile`` has it).
        ranks = " OR ".join(f"rn = max(CAST({q} * n AS INTEGER) + ({q} * n > CAST({q} * n AS INTEGER)), 1)"
                            for q in ("0.5", "0.95"))
        at_rank: dict[tuple[str, int], float] = {
            (g, rn): latency for g, rn, latency in conn.execute(
                f"SELECT g, rn, latency_ms FROM (SELECT {group} AS g, latency_ms, "
                f"row_number() OVER (PARTITION BY {group} ORDER BY latency_ms) AS rn, "
                f"count(*) OVER (PARTITION BY {group}) AS n FROM usage WHERE {where} AND NOT {refused_sql()}) "
                f"WHERE {ranks}", args)
        }
        return totals, at_rank

    def rebuild_rollup(self) -> int:
        conn = self._conn()
        with immediate(conn):  # the one writer: the ledger's wait
            conn.execute(_ROLLUP_TABLE)  # made again if it was dropped by hand
            conn.execute("DELETE FROM usage_rollup")
            conn.execute(_ROLLUP_ALL)
            rows = int(conn.execute("SELECT count(*) FROM usage").fetchone()[0])
        return rows

    def spent(self, kind: str, name: str, since: datetime) -> float:
        column = "key" if kind == "key" else "team"
        row = self._conn().execute(f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE {column} = ? AND at >= ?",
                                   (name, _stamp(since))).fetchone()
        return float(row[0])

    def expire(self, before: datetime) -> None:
        conn = self._conn()
        conn.execute("DELETE FROM usage WHERE at < ?", (_stamp(before),))
        conn.execute("DELETE FROM usage_rollup WHERE at + ? <= ?", (STEP, before.timestamp()))  # wholly before


_GROUP_BY = group_by("substr(at, 1, 10)")

_ROLLUP_GROUP_BY = group_by("date(at, 'unixepoch')")


def _rollup_version(conn: sqlite3.Connection) -> int:
    """The rollup's mark in ``meta`` (0: none made yet)."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'rollup'").fetchone()
    return int(row[0]) if row is not None else 0


def _marks(n: int) -> str:
    return ",".join("?" * n)


# A batch goes in as a few statements of many rows each (VALUES (...), (...), ...), whole chunks of
# 256, 128, ... 1 rows: SQLite takes each in one step, so this thread lets go of the GIL a few times per
# batch rather than once per row (each a hand-off with the event loop), and no row is parsed again (over a
# JSON array of rows, json_extract read each row's text once per column: most of SQLite's work per row).
# Fixed sizes keep the statements few and cached; a store whose SQLite takes fewer values per statement
# uses only the chunks that fit.
_WIDTH = len(USAGE_COLS.split(","))
_INSERTS_USAGE = [
    (size, f"INSERT OR IGNORE INTO usage ({USAGE_COLS}) VALUES " + ",".join([f"({_marks(_WIDTH)})"] * size))
    for size in (256, 128, 64, 32, 16, 8, 4, 2, 1)
]


def _iso(at: datetime) -> str:
    return at.isoformat()


def _stamp(at: datetime) -> str:
    """``_STAMP``'s text (isoformat's is the same, and a third of strftime's cost for every ledger row)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
