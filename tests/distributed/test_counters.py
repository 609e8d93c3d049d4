"""RedisCounters against a real Redis: the reserve script is atomic, all or nothing, and its holds lapse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from polyroute.redislink import RedisLink
from polyroute.tenancy.rediscounters import HOLD, SLOT, SLOTS, RedisCounters
from polyroute.tenancy.stores import Charge

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def counters(redis_url: str, prefix: str) -> AsyncIterator[RedisCounters]:
    link = RedisLink(redis_url, prefix)
    yield RedisCounters(link)
    await link.aclose()


async def expire_at_ms(c: RedisCounters, key: str) -> int:
    return int(await c.link.client.pexpiretime(c.link.key("q", key)))


async def test_reserve_is_all_or_nothing(counters: RedisCounters) -> None:
    now = time.time()
    rpm, usd = Charge("key:a:rpm:1", 2, 1, now + 30), Charge("key:a:usd:total", 10.0, 0.5, None)
    assert (await counters.reserve([rpm, usd], now)).values == (1.0, 0.5)
    assert (await counters.reserve([rpm, usd], now)).values == (2.0, 1.0)
    refused = await counters.reserve([rpm, usd], now)
    assert refused.refused == 0 and refused.values == (2.0, 1.0)
    # The refusal took nothing from the other bucket.
    assert await counters.read(["key:a:rpm:1", "key:a:usd:total"], now) == (2.0, 1.0)


async def test_the_first_bucket_over_its_limit_is_named(counters: RedisCounters) -> None:
    now = time.time()
    first, second = Charge("key:b:tpm:1", 1000, 10, now + 30), Charge("team:t:tpm:1", 5, 10, now + 30)
    assert (await counters.reserve([first, second], now)).refused is None  # below before: admitted
    got = await counters.reserve([first, second], now)
    assert got.refused == 1 and got.values == (10.0, 10.0)


async def test_a_short_bucket_expires_at_its_end(counters: RedisCounters) -> None:
    now = time.time()
    end = now + 42.5
    await counters.reserve([Charge("key:c:rpm:1", 5, 1, end)], now)
    assert await expire_at_ms(counters, "key:c:rpm:1") == pytest.approx(end * 1000, abs=1)


async def test_a_budget_reservation_is_held_apart_and_lapses(counters: RedisCounters) -> None:
    now = time.time()
    month_end = now + 20 * 86400
    usd = Charge("key:d:usd:m", 1.0, 0.3, month_end)
    await counters.reserve([usd], now)
    client, slot = counters.link.client, int(now // SLOT)
    # Nothing settled yet: the bucket itself does not exist, the hold slot does and lapses on its own.
    assert await client.get(counters.link.key("q", "key:d:usd:m")) is None
    hold = counters.link.key("q", f"key:d:usd:m~h{slot}")
    assert float(await client.get(hold)) == pytest.approx(0.3)
    assert await client.pexpiretime(hold) == (slot + SLOTS) * SLOT * 1000
    assert (await counters.read(["key:d:usd:m"], now))[0] == pytest.approx(0.3)


async def test_a_crashed_replicas_hold_no_longer_counts(counters: RedisCounters) -> None:
    # A reservation made more than HOLD ago and never settled (its replica died) has lapsed.
    now = time.time()
    usd = Charge("key:e:usd:m", 1.0, 0.9, now + 20 * 86400)
    await counters.reserve([usd], now - HOLD - 2 * SLOT)
    assert await counters.read(["key:e:usd:m"], now) == (0.0,)
    assert (await counters.reserve([usd], now)).refused is None


async def test_settlement_replaces_the_hold_by_the_true_amount(counters: RedisCounters) -> None:
    now = time.time()
    usd = Charge("key:f:usd:m", 1.0, 0.5, now + 20 * 86400)
    tpm = Charge("key:f:tpm:1", 1000, 300, now + 30)
    await counters.reserve([usd, tpm], now)
    await counters.settle([(usd, 0.125), (tpm, 40)], now, now + 1)
    assert await counters.read(["key:f:usd:m", "key:f:tpm:1"], now + 1) == (0.125, 40.0)
    # The settled spend lasts to the period's end, not to the hold's lapse.
    assert await expire_at_ms(counters, "key:f:usd:m") == pytest.approx((now + 20 * 86400) * 1000, abs=1)


async def test_a_settlement_after_the_window_ended_creates_nothing(counters: RedisCounters) -> None:
    now = time.time()
    tpm = Charge("key:g:tpm:1", 1000, 300, now + 30)
    await counters.reserve([tpm], now)
    await counters.link.client.delete(counters.link.key("q", "key:g:tpm:1"))  # the minute is over
    await counters.settle([(tpm, 10)], now, now + 31)
    assert await counters.link.client.exists(counters.link.key("q", "key:g:tpm:1")) == 0


async def test_concurrent_reserves_never_exceed_the_limit(counters: RedisCounters) -> None:
    now = time.time()
    rpm = Charge("key:h:rpm:1", 50, 1, now + 60)
    usd = Charge("key:h:usd:m", 3.0, 0.25, now + 20 * 86400)
    got = await asyncio.gather(*(counters.reserve([rpm, usd], now) for _ in range(300)))
    admitted = [g for g in got if g.refused is None]
    # 0.25 a request against 3.00: 12 fit, and a bucket admits while below its limit, so 12 exactly.
    assert len(admitted) == 12
    assert sorted(g.values[1] for g in admitted) == [0.25 * i for i in range(1, 13)]
    assert await counters.read(["key:h:rpm:1", "key:h:usd:m"], now) == (12.0, 3.0)


async def test_concurrent_reserves_from_many_clients(redis_url: str, prefix: str) -> None:
    links = [RedisLink(redis_url, prefix) for _ in range(4)]
    stores = [RedisCounters(link) for link in links]
    now = time.time()
    rpm = Charge("key:i:rpm:1", 20, 1, now + 60)
    got = await asyncio.gather(*(stores[i % 4].reserve([rpm], now) for i in range(200)))
    assert sum(g.refused is None for g in got) == 20
    for link in links:
        await link.aclose()


async def test_seeding_is_set_only_when_absent(counters: RedisCounters) -> None:
    now = time.time()
    end = now + 86400
    assert await counters.seed("key:j:usd:d", 2.5, end, now) is True
    assert await counters.seed("key:j:usd:d", 2.5, end, now) is False  # a second replica counts it once
    assert await counters.read(["key:j:usd:d"], now) == (2.5,)
    assert await expire_at_ms(counters, "key:j:usd:d") == pytest.approx(end * 1000, abs=1)
