"""Conversations in the store's SQLite file (``polyroute.tenancy.conversations``).

Two tables: ``conversations``, one row per conversation with its owner, end and
metadata, and ``conversation_items``, one row per item with its JSON, ordered by
``seq`` (which only grows: AUTOINCREMENT never hands out a number again), and found
by its id alone for an ``item_reference``. An append
reads the conversation's item ids, checks the cap and writes in one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from polyroute.tenancy.conversations import Appended, StoredConversation, fresh_ids
from polyroute.tenancy.sqlite_file import SqliteFile, immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, key TEXT, team TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,
    metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_expires_at ON conversations (expires_at);
CREATE TABLE IF NOT EXISTS conversation_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL, id TEXT NOT NULL, item TEXT NOT NULL,
    UNIQUE (conversation_id, id));
CREATE INDEX IF NOT EXISTS conversation_items_order ON conversation_items (conversation_id, seq);
CREATE INDEX IF NOT EXISTS conversation_items_id ON conversation_items (id);
"""

# Past every seq: where a newest-first page without ``after`` starts.
_LAST = 1 << 62


class SqliteConversations(SqliteFile):
    """``ConversationStore`` over the store's SQLite file; each thread has its own connection."""

    blocking = True

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._conn().executescript(_SCHEMA)

    def create(self, conversation: StoredConversation, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        conn = self._conn()
        stored = fresh_ids(items, set())
        with immediate(conn):
            conn.execute("INSERT INTO conversations VALUES (?,?,?,?,?,?)", (
                conversation.id, conversation.key, conversation.team, conversation.created_at,
                conversation.expires_at, orjson.dumps(conversation.metadata).decode()))
            _insert(conn, conversation.id, stored)
        return stored

    def get(self, conversation_id: str, now: float) -> StoredConversation | None:
        row = self._conn().execute(
            "SELECT id, key, team, created_at, expires_at, metadata, "
            "(SELECT COUNT(*) FROM conversation_items WHERE conversation_id = c.id) "
            "FROM conversations c WHERE id = ? AND expires_at > ?", (conversation_id, now)).fetchone()
        if row is None:
            return None
        return StoredConversation(str(row[0]), row[1], row[2], float(row[3]), float(row[4]), orjson.loads(row[5]),
                                  int(row[6]))

    def update(self, conversation_id: str, metadata: dict[str, str], expires_at: float) -> None:
        self._conn().execute("UPDATE conversations SET metadata = ?, expires_at = ? WHERE id = ?",
                             (orjson.dumps(metadata).decode(), expires_at, conversation_id))

    def delete(self, conversation_id: str) -> bool:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM conversation_items WHERE conversation_id = ?", (conversation_id,))
            return conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def append(self, conversation_id: str, items: list[dict[str, Any]], expires_at: float,
               cap: int | None) -> Appended | None:
        conn = self._conn()
        with immediate(conn):
            if conn.execute("UPDATE conversations SET expires_at = MAX(expires_at, ?) WHERE id = ?",
                            (expires_at, conversation_id)).rowcount == 0:
                return None
            taken = {row[0] for row in conn.execute(
                "SELECT id FROM conversation_items WHERE conversation_id = ?", (conversation_id,))}
            if cap is not None and len(taken) + len(items) > cap:
                return Appended([], len(taken))
            stored = fresh_ids(items, taken)
            _insert(conn, conversation_id, stored)
        return Appended(stored, len(taken))

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(row[0]) for row in self._conn().execute(
            "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY seq", (conversation_id,))]

    def page(self, conversation_id: str, after: str | None, limit: int,
             newest_first: bool) -> tuple[list[dict[str, Any]], bool] | None:
        conn = self._conn()
        bound = _LAST if newest_first else 0
        if after is not None:
            row = conn.execute("SELECT seq FROM conversation_items WHERE conversation_id = ? AND id = ?",
                               (conversation_id, after)).fetchone()
            if row is None:
                return None
            bound = int(row[0])
        where, order = ("seq < ?", "DESC") if newest_first else ("seq > ?", "ASC")
        rows = conn.execute(f"SELECT item FROM conversation_items WHERE conversation_id = ? AND {where} "
                            f"ORDER BY seq {order} LIMIT ?", (conversation_id, bound, limit + 1)).fetchall()
        return [orjson.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT item FROM conversation_items WHERE conversation_id = ? AND id = ?",
                                   (conversation_id, item_id)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def find_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        row = self._conn().execute(
            "SELECT i.item FROM conversation_items i JOIN conversations c ON c.id = i.conversation_id "
            "WHERE i.id = ? AND c.key IS ? AND c.expires_at > ? ORDER BY i.seq DESC LIMIT 1",
            (item_id, key, now)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def delete_item(self, conversation_id: str, item_id: str) -> bool:
        return self._conn().execute("DELETE FROM conversation_items WHERE conversation_id = ? AND id = ?",
                                    (conversation_id, item_id)).rowcount > 0

    def expire(self, now: float) -> None:
        conn = self._conn()
        with immediate(conn):
            conn.execute("DELETE FROM conversation_items WHERE conversation_id IN "
                         "(SELECT id FROM conversations WHERE expires_at <= ?)", (now,))
            conn.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,))


def _insert(conn: sqlite3.Connection, conversation_id: str, items: list[dict[str, Any]]) -> None:
    conn.executemany("INSERT INTO conversation_items (conversation_id, id, item) VALUES (?,?,?)",
                     [(conversation_id, item["id"], orjson.dumps(item).decode()) for item in items])
