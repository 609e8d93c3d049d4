"""What the stored responses' and conversations' fronts share: a store's calls run off the event loop when they
block, and expired rows deleted now and then rather than on every write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["SWEEP_EVERY", "Kept"]

# Expired rows are deleted at most this often (seconds); reads skip them meanwhile.
SWEEP_EVERY = 3600.0

T = TypeVar("T")


class Expiring(Protocol):
    @property
    def blocking(self) -> bool: ...

    def expire(self, now: float) -> None: ...


S = TypeVar("S", bound=Expiring)


class Kept(Generic[S]):
    """A store as the server calls it, each row living ``retention_s`` past its last write."""

    def __init__(self, store: S, retention_s: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retention_s = retention_s
        self.clock = clock
        self._swept_at = clock()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args) if self.store.blocking else fn(*args)

    async def _sweep(self, now: float) -> None:
        if now - self._swept_at >= SWEEP_EVERY:
            self._swept_at = now
            await self._call(self.store.expire, now)
