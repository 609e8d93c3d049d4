"""Where results are kept: one row per (model, suite, item), behind a small protocol.

A rerun asks ``done`` for what is already answered and skips it, so an interrupted
run resumes. A failed item is stored with its error and is not ``done``: the next
run tries it again and replaces the row. A judge's verdict on an answer is a
``Judgement``, kept apart from the result, one per (model, suite, item, judge,
prompt version), so the rules' verdict and the judge's can be compared; when an item
comes to ask another task of the judge (a must-refuse item become specialised advice),
the new verdict replaces the old; an answer asked again (cut short before, see
``rescoring.is_short``) drops the verdicts on the answer it replaces. Each suite run
also leaves its ``SuiteInfo`` (language, kind, the suite it translates).

The SQLite store keeps three tables, ``eval_results``, ``eval_judgements`` and
``eval_suites``; by default it is the file of the usage ledger. A file made by an
older polyroute gains the columns added since (``eval_results.max_tokens``,
``eval_judgements.verdict``), empty.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any, Protocol


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
    # The answer length asked (max_tokens); None for a result stored before lengths were kept.
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judge model's verdict on one stored answer.

    ``task`` is "rubric" (``score`` 1 to 10), "refusal" (``refused``) or "advice"
    (``verdict``: "refused", "caveated" or "unqualified"; ``refused`` with it). ``reply`` is
    the judge's own words, kept short; ``error`` says why there is no verdict (the
    call failed, or the reply could not be read).
    """

    model: str
    suite: str
    item: str
    judge: str
    prompt_version: str
    task: str
    score: int | None
    refused: bool | None
    reply: str | None
    cost_usd: float
    latency_s: float
    error: str | None = None
    at: float = 0.0
    verdict: str | None = None


@dataclass(frozen=True, slots=True)
class SuiteInfo:
    name: str
    lang: str
    kind: str
    pair: str | None
    items: int
    source: str | None = None
    licence: str | None = None


class ResultStore(Protocol):
    def done(self, model: str, suite: str) -> set[str]:
        """Ids of the items of this suite that this model has answered."""
        ...

    def put(self, result: Result) -> None:
        """Keep a result, replacing an earlier one for the same (model, suite, item)."""
        ...

    def results(self, models: list[str] | None = None, suites: list[str] | None = None) -> Iterator[Result]:
        ...

    def put_judgement(self, judgement: Judgement) -> None:
        """Keep a verdict, replacing an earlier one of the same judge and prompt version."""
        ...

    def judged(self, model: str, suite: str, judge: str, prompt_version: str, task: str | None = None) -> set[str]:
        """Ids of the items whose answer this judge (at this prompt version) has a verdict on, for ``task`` if given."""
        ...

    def judgements(self, models: list[str] | None = None,
                   suites: list[str] | None = None) -> Iterator[Judgement]:
        ...

    def forget_judgements(self, model: str, suite: str, item: str) -> None:
        """Drop every verdict on this answer, of any judge: for an answer that is replaced by a new one."""
        ...

    def put_suite(self, info: SuiteInfo) -> None:
        ...

    def suites(self) -> dict[str, SuiteInfo]:
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
    cost_usd REAL NOT NULL, latency_s REAL NOT NULL, error TEXT, at REAL NOT NULL, max_tokens INTEGER,
    PRIMARY KEY (model, suite, item)
);
CREATE TABLE IF NOT EXISTS eval_judgements (
    model TEXT NOT NULL, suite TEXT NOT NULL, item TEXT NOT NULL, judge TEXT NOT NULL,
    prompt_version TEXT NOT NULL, task TEXT NOT NULL, score INTEGER, refused INTEGER, reply TEXT,
    cost_usd REAL NOT NULL, latency_s REAL NOT NULL, error TEXT, at REAL NOT NULL, verdict TEXT,
    PRIMARY KEY (model, suite, item, judge, prompt_version)
);
CREATE TABLE IF NOT EXISTS eval_suites (
    name TEXT PRIMARY KEY, lang TEXT NOT NULL, kind TEXT NOT NULL, pair TEXT, items INTEGER NOT NULL,
    source TEXT, licence TEXT
);
"""
_JUDGEMENT_COLUMNS = [f.name for f in fields(Judgement)]
_SUITE_COLUMNS = [f.name for f in fields(SuiteInfo)]


class SqliteStore:
    """Results in one SQLite file; each put is committed, so a killed run loses at most one answer."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._add_columns("eval_results", {"max_tokens": "INTEGER"})
        self._add_columns("eval_judgements", {"verdict": "TEXT"})
        self._db.commit()

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Columns added since a file was made (an older polyroute's file lacks them): added, empty."""
        have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        for name, sql_type in columns.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def done(self, model: str, suite: str) -> set[str]:
        rows = self._db.execute(
            "SELECT item FROM eval_results WHERE model = ? AND suite = ? AND error IS NULL", (model, suite)
        )
        return {r[0] for r in rows}

    def put(self, result: Result) -> None:
        if not result.at:
            result = Result(**{**{c: getattr(result, c) for c in _COLUMNS}, "at": time.time()})
        self._insert("eval_results", _COLUMNS, astuple(result))

    def results(self, models: list[str] | None = None, suites: list[str] | None = None) -> Iterator[Result]:
        for values in self._select("eval_results", _COLUMNS, models, suites, ("refused", "should_refuse")):
            yield Result(**values)

    def put_judgement(self, judgement: Judgement) -> None:
        if not judgement.at:
            judgement = Judgement(**{**{c: getattr(judgement, c) for c in _JUDGEMENT_COLUMNS}, "at": time.time()})
        self._insert("eval_judgements", _JUDGEMENT_COLUMNS, astuple(judgement))

    def judged(self, model: str, suite: str, judge: str, prompt_version: str, task: str | None = None) -> set[str]:
        sql = ("SELECT item FROM eval_judgements WHERE model = ? AND suite = ? AND judge = ? AND prompt_version = ? "
               "AND error IS NULL")
        args = [model, suite, judge, prompt_version]
        if task is not None:
            sql += " AND task = ?"
            args.append(task)
        return {r[0] for r in self._db.execute(sql, args)}

    def judgements(self, models: list[str] | None = None,
                   suites: list[str] | None = None) -> Iterator[Judgement]:
        for values in self._select("eval_judgements", _JUDGEMENT_COLUMNS, models, suites, ("refused",)):
            yield Judgement(**values)

    def forget_judgements(self, model: str, suite: str, item: str) -> None:
        self._db.execute("DELETE FROM eval_judgements WHERE model = ? AND suite = ? AND item = ?", (model, suite, item))
        self._db.commit()

    def put_suite(self, info: SuiteInfo) -> None:
        self._insert("eval_suites", _SUITE_COLUMNS, astuple(info))

    def suites(self) -> dict[str, SuiteInfo]:
        rows = self._db.execute(f"SELECT {', '.join(_SUITE_COLUMNS)} FROM eval_suites ORDER BY name")
        return {r[0]: SuiteInfo(*r) for r in rows}

    def _insert(self, table: str, columns: list[str], values: tuple[object, ...]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._db.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
        self._db.commit()

    def _select(self, table: str, columns: list[str], models: list[str] | None, suites: list[str] | None,
                flags: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        where: list[str] = []
        args: list[str] = []
        for col, wanted in (("model", models), ("suite", suites)):
            if wanted:
                where.append(f"{col} IN ({', '.join('?' for _ in wanted)})")
                args += wanted
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        for row in self._db.execute(sql + " ORDER BY model, suite, item", args):
            values = dict(zip(columns, row, strict=True))
            for flag in flags:
                values[flag] = None if values[flag] is None else bool(values[flag])
            yield values

    def close(self) -> None:
        self._db.close()
