"""Where quality routes' decisions and their feedback are kept: two tables of the store's SQLite file.

``route_decisions`` holds one row per request a "quality" route decided: who asked
(the key's name), the prompt's SHA-256 (never its text), its features as the router
read them (float32, with the name of their layout), every candidate's prediction,
the model chosen first and the one that answered. ``route_feedback`` holds the score
an application gave a request (``POST /v1/feedback``), the latest one kept. They are
joined only when a router is retrained, so feedback may arrive before its decision
is written. Decisions nobody gave feedback on are deleted after ``RETAIN_S``.

Each thread gets its own connection (WAL: readers never wait for the writer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyroute.quality.features import F32
from polyroute.tenancy.sqlite_file import SqliteFile, immediate

# Decisions without feedback are kept this long (seconds) for feedback to arrive.
RETAIN_S = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS route_decisions (
    request_id TEXT PRIMARY KEY, response_id TEXT, at REAL NOT NULL, key TEXT, route TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL, feature_set TEXT NOT NULL, features BLOB NOT NULL, predictions TEXT NOT NULL,
    target REAL NOT NULL, chosen TEXT, answered TEXT, answered_column TEXT, status INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS route_decisions_response ON route_decisions (response_id);
CREATE INDEX IF NOT EXISTS route_decisions_at ON route_decisions (at);
CREATE TABLE IF NOT EXISTS route_feedback (request_id TEXT PRIMARY KEY, score REAL NOT NULL, at REAL NOT NULL);
"""
_COLUMNS = ("request_id, response_id, at, key, route, prompt_sha256, feature_set, features, predictions, target, "
            "chosen, answered, answered_column, status")


@dataclass(frozen=True, slots=True)
class DecisionRow:
    request_id: str
    response_id: str | None
    at: float
    key: str | None
    route: str
    prompt_sha256: str
    feature_set: str
    features: bytes  # float32, little-endian
    predictions: str  # JSON: [{"model", "column", "p"}] in the order tried
    target: float
    chosen: str | None
    answered: str | None
    answered_column: str | None
    status: int


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose request a feedback id names."""

    request_id: str
    key: str | None


@dataclass(frozen=True, slots=True)
class Labelled:
    """Feedback joined to its decision: what a retrain learns from."""

    features: F32
    column: str
    score: float


class DecisionStore(SqliteFile):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._conn().executescript(_SCHEMA)

    def write(self, rows: Sequence[DecisionRow]) -> None:
        conn = self._conn()
        marks = ",".join("?" * 14)
        with immediate(conn):
            conn.executemany(f"INSERT OR REPLACE INTO route_decisions ({_COLUMNS}) VALUES ({marks})",
                             [_tuple(r) for r in rows])

    def owner(self, some_id: str) -> Owner | None:
        """The request a gateway request id or a response id names (the latest, if several share it)."""
        row = self._conn().execute(
            "SELECT request_id, key FROM route_decisions WHERE request_id = ? OR response_id = ? "
            "ORDER BY at DESC LIMIT 1", (some_id, some_id)).fetchone()
        return None if row is None else Owner(str(row[0]), None if row[1] is None else str(row[1]))

    def put_feedback(self, request_id: str, score: float, at: float | None = None) -> None:
        self._conn().execute("INSERT OR REPLACE INTO route_feedback VALUES (?, ?, ?)",
                             (request_id, score, time.time() if at is None else at))

    def feedback(self, request_id: str) -> float | None:
        row = self._conn().execute("SELECT score FROM route_feedback WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else float(row[0])

    def labelled(self, feature_set: str, routes: Sequence[str] = ()) -> tuple[list[Labelled], int]:
        """Feedback with its decision, for rows of this feature layout; and how many had another layout."""
        sql = ("SELECT d.feature_set, d.features, d.answered_column, f.score FROM route_feedback f "
               "JOIN route_decisions d ON d.request_id = f.request_id WHERE d.answered_column IS NOT NULL")
        args: list[str] = []
        if routes:
            sql += f" AND d.route IN ({','.join('?' * len(routes))})"
            args += routes
        out: list[Labelled] = []
        other = 0
        for layout, blob, column, score in self._conn().execute(sql + " ORDER BY d.at", args):
            if layout != feature_set:
                other += 1
                continue
            out.append(Labelled(np.frombuffer(blob, dtype="<f4").copy(), str(column), float(score)))
        return out, other

    def prune(self, now: float | None = None) -> int:
        """Delete decisions older than ``RETAIN_S`` that nobody gave feedback on; how many went."""
        cutoff = (time.time() if now is None else now) - RETAIN_S
        cur = self._conn().execute(
            "DELETE FROM route_decisions WHERE at < ? AND request_id NOT IN (SELECT request_id FROM route_feedback)",
            (cutoff,))
        return cur.rowcount


def _tuple(r: DecisionRow) -> tuple[object, ...]:
    return (r.request_id, r.response_id, r.at, r.key, r.route, r.prompt_sha256, r.feature_set, r.features,
            r.predictions, r.target, r.chosen, r.answered, r.answered_column, r.status)
