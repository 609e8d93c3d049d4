"""The Overview's figures read from the usage ledger, so they count every worker's and replica's requests.

Each worker writes its finished requests to the shared ledger in batches. The
first look reads the last day once; every later look reads only the rows written
since the previous one (``LedgerStore.written_after``: by row number in SQLite, by
the time each landed in PostgreSQL), whenever their requests finished. So a row that
lands late (a worker's batch, a spool replayed after an outage) counts when it lands,
and a busy gateway's looks read seconds of rows, not minutes. Rows read twice are
counted once (by request id).

Rows are counted into the same minutes, windows and histograms as
``polyroute.console.recent`` draws; a minute older than a day is dropped. The Fleet
page's recent answers per model (``Recent``) are taken from the same rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from polyroute.console.recent import SPAN_MINUTES, Minute, Recent, overview
from polyroute.tenancy.stores import UsageRow

RECOUNT_S = 120.0  # how long a row's id is kept, to count it once if it is read again
COUNT_CHUNK = 2000  # rows counted between two turns of the event loop
REMEMBER_S = 600.0  # the first look keeps the ids of rows that finished this recently
SPAN_S = SPAN_MINUTES * 60


class Rows(Protocol):
    """The part of ``LedgerStore`` read here (called in a thread: it blocks)."""

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]: ...

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]: ...


class LedgerTail:
    def __init__(self, ledger: Rows, clock: Callable[[], float] = time.time, recent: Recent | None = None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.recent = recent if recent is not None else Recent()  # each model's last answers, from the same rows
        self._minutes: dict[int, Minute] = {}
        self._counted: dict[str, float] = {}  # request id -> when it was counted, for rows that may come again
        self._mark: float | None = None  # where the rows not read yet begin, as the store marks it
        self._lock = asyncio.Lock()  # one read at a time, however many pages look

    async def overview(self) -> dict[str, Any]:
        now = await self.refresh()
        return {**overview(self._minutes.values(), now), "source": "ledger"}

    async def refresh(self) -> float:
        """Count the rows that landed since the last look; when this look was."""
        async with self._lock:
            now = self.clock()
            first = self._mark is None
            if first:  # the last day, and the mark new rows are read from
                _, self._mark = await asyncio.to_thread(self.ledger.written_after, None)
                rows = await asyncio.to_thread(self.ledger.rows, datetime.fromtimestamp(now - SPAN_S, UTC))
            else:
                rows, self._mark = await asyncio.to_thread(self.ledger.written_after, self._mark)
            # Of a day's rows only the last minutes' can come again (written as the day was read).
            remember = now - REMEMBER_S if first else float("-inf")
            for at in range(0, len(rows), COUNT_CHUNK):
                if at:
                    await asyncio.sleep(0)  # a day of rows is counted in pieces, between the loop's other work
                self._count(rows[at:at + COUNT_CHUNK], now, remember)
            self._prune(now)
            return now

    def _count(self, rows: list[UsageRow], now: float, remember: float) -> None:
        """Count rows not counted yet; keep the ids of those that finished after ``remember``."""
        for row in rows:
            if row.request_id in self._counted:
                continue
            finished = row.at.timestamp()
            if finished >= remember:
                self._counted[row.request_id] = now
            start = int(finished) // 60 * 60
            if start + 60 <= now - SPAN_S:
                continue  # it landed, but its minute is older than a day
            minute = self._minutes.get(start)
            if minute is None:
                minute = self._minutes[start] = Minute(start)
            minute.add(row)
            self.recent.add(row)

    def _prune(self, now: float) -> None:
        # A row comes again only within seconds (``written_after``, and the first look's overlap).
        self._counted = {rid: at for rid, at in self._counted.items() if at >= now - RECOUNT_S}
        self._minutes = {s: m for s, m in self._minutes.items() if s + 60 > now - SPAN_S}
