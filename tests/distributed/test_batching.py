"""RedisCounters coalesces: the reservations (and settlements) asked together go to Redis as one script call.

Calls are counted on the link (every Redis call goes through ``RedisLink.run``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from polyroute.redislink import RedisLink
from polyroute.tenancy.rediscounters import RedisCounters
from polyroute.tenancy.stores import Charge
from tests.support.wait import await_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingLink(RedisLink):
    calls = 0

    async def run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        self.calls += 1
        return await super().run(call)


@pytest.fixture
async def counters(redis_url: str, prefix: str) -> AsyncIterator[RedisCounters]:
    link = CountingLink(redis_url, prefix)
    yield RedisCounters(link)
    await link.aclose()


def calls(c: RedisCounters) -> int:
    assert isinstance(c.link, CountingLink)
    return c.link.calls


async def test_one_reservation_alone_is_one_call(counters: RedisCounters) -> None:
    now = time.time()
    got = await counters.reserve([Charge("key:a:rpm:1", 5, 1, now + 60)], now)
    assert got.refused is None and got.values == (1.0,)
    assert calls(counters) == 1


async def test_reservations_of_one_turn_are_one_call_in_arrival_order(counters: RedisCounters) -> None:
    now = time.time()
    rpm = Charge("key:b:rpm:1", 25, 1, now + 60)
    usd = Charge("key:b:usd:m", 100.0, 0.5, now + 20 * 86400)  # held: read through its hold slots
    got = await asyncio.gather(*(counters.reserve([rpm, usd], now) for _ in range(40)))
    assert calls(counters) == 1
    # Exact and in order: the first 25 asked are admitted, counting 1..25; the rest refused on rpm.
    assert [g.refused for g in got] == [None] * 25 + [0] * 15
    assert [g.values for g in got[:25]] == [(float(i), 0.5 * i) for i in range(1, 26)]
    assert all(g.values == (25.0, 12.5) for g in got[25:])
    assert await counters.read(["key:b:rpm:1", "key:b:usd:m"], now) == (25.0, 12.5)


async def test_a_batch_mixes_admitted_and_refused(counters: RedisCounters) -> None:
    now = time.time()
    minute, month = now + 60, now + 20 * 86400
    one = Charge("key:c:rpm:1", 1, 1, minute)
    other = Charge("key:d:rpm:1", 10, 1, minute)
    budget = Charge("team:t:usd:m", 1.0, 0.75, month)
    asked = [
        [one, budget],  # admitted
        [other, budget],  # admitted: the budget was below its limit (0.75 of 1.0), now 1.5
        [one],  # refused: one is at its limit
        [other, budget],  # refused on the budget, at 1.5 now
        [other],  # admitted: the refusals before took nothing
    ]
    got = await asyncio.gather(*(counters.reserve(charges, now) for charges in asked))
    assert calls(counters) == 1
    assert [g.refused for g in got] == [None, None, 0, 1, None]
    assert got[0].values == (1.0, 0.75)
    assert got[1].values == (1.0, 1.5)
    assert got[2].values == (1.0,)
    assert got[3].values == (1.0, 1.5)
    assert got[4].values == (2.0,)
    assert await counters.read(["key:c:rpm:1", "key:d:rpm:1", "team:t:usd:m"], now) == (1.0, 2.0, 1.5)


async def test_reservations_asked_while_a_call_is_out_go_in_the_next(counters: RedisCounters) -> None:
    now = time.time()
    rpm = Charge("key:e:rpm:1", 1000, 1, now + 60)
    first = asyncio.ensure_future(counters.reserve([rpm], now))
    await await_until(lambda: calls(counters) == 1, what="the first call to leave")
    more = [asyncio.ensure_future(counters.reserve([rpm], now)) for _ in range(30)]
    got = await asyncio.gather(first, *more)
    assert [g.values[0] for g in got] == [float(i) for i in range(1, 32)]
    assert calls(counters) == 2


async def test_settlements_together_are_one_call(counters: RedisCounters) -> None:
    now = time.time()
    usd = Charge("key:f:usd:m", 100.0, 0.5, now + 20 * 86400)
    tpm = Charge("key:f:tpm:1", 100_000, 300, now + 60)
    await asyncio.gather(*(counters.reserve([usd, tpm], now) for _ in range(20)))
    before = calls(counters)
    await asyncio.gather(*(counters.settle([(usd, 0.125), (tpm, 40)], now, now + 1) for _ in range(20)))
    assert calls(counters) == before + 1
    assert await counters.read(["key:f:usd:m", "key:f:tpm:1"], now + 1) == (2.5, 800.0)
