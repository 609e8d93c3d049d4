"""Deadlines on the hot path: a stall deadline for every chunk of a stream, for the
price of one timer per stream, and ``Deadline``, a cheaper ``asyncio.timeout``.

``asyncio.timeout`` around each ``anext`` schedules and cancels a timer per chunk
(as much as the rest of the gateway's work on a chunk). ``StallTimer``
keeps one timer per stream: each wait notes only when it began, and the timer,
when it fires, either finds the current wait older than the limit and cancels it,
or re-arms itself for when that would be. Time the consumer spends between waits
(a slow client) is never counted as a stall.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


class StallTimer:
    """What counts is the time spent waiting since the last token (``progress``): chunks that carry none
    (keep-alive chunks of empty deltas) do not hold a stalled stream open."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._since: float | None = None  # when the current wait began; None between waits
        self._idle = 0.0  # seconds waited since the last token, before the current wait
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def progress(self) -> None:
        """The chunk just read carried a token: the stall clock starts again."""
        self._idle = 0.0

    async def next(self, it: AsyncIterator[T]) -> T | None:
        """``anext(it)``, or None at its end; ``TimeoutError`` once the waits since the last token pass the limit."""
        self._since = now = self._loop.time()
        if self._task is None:  # one task reads a stream from start to end
            self._task = asyncio.current_task(self._loop)
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.limit - self._idle, self._check)
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError:
            if self._fired and self._task is not None:
                self._fired = False
                if self._task.uncancel() == 0:  # ours was the only cancellation
                    raise TimeoutError from None
            raise
        finally:
            self._idle += self._loop.time() - now
            self._since = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        since = self._since
        if since is not None and self._idle + now - since >= self.limit and self._task is not None:
            self._handle = None
            self._fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_at((now if since is None else since) + self.limit - self._idle, self._check)


class Deadline:
    """``async with asyncio.timeout(delay)``, for the attempt on every request's path.

    The same semantics (``TimeoutError`` when the delay passes, an outside
    cancellation stays one) for one loop lookup instead of three: each
    ``asyncio.get_running_loop()`` is a ``getpid()`` system call.
    """

    __slots__ = ("_cancelling", "_delay", "_fired", "_handle", "_task")

    def __init__(self, delay: float | None) -> None:
        self._delay = delay
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False
        self._cancelling = 0

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline is used outside a task")
        self._task, self._cancelling = task, task.cancelling()
        if self._delay is not None:
            self._handle = loop.call_later(self._delay, self._fire)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fired and self._task is not None:
            self._fired = False
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        if self._task is not None:
            self._fired = True
            self._task.cancel()
