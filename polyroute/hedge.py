"""Run attempts until one succeeds: one after another, or overlapping when hedging.

``race`` drives an ``Attempts`` object, which knows how to admit the next
candidate, run one attempt (a whole answer, or a stream up to its first token)
and account its end. Without ``hedge_after`` the attempts run one after another
in the caller's task: the common path costs no task and no timer. With it, an
attempt that has not succeeded after ``hedge_after`` seconds gets a second one
started beside it; the first to succeed wins and the other is cancelled, and an
attempt that fails is replaced at once, as plain failover would. At most two run
at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Generic, Protocol, TypeVar

from polyroute.errors import UpstreamError

S = TypeVar("S")
T = TypeVar("T")

# What a failed attempt may raise; anything else is a bug and propagates.
FAILURES = (UpstreamError, TimeoutError)

_HEDGE_WIDTH = 2


class Attempts(Protocol[S, T]):
    async def next(self) -> S | None:
        """Admit the next candidate, or None when none is left (or time is up)."""

    async def run(self, slot: S) -> T:
        """One attempt; raises one of ``FAILURES`` when it fails."""

    async def failed(self, slot: S, exc: BaseException) -> bool:
        """Account a failed attempt; whether another candidate may be tried."""

    async def abandoned(self, slot: S, result: T | None) -> None:
        """An attempt was cancelled (it lost the race, or the client left); release ``result`` if any."""


async def race(attempts: Attempts[S, T], hedge_after: float | None) -> tuple[S, T] | None:
    """The first attempt to succeed, or None when every admitted one failed."""
    if hedge_after is None:
        return await _one_by_one(attempts)
    return await _Hedge(attempts, hedge_after).run()


async def _one_by_one(attempts: Attempts[S, T]) -> tuple[S, T] | None:
    while (slot := await attempts.next()) is not None:
        try:
            return slot, await attempts.run(slot)
        except FAILURES as exc:
            if not await attempts.failed(slot, exc):
                return None
        except BaseException:
            await attempts.abandoned(slot, None)
            raise
    return None


class _Hedge(Generic[S, T]):
    def __init__(self, attempts: Attempts[S, T], hedge_after: float) -> None:
        self.attempts = attempts
        self.hedge_after = hedge_after
        self.running: dict[asyncio.Task[T], S] = {}
        self.exhausted = False
        self.last_start = 0.0

    async def _start(self) -> bool:
        slot = None if self.exhausted else await self.attempts.next()
        if slot is None:
            self.exhausted = True
            return False
        self.running[asyncio.ensure_future(self.attempts.run(slot))] = slot
        self.last_start = time.monotonic()
        return True

    async def run(self) -> tuple[S, T] | None:
        try:
            if not await self._start():
                return None
            while self.running:
                done, _ = await asyncio.wait(self.running, timeout=self._wait(), return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    await self._start()  # no success in time: hedge
                    continue
                for task in done:
                    slot = self.running.pop(task)
                    if task.cancelled():  # only _cancel_rest cancels: somebody else wants us gone
                        raise asyncio.CancelledError
                    exc = task.exception()
                    if exc is None:
                        return slot, task.result()
                    if not isinstance(exc, FAILURES):
                        raise exc
                    if not await self.attempts.failed(slot, exc):
                        return None
                if not self.running:
                    await self._start()  # plain failover: the next candidate, at once
            return None
        finally:
            await self._cancel_rest()

    def _wait(self) -> float | None:
        if self.exhausted or len(self.running) >= _HEDGE_WIDTH:
            return None
        return max(0.0, self.last_start + self.hedge_after - time.monotonic())

    async def _cancel_rest(self) -> None:
        """Cancel the attempts still running and wait until they have let go of their upstreams."""
        if not self.running:
            return
        for task in self.running:
            task.cancel()
        await asyncio.wait(self.running)
        for task, slot in self.running.items():
            if task.cancelled():
                await self.attempts.abandoned(slot, None)
            elif (exc := task.exception()) is not None:
                if isinstance(exc, FAILURES):
                    await self.attempts.failed(slot, exc)
            else:
                await self.attempts.abandoned(slot, task.result())
        self.running.clear()
