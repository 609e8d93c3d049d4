"""Stored Responses API responses in the store's PostgreSQL database (``polyroute.tenancy.responses``).

The tables of ``responses_sqlite``, named ``polyroute_responses``,
``polyroute_response_items`` and ``polyroute_response_inputs``, with the JSON as ``jsonb``. They are made at the
first connection, under the advisory lock of the store's own schema changes, so
replicas starting together make them once; every replica reads what any of them
stored, so a conversation may go on through another replica.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from polyroute.tenancy.postgres import _NUL, LOCK_ID, side_tables
from polyroute.tenancy.responses import StoredItem, StoredResponse, inputs_with_ids
from polyroute.tenancy.responses_sqlite import stored_of

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS polyroute_responses (
        id TEXT PRIMARY KEY, key TEXT, team TEXT, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, previous_id TEXT, input JSONB NOT NULL, response JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS polyroute_responses_expires_at ON polyroute_responses (expires_at)",
    """CREATE TABLE IF NOT EXISTS polyroute_response_items (
        id TEXT PRIMARY KEY, response_id TEXT NOT NULL, key TEXT, expires_at DOUBLE PRECISION NOT NULL,
        item JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS polyroute_response_items_response ON polyroute_response_items (response_id)",
    """CREATE TABLE IF NOT EXISTS polyroute_response_inputs (
        seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, response_id TEXT NOT NULL, key TEXT,
        expires_at DOUBLE PRECISION NOT NULL, item JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS polyroute_response_inputs_id ON polyroute_response_inputs (id)",
    "CREATE INDEX IF NOT EXISTS polyroute_response_inputs_response ON polyroute_response_inputs (response_id)",
)
_SELECT = ("SELECT id, key, team, created_at, expires_at, previous_id, input::text, response::text "
           "FROM polyroute_responses WHERE id = %s AND expires_at > %s")
_UPSERT = ("INSERT INTO polyroute_responses VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb) "
           "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, team = EXCLUDED.team, "
           "created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, previous_id = EXCLUDED.previous_id, "
           "input = EXCLUDED.input, response = EXCLUDED.response")


class PostgresResponses:
    """``ResponseStore`` over the store's database; its own few connections, opened as the store's are."""

    blocking = True

    def __init__(self, url: str, password: str | None = None) -> None:
        self._db = side_tables(url, password, _make_tables)

    def put(self, stored: StoredResponse) -> None:
        with self._db.get() as conn, conn.transaction():
            conn.execute("DELETE FROM polyroute_response_items WHERE response_id = %s", (stored.id,))
            conn.execute(_UPSERT, (stored.id, stored.key, stored.team, stored.created_at, stored.expires_at,
                                   stored.previous_id, _text(stored.input), _text(stored.response)))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO polyroute_response_items VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (id) DO "
                    "UPDATE SET response_id = EXCLUDED.response_id, key = EXCLUDED.key, "
                    "expires_at = EXCLUDED.expires_at, item = EXCLUDED.item",
                    [(item["id"], stored.id, stored.key, stored.expires_at, _text(item)) for item in stored.items()])
                conn.execute("DELETE FROM polyroute_response_inputs WHERE response_id = %s", (stored.id,))
                cur.executemany(
                    "INSERT INTO polyroute_response_inputs (id, response_id, key, expires_at, item) "
                    "VALUES (%s, %s, %s, %s, %s::jsonb)",
                    [(item["id"], stored.id, stored.key, stored.expires_at, _text(item))
                     for item in inputs_with_ids(stored) if "\x00" not in item["id"]])  # TEXT holds no NUL

    def get(self, response_id: str, now: float) -> StoredResponse | None:
        with self._db.get() as conn:
            row = conn.execute(_SELECT, (response_id, now)).fetchone()
        return None if row is None else stored_of(row)

    def item(self, item_id: str, now: float) -> StoredItem | None:
        with self._db.get() as conn:
            row = conn.execute("SELECT key, response_id, item::text FROM polyroute_response_items "
                               "WHERE id = %s AND expires_at > %s", (item_id, now)).fetchone()
        return None if row is None else StoredItem(row[0], str(row[1]), orjson.loads(row[2]))

    def input_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        with self._db.get() as conn:
            row = conn.execute("SELECT item::text FROM polyroute_response_inputs WHERE id = %s "
                               "AND key IS NOT DISTINCT FROM %s AND expires_at > %s ORDER BY seq DESC LIMIT 1",
                               (item_id, key, now)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def delete(self, response_id: str) -> bool:
        with self._db.get() as conn, conn.transaction():
            conn.execute("DELETE FROM polyroute_response_items WHERE response_id = %s", (response_id,))
            conn.execute("DELETE FROM polyroute_response_inputs WHERE response_id = %s", (response_id,))
            return conn.execute("DELETE FROM polyroute_responses WHERE id = %s", (response_id,)).rowcount > 0

    def expire(self, now: float) -> None:
        with self._db.get() as conn, conn.transaction():
            conn.execute("DELETE FROM polyroute_response_items WHERE expires_at <= %s", (now,))
            conn.execute("DELETE FROM polyroute_response_inputs WHERE expires_at <= %s", (now,))
            conn.execute("DELETE FROM polyroute_responses WHERE expires_at <= %s", (now,))

    def close(self) -> None:
        self._db.close()


def _make_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        for statement in _SCHEMA:
            conn.execute(statement)


def _text(value: Any) -> str:
    # PostgreSQL's text holds no NUL character: an answer that carried one keeps U+FFFD in its place.
    text = orjson.dumps(value).decode()
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text
