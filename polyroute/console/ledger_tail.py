"""The Overview's figures read from the usage ledger, so they count every worker's and replica's requests.

Each worker writes its finished requests to the shared ledger in batches. The first
look asks the store for the last day summed per minute (``LedgerStore.traffic``: one
pass in the database, a few rows back per minute, whatever the traffic). Every look,
the first included, then reads the rows written since (``LedgerStore.written_after``:
by row number in SQLite, by the time each landed in PostgreSQL), whenever their
requests finished. So a row that lands late (a worker's batch, a spool replayed after
an outage) counts when it lands, and a busy gateway's looks read seconds of rows, not
minutes. Rows read twice are counted once (by request id).

Rows are counted into the same minutes, windows and histograms as
``polyroute.console.recent`` draws; a minute older than a day is dropped. The Fleet
page's recent answers per model (``Recent``) are taken from the rows read one by one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from polyroute.console.recent import SPAN_MINUTES, Minute, Recent, minutes_of, overview
from polyroute.tenancy.rollup import RATIO
from polyroute.tenancy.stores import Traffic, UsageRow

RECOUNT_S = 120.0  # how long a row's id is kept, to count it once if it is read again
COUNT_CHUNK = 2000  # rows counted between two turns of the event loop
LATEST_ROWS = 5000  # the first look's last rows, for Fleet's recent answers per model
SPAN_S = SPAN_MINUTES * 60


class Rows(Protocol):
    """The part of ``LedgerStore`` read here (called in a thread: it blocks)."""

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]: ...

    def traffic(self, since: datetime, mark: float, ratio: float) -> Traffic: ...

    def latest(self, count: int, mark: float) -> list[UsageRow]: ...


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
            if self._mark is None:  # the first look: the last day, summed by the store itself
                _, mark = await asyncio.to_thread(self.ledger.written_after, None)
                day = datetime.fromtimestamp(now - SPAN_S, UTC)
                self._minutes = minutes_of(await asyncio.to_thread(self.ledger.traffic, day, mark, RATIO))
                for row in await asyncio.to_thread(self.ledger.latest, LATEST_ROWS, mark):
                    self.recent.add(row)  # Fleet's recent answers, from before this look too
                self._mark = mark  # the rows after what it summed are read one by one from here
            rows, self._mark = await asyncio.to_thread(self.ledger.written_after, self._mark)
            for at in range(0, len(rows), COUNT_CHUNK):
                if at:
                    await asyncio.sleep(0)  # many rows are counted in pieces, between the loop's other work
                self._count(rows[at:at + COUNT_CHUNK], now)
            self._prune(now)
            return now

    def _count(self, rows: list[UsageRow], now: float) -> None:
        for row in rows:
            if row.request_id in self._counted:
                continue
            self._counted[row.request_id] = now
            start = int(row.at.timestamp()) // 60 * 60
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
