"""The Overview's figures read from the usage ledger, so they count every worker's and replica's requests.

Each worker writes its finished requests to the shared ledger in batches. The
first look reads the last day once; every later look reads only the rows that
finished since the previous look, less ``lag`` seconds, since a row lands in the
ledger a little after its request finished (``[store] flush_interval``) and rows
from several workers land out of order. Rows read twice are counted once (by
request id). A row that lands more than ``lag`` after its request finished (the
store was unreachable meanwhile) is missed here; the Usage page still has it.

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

LAG_S = 300.0
SPAN_S = SPAN_MINUTES * 60


class Rows(Protocol):
    """The part of ``LedgerStore`` read here (called in a thread: it blocks)."""

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]: ...


class LedgerTail:
    def __init__(self, ledger: Rows, lag: float = LAG_S, clock: Callable[[], float] = time.time,
                 recent: Recent | None = None) -> None:
        self.ledger = ledger
        self.lag = lag
        self.clock = clock
        self.recent = recent if recent is not None else Recent()  # each model's last answers, from the same rows
        self._minutes: dict[int, Minute] = {}
        self._counted: dict[str, float] = {}  # request id -> when it finished, for rows that may be read again
        self._read_at: float | None = None
        self._lock = asyncio.Lock()  # one read at a time, however many pages look

    async def overview(self) -> dict[str, Any]:
        now = await self.refresh()
        return {**overview(self._minutes.values(), now), "source": "ledger"}

    async def refresh(self) -> float:
        """Count the rows that landed since the last look; when this look was."""
        async with self._lock:
            now = self.clock()
            since = now - SPAN_S if self._read_at is None else max(self._read_at - self.lag, now - SPAN_S)
            rows = await asyncio.to_thread(self.ledger.rows, datetime.fromtimestamp(since, UTC))
            self._count(rows, now)
            self._read_at = now
            return now

    def _count(self, rows: list[UsageRow], now: float) -> None:
        for row in rows:
            if row.request_id in self._counted:
                continue
            at = row.at.timestamp()
            self._counted[row.request_id] = at
            start = int(at) // 60 * 60
            minute = self._minutes.get(start)
            if minute is None:
                minute = self._minutes[start] = Minute(start)
            minute.add(row)
            self.recent.add(row)
        # The next read starts at ``now - lag``: rows older than that are not read again.
        self._counted = {rid: at for rid, at in self._counted.items() if at >= now - self.lag}
        self._minutes = {s: m for s, m in self._minutes.items() if s + 60 > now - SPAN_S}
