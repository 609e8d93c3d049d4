"""Conversations in the store's PostgreSQL database (``polyroute.tenancy.conversations``).

The tables of ``conversations_sqlite``, named ``polyroute_conversations`` and
``polyroute_conversation_items``, with the JSON as ``jsonb`` and ``seq`` from a
sequence. They are made at the first connection, under the advisory lock of the
store's own schema changes, as the stored responses' tables are. An append locks its
conversation's row first, so replicas appending to one conversation at once keep the
cap and the order.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from polyroute.tenancy.conversations import Appended, StoredConversation, fresh_ids
from polyroute.tenancy.postgres import _NUL, LOCK_ID, side_tables

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS polyroute_conversations (
        id TEXT PRIMARY KEY, key TEXT, team TEXT, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, metadata JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS polyroute_conversations_expires_at ON polyroute_conversations (expires_at)",
    """CREATE TABLE IF NOT EXISTS polyroute_conversation_items (
        seq BIGSERIAL PRIMARY KEY, conversation_id TEXT NOT NULL, id TEXT NOT NULL, item JSONB NOT NULL,
        UNIQUE (conversation_id, id))""",
    """CREATE INDEX IF NOT EXISTS polyroute_conversation_items_order
        ON polyroute_conversation_items (conversation_id, seq)""",
    "CREATE INDEX IF NOT EXISTS polyroute_conversation_items_id ON polyroute_conversation_items (id)",
)
_ITEMS = "polyroute_conversation_items"
# Past every seq: where a newest-first page without ``after`` starts.
_LAST = 1 << 62


class PostgresConversations:
    """``ConversationStore`` over the store's database; its own few connections, opened as the store's are."""

    blocking = True

    def __init__(self, url: str, password: str | None = None) -> None:
        self._db = side_tables(url, password, _make_tables)

    def create(self, conversation: StoredConversation, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stored = fresh_ids(items, set())
        with self._db.get() as conn, conn.transaction():
            conn.execute("INSERT INTO polyroute_conversations VALUES (%s, %s, %s, %s, %s, %s::jsonb)", (
                conversation.id, conversation.key, conversation.team, conversation.created_at,
                conversation.expires_at, _text(conversation.metadata)))
            _insert(conn, conversation.id, stored)
        return stored

    def get(self, conversation_id: str, now: float) -> StoredConversation | None:
        with self._db.get() as conn:
            row = conn.execute(
                "SELECT id, key, team, created_at, expires_at, metadata::text, "
                f"(SELECT COUNT(*) FROM {_ITEMS} WHERE conversation_id = c.id) "
                "FROM polyroute_conversations c WHERE id = %s AND expires_at > %s", (conversation_id, now)).fetchone()
        if row is None:
            return None
        return StoredConversation(str(row[0]), row[1], row[2], float(row[3]), float(row[4]), orjson.loads(row[5]),
                                  int(row[6]))

    def update(self, conversation_id: str, metadata: dict[str, str], expires_at: float) -> None:
        with self._db.get() as conn:
            conn.execute("UPDATE polyroute_conversations SET metadata = %s::jsonb, expires_at = %s WHERE id = %s",
                         (_text(metadata), expires_at, conversation_id))

    def delete(self, conversation_id: str) -> bool:
        with self._db.get() as conn, conn.transaction():
            conn.execute(f"DELETE FROM {_ITEMS} WHERE conversation_id = %s", (conversation_id,))
            return conn.execute("DELETE FROM polyroute_conversations WHERE id = %s",
                                (conversation_id,)).rowcount > 0

    def append(self, conversation_id: str, items: list[dict[str, Any]], expires_at: float,
               cap: int | None) -> Appended | None:
        with self._db.get() as conn, conn.transaction():
            # The row's lock orders appends to one conversation, whichever replica makes them.
            if conn.execute("UPDATE polyroute_conversations SET expires_at = GREATEST(expires_at, %s) WHERE id = %s",
                            (expires_at, conversation_id)).rowcount == 0:
                return None
            taken = {row[0] for row in conn.execute(f"SELECT id FROM {_ITEMS} WHERE conversation_id = %s",
                                                    (conversation_id,))}
            if cap is not None and len(taken) + len(items) > cap:
                return Appended([], len(taken))
            stored = fresh_ids(items, taken)
            _insert(conn, conversation_id, stored)
        return Appended(stored, len(taken))

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        with self._db.get() as conn:
            rows = conn.execute(f"SELECT item::text FROM {_ITEMS} WHERE conversation_id = %s ORDER BY seq",
                                (conversation_id,)).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def page(self, conversation_id: str, after: str | None, limit: int,
             newest_first: bool) -> tuple[list[dict[str, Any]], bool] | None:
        with self._db.get() as conn:
            bound = _LAST if newest_first else 0
            if after is not None:
                row = conn.execute(f"SELECT seq FROM {_ITEMS} WHERE conversation_id = %s AND id = %s",
                                   (conversation_id, after)).fetchone()
                if row is None:
                    return None
                bound = int(row[0])
            where, order = ("seq < %s", "DESC") if newest_first else ("seq > %s", "ASC")
            rows = conn.execute(f"SELECT item::text FROM {_ITEMS} WHERE conversation_id = %s AND {where} "
                                f"ORDER BY seq {order} LIMIT %s", (conversation_id, bound, limit + 1)).fetchall()
        return [orjson.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        with self._db.get() as conn:
            row = conn.execute(f"SELECT item::text FROM {_ITEMS} WHERE conversation_id = %s AND id = %s",
                               (conversation_id, item_id)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def find_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        with self._db.get() as conn:
            row = conn.execute(
                f"SELECT i.item::text FROM {_ITEMS} i JOIN polyroute_conversations c ON c.id = i.conversation_id "
                "WHERE i.id = %s AND c.key IS NOT DISTINCT FROM %s AND c.expires_at > %s ORDER BY i.seq DESC LIMIT 1",
                (item_id, key, now)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def delete_item(self, conversation_id: str, item_id: str) -> bool:
        with self._db.get() as conn:
            return conn.execute(f"DELETE FROM {_ITEMS} WHERE conversation_id = %s AND id = %s",
                                (conversation_id, item_id)).rowcount > 0

    def expire(self, now: float) -> None:
        with self._db.get() as conn, conn.transaction():
            conn.execute(f"DELETE FROM {_ITEMS} WHERE conversation_id IN "
                         "(SELECT id FROM polyroute_conversations WHERE expires_at <= %s)", (now,))
            conn.execute("DELETE FROM polyroute_conversations WHERE expires_at <= %s", (now,))

    def close(self) -> None:
        self._db.close()


def _make_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        for statement in _SCHEMA:
            conn.execute(statement)


def _insert(conn: psycopg.Connection[tuple[Any, ...]], conversation_id: str, items: list[dict[str, Any]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {_ITEMS} (conversation_id, id, item) VALUES (%s, %s, %s::jsonb)",
                        [(conversation_id, item["id"], _text(item)) for item in items])


def _text(value: Any) -> str:
    # PostgreSQL's text holds no NUL character: an item that carried one keeps U+FFFD in its place.
    text = orjson.dumps(value).decode()
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text
