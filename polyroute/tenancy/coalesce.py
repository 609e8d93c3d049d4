"""Many callers, one call: what is asked in the same event-loop turn, or while a call is out, goes together.

``Coalescer(send)`` takes items one at a time (``await submit(item)``) and hands them to
``send`` as a list (of at most ``most``), in the order they came, at most one ``send`` under way
at a time:

    submit ─▶ queue ──first of a turn: start the flusher (runs at the end of this turn)
                         │
                flusher: while the queue holds items: send(all of them) ──▶ each caller its answer
                         (items that come while a send is out wait for the next one)

A caller alone costs one ``send`` and no timer: the flusher starts at the next turn of the
loop. ``send`` returns one answer per item; if it raises, every caller of that batch gets the
error. A caller cancelled before its batch left is taken out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Coalescer(Generic[Item, Answer]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Answer]]], most: int = 256) -> None:
        self._send = send
        self._most = most  # items in one send at most; the rest go in the next
        self._queue: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()
        self._queue.append((item, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self._queue:
                taken, self._queue = self._queue[:self._most], self._queue[self._most:]
                batch = [(item, done) for item, done in taken if not done.done()]
                if not batch:
                    continue
                try:
                    answers = await self._send([item for item, _ in batch])
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, done), answer in zip(batch, answers, strict=True):
                    if not done.done():
                        done.set_result(answer)
        finally:
            self._flusher = None
            for _, done in self._queue:  # left only when the flusher itself was cancelled
                done.cancel()
            self._queue = []
