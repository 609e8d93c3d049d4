"""Coalescer: what is asked in one turn, or while a send is out, goes in one send, in order."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.errors import QuotaStoreUnavailable
from polyroute.tenancy.coalesce import Coalescer
from tests.support.wait import await_until


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise QuotaStoreUnavailable("down")
        return [i * 10 for i in items]


def test_one_turn_is_one_send_and_each_caller_gets_its_answer() -> None:
    async def run() -> list[int]:
        r = Recorder()
        c = Coalescer(r.send)
        got = await asyncio.gather(*(c.submit(i) for i in range(5)))
        assert r.batches == [[0, 1, 2, 3, 4]]
        return got

    assert asyncio.run(run()) == [0, 10, 20, 30, 40]


def test_items_asked_while_a_send_is_out_wait_for_the_next() -> None:
    async def run() -> None:
        r = Recorder()
        r.gate = asyncio.Event()
        c = Coalescer(r.send)
        first = asyncio.ensure_future(c.submit(1))
        await await_until(lambda: r.batches, what="the first send")
        later = [asyncio.ensure_future(c.submit(i)) for i in (2, 3)]
        await asyncio.sleep(0)
        assert r.batches == [[1]]
        r.gate.set()
        assert await asyncio.gather(first, *later) == [10, 20, 30]
        assert r.batches == [[1], [2, 3]]

    asyncio.run(run())


def test_a_failed_send_fails_its_whole_batch_and_the_next_goes_on() -> None:
    async def run() -> None:
        r = Recorder()
        r.fail = True
        c = Coalescer(r.send)
        got = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
        assert all(isinstance(g, QuotaStoreUnavailable) for g in got)
        r.fail = False
        assert await c.submit(3) == 30

    asyncio.run(run())


def test_a_caller_cancelled_before_its_batch_left_is_not_sent() -> None:
    async def run() -> None:
        r = Recorder()
        c = Coalescer(r.send)
        gone = asyncio.ensure_future(c.submit(1))
        kept = asyncio.ensure_future(c.submit(2))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        assert await kept == 20
        assert r.batches == [[2]]
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(run())


def test_a_send_takes_at_most_its_limit_and_the_rest_go_next_in_order() -> None:
    async def run() -> list[int]:
        r = Recorder()
        c = Coalescer(r.send, most=2)
        got = await asyncio.gather(*(c.submit(i) for i in range(5)))
        assert r.batches == [[0, 1], [2, 3], [4]]
        return got

    assert asyncio.run(run()) == [0, 10, 20, 30, 40]
