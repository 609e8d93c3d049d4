"""The stores of one process: counters and keys in dicts (the event loop makes each method atomic)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from polyroute.tenancy.model import KeyRecord, TeamRecord
from polyroute.tenancy.stores import Charge, Reserved


class MemoryCounters:
    """``CounterStore`` in a dict: bucket -> [value, ends_at]. Spent buckets are swept now and then."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float | None]] = {}
        self._sweep_at = 0.0

    def _value(self, bucket: str, now: float) -> float:
        cell = self._buckets.get(bucket)
        if cell is None:
            return 0.0
        ends = cell[1]
        if ends is not None and now >= ends:
            del self._buckets[bucket]
            return 0.0
        return cell[0] or 0.0

    async def reserve(self, charges: Sequence[Charge], now: float) -> Reserved:
        return self.reserve_now(charges, now)

    def reserve_now(self, charges: Sequence[Charge], now: float) -> Reserved:
        values = [self._value(c.bucket, now) for c in charges]
        for i, (c, v) in enumerate(zip(charges, values, strict=True)):
            if v >= c.limit:
                return Reserved(tuple(values), refused=i)
        after = []
        for c, v in zip(charges, values, strict=True):
            self._buckets[c.bucket] = [v + c.amount, c.ends_at]
            after.append(v + c.amount)
        if now >= self._sweep_at:
            self._sweep(now)
        return Reserved(tuple(after))

    async def adjust(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        self.adjust_now(bucket, delta, ends_at, now)

    def adjust_now(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        value = self._value(bucket, now)
        if value == 0.0 and bucket not in self._buckets and ends_at is not None and now >= ends_at:
            return  # the window is over: nothing to give back to it
        self._buckets[bucket] = [max(value + delta, 0.0), ends_at]

    async def settle(self, settled: Sequence[tuple[Charge, float]], reserved_at: float, now: float) -> None:
        self.settle_now(settled, now)

    def settle_now(self, settled: Sequence[tuple[Charge, float]], now: float) -> None:
        for c, amount in settled:
            if amount != c.amount:
                self.adjust_now(c.bucket, amount - c.amount, c.ends_at, now)

    async def seed(self, bucket: str, value: float, ends_at: float | None, now: float) -> bool:
        if self._value(bucket, now) or bucket in self._buckets:
            return False
        self._buckets[bucket] = [value, ends_at]
        return True

    async def read(self, buckets: Sequence[str], now: float) -> tuple[float, ...]:
        return tuple(self._value(b, now) for b in buckets)

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + 60
        for name in [b for b, (_, ends) in self._buckets.items() if ends is not None and now >= ends]:
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
