"""A report read in several statements sees one set of rows, though another process's writer commits meanwhile.

Three replicas sharing one SQLite file: a key's ``GET /v1/usage`` summed its rows, then read the rows at the ranks
of its percentiles, and a writer's batch landing in between made the second read disagree with the first (a 500).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from polyroute.tenancy.sqlite_file import snapshot


def test_statements_in_a_snapshot_see_the_rows_of_its_first_read(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("PRAGMA journal_mode=WAL")
    reader.execute("CREATE TABLE usage (n INTEGER)")
    reader.executemany("INSERT INTO usage VALUES (?)", [(1,), (2,)])
    writer = sqlite3.connect(path, isolation_level=None)
    with snapshot(reader):
        first = reader.execute("SELECT count(*) FROM usage").fetchone()[0]
        writer.execute("INSERT INTO usage VALUES (3)")  # another process's batch, committed now
        second = reader.execute("SELECT count(*) FROM usage").fetchone()[0]
    after = reader.execute("SELECT count(*) FROM usage").fetchone()[0]
    assert (first, second, after) == (2, 2, 3)
    reader.close()
    writer.close()
