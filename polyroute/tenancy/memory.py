"""The stores of one process: counters and keys in dicts (the event loop makes each method atomic)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from polyroute.tenancy.model import KeyRecord, TeamRecord
from polyroute.tenancy.stores import Charge, Reserved


class CounterCell:
    """A bucket's value and when its window ends (None: never); changed in place."""

    __slots__ = ("ends_at", "value")

    def __init__(self, value: float, ends_at: float | None) -> None:
        self.value = value
        self.ends_at = ends_at


class MemoryCounters:
    """``CounterStore`` in a dict: bucket -> its cell. Spent buckets are swept now and then."""

    def __init__(self) -> None:
        self._buckets: dict[str, CounterCell] = {}
        self._sweep_at = 0.0

    def _cell(self, bucket: str, now: float) -> CounterCell | None:
        """The bucket's cell, None when it holds nothing (or its window is over)."""
        cell = self._buckets.get(bucket)
        if cell is not None and cell.ends_at is not None and now >= cell.ends_at:
            del self._buckets[bucket]
            return None
        return cell

    def _value(self, bucket: str, now: float) -> float:
        cell = self._cell(bucket, now)
        return 0.0 if cell is None else cell.value

    async def reserve(self, charges: Sequence[Charge], now: float) -> Reserved:
        return self.reserve_now(charges, now)

    def reserve_now(self, charges: Sequence[Charge], now: float) -> Reserved:
        return self.take([(i, c.bucket, c.limit, c.ends_at) for i, c in enumerate(charges)],
                         [c.amount for c in charges], now)[0]

    def take(
        self, charges: Sequence[tuple[int, str, float, float | None]], amounts: Sequence[float], now: float
    ) -> tuple[Reserved, list[CounterCell]]:
        """``reserve`` at once, for charges (what, bucket, limit, ends_at) of ``amounts[what]`` each.

        Also returns the cells charged, for ``settle_cells``.
        """
        cells = self._cells(charges, now)
        return self._charge(cells, charges, amounts), cells

    def _cells(self, charges: Sequence[tuple[int, str, float, float | None]], now: float) -> list[CounterCell]:
        """The cell of each charge's bucket, an empty one made where there is none (it stays the
        bucket's until its window ends)."""
        out = []
        for _, bucket, _, ends_at in charges:
            cell = self._cell(bucket, now)
            if cell is None:
                cell = self._buckets[bucket] = CounterCell(0.0, ends_at)
            out.append(cell)
        if now >= self._sweep_at:
            self._sweep(now)
        return out

    @staticmethod
    def _charge(cells: Sequence[CounterCell], charges: Sequence[tuple[int, str, float, float | None]],
               amounts: Sequence[float]) -> Reserved:
        """All or nothing: add each charge's amount to its cell when every cell is below its limit."""
        for i, (cell, charge) in enumerate(zip(cells, charges, strict=True)):
            if cell.value >= charge[2]:
                return Reserved(tuple([c.value for c in cells]), i)
        values = []
        for cell, charge in zip(cells, charges, strict=True):
            cell.value += amounts[charge[0]]
            values.append(cell.value)
        return Reserved(tuple(values))

    @staticmethod
    def settle_cells(cells: Sequence[CounterCell], charges: Sequence[tuple[int, str, float, float | None]],
                     reserved: Sequence[float], true: Sequence[float]) -> None:
        """``settle`` what ``take`` charged: a cell whose window has ended since is no longer counted."""
        for cell, charge in zip(cells, charges, strict=True):
            what = charge[0]
            if (delta := true[what] - reserved[what]) != 0.0:
                cell.value = max(cell.value + delta, 0.0)

    async def adjust(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        self.adjust_now(bucket, delta, ends_at, now)

    def adjust_now(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        cell = self._cell(bucket, now)
        if cell is not None:
            cell.value = max(cell.value + delta, 0.0)
            cell.ends_at = ends_at
        elif ends_at is None or now < ends_at:  # a window that is over has nothing to give back to
            self._buckets[bucket] = CounterCell(max(delta, 0.0), ends_at)

    async def settle(self, settled: Sequence[tuple[Charge, float]], reserved_at: float, now: float) -> None:
        self.settle_now(settled, now)

    def settle_now(self, settled: Sequence[tuple[Charge, float]], now: float) -> None:
        for c, amount in settled:
            if amount != c.amount:
                self.adjust_now(c.bucket, amount - c.amount, c.ends_at, now)

    async def seed(self, bucket: str, value: float, ends_at: float | None, now: float) -> bool:
        if self._cell(bucket, now) is not None:
            return False
        self._buckets[bucket] = CounterCell(value, ends_at)
        return True

    async def read(self, buckets: Sequence[str], now: float) -> tuple[float, ...]:
        return tuple(self._value(b, now) for b in buckets)

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + 60
        for name in [b for b, cell in self._buckets.items() if cell.ends_at is not None and now >= cell.ends_at]:
            del self._buckets[name]


class MemoryKeyStore:
    """``KeyStore`` in dicts, for tests and a gateway with no store file."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyRecord] = {}
        self._teams: dict[str, TeamRecord] = {}
        self._version = 0
        self._logouts: dict[str, float] = {}  # console session id -> until

    async def version(self) -> int:
        return self._version

    async def add_key(self, record: KeyRecord) -> None:
        if record.name in self._keys:
            raise KeyError(record.name)
        self._keys[record.name] = record
        self._version += 1

    async def put_key(self, record: KeyRecord) -> None:
        self._keys[record.name] = record
        self._version += 1

    async def key(self, name: str) -> KeyRecord | None:
        return self._keys.get(name)

    async def keys(self) -> list[KeyRecord]:
        return sorted(self._keys.values(), key=lambda k: k.name)

    async def delete_key(self, name: str) -> bool:
        self._version += 1
        return self._keys.pop(name, None) is not None

    async def put_team(self, record: TeamRecord) -> None:
        self._teams[record.name] = record
        self._version += 1

    async def team(self, name: str) -> TeamRecord | None:
        return self._teams.get(name)

    async def teams(self) -> list[TeamRecord]:
        return sorted(self._teams.values(), key=lambda t: t.name)

    async def delete_team(self, name: str) -> bool:
        self._version += 1
        return self._teams.pop(name, None) is not None

    async def revoke_session(self, session_id: str, until: float) -> None:
        now = time.time()
        self._logouts = {sid: end for sid, end in self._logouts.items() if end >= now}
        self._logouts[session_id] = until

    async def session_revoked(self, session_id: str) -> bool:
        return session_id in self._logouts
