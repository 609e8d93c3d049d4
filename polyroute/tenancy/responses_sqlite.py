"""Stored Responses API responses in the store's SQLite file (``polyroute.tenancy.responses``).

Three tables: ``responses``, one row per response with its JSON; ``response_items``,
one row per output item that ``item_reference`` can name, with its response's owner
and end copied so an item is found in one read; and ``response_inputs``, one row per
input item that has an id, found by id and owner together (a client chooses those
ids, so one may repeat across responses and keys). A response and its items are
written and deleted in one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from polyroute.tenancy.responses import StoredItem, StoredResponse, inputs_with_ids
from polyroute.tenancy.sqlite_file import SqliteFile, immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, key TEXT, team TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,
    previous_id TEXT, input TEXT NOT NULL, response TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS responses_expires_at ON responses (expires_at);
CREATE TABLE IF NOT EXISTS response_items (
    id TEXT PRIMARY KEY, response_id TEXT NOT NULL, key TEXT, expires_at REAL NOT NULL, item TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS response_items_response ON response_items (response_id);
CREATE TABLE IF NOT EXISTS response_inputs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, response_id TEXT NOT NULL, key TEXT,
    expires_at REAL NOT NULL, item TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS response_inputs_id ON response_inputs (id);
CREATE INDEX IF NOT EXISTS response_inputs_response ON response_inputs (response_id);
"""
_COLUMNS = "id, key, team, created_at, expires_at, previous_id, input, response"


class SqliteResponses(SqliteFile):
    """``ResponseStore`` over the store's SQLite file; each thread has its own connection."""

    blocking = True

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._conn().executescript(_SCHEMA)

    def put(self, stored: StoredResponse) -> None:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM response_items WHERE response_id = ?", (stored.id,))
            conn.execute(f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", (
                stored.id, stored.key, stored.team, stored.created_at, stored.expires_at, stored.previous_id,
                orjson.dumps(stored.input).decode(), orjson.dumps(stored.response).decode()))
            conn.executemany("INSERT OR REPLACE INTO response_items VALUES (?,?,?,?,?)", [
                (item["id"], stored.id, stored.key, stored.expires_at, orjson.dumps(item).decode())
                for item in stored.items()])
            conn.execute("DELETE FROM response_inputs WHERE response_id = ?", (stored.id,))
            conn.executemany("INSERT INTO response_inputs (id, response_id, key, expires_at, item) VALUES (?,?,?,?,?)",
                             [(item["id"], stored.id, stored.key, stored.expires_at, orjson.dumps(item).decode())
                              for item in inputs_with_ids(stored)])

    def get(self, response_id: str, now: float) -> StoredResponse | None:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND expires_at > ?",
                                   (response_id, now)).fetchone()
        return None if row is None else stored_of(row)

    def item(self, item_id: str, now: float) -> StoredItem | None:
        row = self._conn().execute("SELECT key, response_id, item FROM response_items WHERE id = ? AND expires_at > ?",
                                   (item_id, now)).fetchone()
        return None if row is None else StoredItem(row[0], str(row[1]), orjson.loads(row[2]))

    def input_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT item FROM response_inputs WHERE id = ? AND key IS ? AND expires_at > ? "
                                   "ORDER BY seq DESC LIMIT 1", (item_id, key, now)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def delete(self, response_id: str) -> bool:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM response_items WHERE response_id = ?", (response_id,))
            conn.execute("DELETE FROM response_inputs WHERE response_id = ?", (response_id,))
            return conn.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def expire(self, now: float) -> None:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM response_items WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM response_inputs WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))


def stored_of(row: tuple[Any, ...]) -> StoredResponse:
    """A row of ``_COLUMNS`` (JSON as text, or as PostgreSQL's driver reads it) as a ``StoredResponse``."""
    given, response = (orjson.loads(v) if isinstance(v, str | bytes) else v for v in row[6:8])
    return StoredResponse(str(row[0]), row[1], row[2], float(row[3]), float(row[4]), row[5], given, response)
