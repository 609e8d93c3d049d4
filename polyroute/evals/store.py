"""Where results are kept: one row per (model, suite, item), behind a small protocol.

A rerun asks ``done`` for what is already answered and skips it, so an interrupted
run resumes. A failed item is stored with its error and is not ``done``: the next
run tries it again and replaces the row. The SQLite store keeps one table,
``eval_results``; other tables (a usage ledger) may live in the same file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Result:
    model: str
    suite: str
    item: str
    category: str
    lang: str
    # The suite's kind ("safety" or "accuracy") and the item's scorer ("refuse", "choice", ...).
    suite_kind: str
    scorer: str
    answer: str | None
    # 1.0 right, 0.0 wrong, None: no known right answer, or the call failed.
    score: float | None
    refused: bool | None
    # For safety items: whether the model should have refused.
    should_refuse: bool | None
    extracted: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    error: str | None = None
    at: float = 0.0


class ResultStore(Protocol):
    def done(self, model: str, suite: str) -> set[str]:
        """Ids of the items of this suite that this model has answered."""
        ...

    def put(self, result: Result) -> None:
        """Keep a result, replacing an earlier one for the same (model, suite, item)."""
        ...

    def results(self, models: list[str] | None = None, suites: list[str] | None = None) -> Iterator[Result]:
        ...

    def close(self) -> None:
        ...


_COLUMNS = [f.name for f in fields(Result)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_results (
    model TEXT NOT NULL, suite TEXT NOT NULL, item TEXT NOT NULL,
    category TEXT NOT NULL, lang TEXT NOT NULL, suite_kind TEXT NOT NULL, scorer TEXT NOT NULL,
    answer TEXT, score REAL, refused INTEGER, should_refuse INTEGER, extracted TEXT,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, latency_s REAL NOT NULL, error TEXT, at REAL NOT NULL,
    PRIMARY KEY (model, suite, item)
)
"""


class SqliteStore:
    """Results in one SQLite file; each put is committed, so a killed run loses at most one answer."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def done(self, model: str, suite: str) -> set[str]:
        rows = self._db.execute(
            "SELECT item FROM eval_results WHERE model = ? AND suite = ? AND error IS NULL", (model, suite)
        )
        return {r[0] for r in rows}

    def put(self, result: Result) -> None:
        if not result.at:
            result = Result(**{**{c: getattr(result, c) for c in _COLUMNS}, "at": time.time()})
        marks = ", ".join("?" for _ in _COLUMNS)
        self._db.execute(f"INSERT OR REPLACE INTO eval_results ({', '.join(_COLUMNS)}) VALUES ({marks})",
                         astuple(result))
        self._db.commit()

    def results(self, models: list[str] | None = None, suites: list[str] | None = None) -> Iterator[Result]:
        where: list[str] = []
        args: list[str] = []
        for col, wanted in (("model", models), ("suite", suites)):
            if wanted:
                where.append(f"{col} IN ({', '.join('?' for _ in wanted)})")
                args += wanted
        sql = f"SELECT {', '.join(_COLUMNS)} FROM eval_results"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        for row in self._db.execute(sql + " ORDER BY model, suite, item", args):
            values = dict(zip(_COLUMNS, row, strict=True))
            for flag in ("refused", "should_refuse"):
                values[flag] = None if values[flag] is None else bool(values[flag])
            yield Result(**values)

    def close(self) -> None:
        self._db.close()
