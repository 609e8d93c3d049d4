"""Keys, teams and the usage ledger in one SQLite file (WAL: readers never wait for the writer).

Each thread gets its own connection (SQLite connections are not shared across
threads): the event loop's calls go through ``asyncio.to_thread``, the ledger's
writer thread has its own. A row of the ledger is keyed by the gateway's request
id, so writing a batch again (after a failure part-way) keeps each row once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from polyroute.errors import ConfigError
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord
from polyroute.tenancy.stores import UsageRow

T = TypeVar("T")
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
_KEY_COLS = ("name, digest, team, policy, routes, budget_usd, budget_period, rpm, tpm, expires_at, revoked, "
             "created_at")
_USAGE_COLS = ("request_id, at, key, team, route, model, backend, attempts, tokens_in, tokens_out, cost_usd, "
               "estimated, latency_ms, ttft_ms, status, error, stream")


def default_path(env: dict[str, str] | None = None) -> Path:
    """``polyroute.db`` in the user's data directory ($XDG_DATA_HOME, else ~/.local/share)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "polyroute" / "polyroute.db"


def path_of(url: str | None) -> Path:
    """The file of ``sqlite:///PATH`` (as SQLAlchemy reads it: ``sqlite:////abs.db`` is absolute,
    ``sqlite:///rel.db`` relative to the working directory); the default path when unset."""
    return default_path() if url is None else Path(url.removeprefix("sqlite:///"))


class SqliteStore:
    """``KeyStore`` and ``LedgerStore`` over one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the store's directory {self.path.parent}: {exc.strerror}",
                              key="store.url") from None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    # -- keys and teams ----------------------------------------------------------------------

    def _change(self, sql: str, args: tuple[object, ...]) -> int:
        """One change of keys or teams, and the version bumped with it, in one transaction."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            count = conn.execute(sql, args).rowcount
            if count:
                conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'keys_version'")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return count

    def version_now(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE name = 'keys_version'").fetchone()
        return int(row[0]) if row else 0

    def add_key_now(self, r: KeyRecord) -> None:
        try:
            self._change(f"INSERT INTO keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _key_row(r))
        except sqlite3.IntegrityError:
            raise KeyError(r.name) from None

    def put_key_now(self, r: KeyRecord) -> None:
        self._change(f"INSERT OR REPLACE INTO keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _key_row(r))

    def keys_now(self, name: str | None = None) -> list[KeyRecord]:
        where, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._conn().execute(f"SELECT {_KEY_COLS} FROM keys {where} ORDER BY name", args).fetchall()
        return [_key_of(row) for row in rows]

    def delete_key_now(self, name: str) -> bool:
        return self._change("DELETE FROM keys WHERE name = ?", (name,)) > 0

    def put_team_now(self, t: TeamRecord) -> None:
        lim = t.limits
        self._change("INSERT OR REPLACE INTO teams VALUES (?,?,?,?,?)",
                     (t.name, lim.budget_usd, lim.budget_period, lim.rpm, lim.tpm))

    def teams_now(self, name: str | None = None) -> list[TeamRecord]:
        where, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._conn().execute(f"SELECT * FROM teams {where} ORDER BY name", args).fetchall()
        return [TeamRecord(str(n), Limits(None if b is None else _float(b), str(p),
                                          None if rpm is None else _int(rpm), None if tpm is None else _int(tpm)))
                for n, b, p, rpm, tpm in rows]

    def delete_team_now(self, name: str) -> bool:
        return self._change("DELETE FROM teams WHERE name = ?", (name,)) > 0

    def revoke_session_now(self, session_id: str, until: float, now: float) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM console_logouts WHERE until < ?", (now,))
            conn.execute("INSERT OR REPLACE INTO console_logouts VALUES (?, ?)", (session_id, until))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def session_revoked_now(self, session_id: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM console_logouts WHERE session_id = ?", (session_id,)).fetchone()
        return row is not None

    async def version(self) -> int:
        return await self._run(self.version_now)

    async def add_key(self, record: KeyRecord) -> None:
        await self._run(lambda: self.add_key_now(record))

    async def put_key(self, record: KeyRecord) -> None:
        await self._run(lambda: self.put_key_now(record))

    async def key(self, name: str) -> KeyRecord | None:
        found = await self._run(lambda: self.keys_now(name))
        return found[0] if found else None

    async def keys(self) -> list[KeyRecord]:
        return await self._run(self.keys_now)

    async def delete_key(self, name: str) -> bool:
        return await self._run(lambda: self.delete_key_now(name))

    async def put_team(self, record: TeamRecord) -> None:
        await self._run(lambda: self.put_team_now(record))

    async def team(self, name: str) -> TeamRecord | None:
        found = await self._run(lambda: self.teams_now(name))
        return found[0] if found else None

    async def teams(self) -> list[TeamRecord]:
        return await self._run(self.teams_now)

    async def delete_team(self, name: str) -> bool:
        return await self._run(lambda: self.delete_team_now(name))

    async def revoke_session(self, session_id: str, until: float) -> None:
        now = time.time()
        await self._run(lambda: self.revoke_session_now(session_id, until, now))

    async def session_revoked(self, session_id: str) -> bool:
        return await self._run(lambda: self.session_revoked_now(session_id))

    # -- the ledger ----------------------------------------------------------------------------

    def write(self, rows: Sequence[UsageRow]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT OR IGNORE INTO usage ({_USAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [_usage_row(r) for r in rows],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        sql = f"SELECT {_USAGE_COLS} FROM usage WHERE at >= ?"
        args: tuple[object, ...] = (since.strftime(_STAMP),)
        if key is not None:
            sql, args = sql + " AND key = ?", (*args, key)
        return [_usage_of(r) for r in self._conn().execute(sql + " ORDER BY at", args).fetchall()]

    def spent(self, kind: str, name: str, since: datetime) -> float:
        """The cost the ledger holds for a key or team since ``since`` (to seed a budget at start)."""
        column = "key" if kind == "key" else "team"
        row = self._conn().execute(f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE {column} = ? AND at >= ?",
                                   (name, since.strftime(_STAMP))).fetchone()
        return float(row[0])


def _key_row(r: KeyRecord) -> tuple[object, ...]:
    lim = r.limits
    return (r.name, r.digest, r.team, r.policy, json.dumps(list(r.routes)) if r.routes is not None else None,
            lim.budget_usd, lim.budget_period, lim.rpm, lim.tpm,
            r.expires_at.isoformat() if r.expires_at else None, int(r.revoked), r.created_at.isoformat())


def _key_of(row: tuple[object, ...]) -> KeyRecord:
    name, dig, team, policy, routes, budget, period, rpm, tpm, expires, revoked, created = row
    return KeyRecord(
        str(name), dig if isinstance(dig, bytes) else b"", _opt(team), _opt(policy),
        tuple(json.loads(str(routes))) if routes is not None else None,
        Limits(None if budget is None else _float(budget), str(period),
               None if rpm is None else _int(rpm), None if tpm is None else _int(tpm)),
        datetime.fromisoformat(str(expires)) if expires else None, bool(revoked),
        datetime.fromisoformat(str(created)),
    )


def _usage_row(r: UsageRow) -> tuple[object, ...]:
    return (r.request_id, r.at.strftime(_STAMP), r.key, r.team, r.route, r.model, r.backend, r.attempts,
            r.tokens_in, r.tokens_out, r.cost_usd, int(r.estimated), r.latency_ms, r.ttft_ms, r.status, r.error,
            int(r.stream))


def _usage_of(row: tuple[object, ...]) -> UsageRow:
    (rid, at, key, team, route, model, backend, attempts, tin, tout, cost, est, lat, ttft, status, error,
     stream) = row
    return UsageRow(
        str(rid), datetime.strptime(str(at), _STAMP).replace(tzinfo=UTC), _opt(key), _opt(team), str(route),
        _opt(model), _opt(backend), str(attempts), _int(tin), _int(tout), _float(cost), bool(est), _float(lat),
        None if ttft is None else _float(ttft), _int(status), _opt(error), bool(stream),
    )


def _opt(v: object) -> str | None:
    return None if v is None else str(v)


def _int(v: object) -> int:
    return int(v) if isinstance(v, (int, float)) else 0


def _float(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0
