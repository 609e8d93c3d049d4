"""RedisBreakerStore: an opening found by one replica is taken by the others; one probe for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from polyroute.breakers import Outcome, State, Verdict
from polyroute.config import BreakerConfig
from polyroute.redislink import RedisLink
from polyroute.sharedbreakers import RedisBreakerStore
from tests.support.fault_upstream import closed_port
from tests.support.wait import await_until

pytestmark = pytest.mark.anyio
POLICY = BreakerConfig(failures=2, probe_interval=30.0)
DOWN = Outcome(Verdict.FAILURE, reason="unavailable", detail="connection refused", why="the backend itself")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def replicas(redis_url: str, prefix: str) -> AsyncIterator[list[RedisBreakerStore]]:
    links = [RedisLink(redis_url, prefix) for _ in range(3)]
    stores = [RedisBreakerStore(POLICY, link) for link in links]
    for link in links:
        await link.start()
    yield stores
    for link in links:
        await link.aclose()


async def state(store: RedisBreakerStore, key: str) -> State:
    return (await store.get(key)).state


async def test_an_opening_reaches_every_replica(replicas: list[RedisBreakerStore]) -> None:
    one, two, three = replicas
    for _ in range(2):
        await one.record("backend:b", DOWN)
    assert await state(one, "backend:b") is State.OPEN
    views = {}

    def seen() -> bool:
        for store in (two, three):
            breaker = store.local.breaker("backend:b")
            views[id(store)] = breaker.state if breaker else State.CLOSED
        return all(v is State.OPEN for v in views.values())

    await await_until(seen, what="replicas 2 and 3 to take the opening")
    admission = await two.admit("backend:b")
    assert not admission.allowed and admission.reason == "unavailable" and admission.detail == "connection refused"
    assert 0 < admission.retry_in <= 30.0


async def test_a_replica_started_later_reads_the_openings(
    replicas: list[RedisBreakerStore], redis_url: str, prefix: str
) -> None:
    await replicas[0].record("model:m", Outcome(Verdict.FAILURE, cooldown=60.0, reason="blocked"))
    late_link = RedisLink(redis_url, prefix)
    late = RedisBreakerStore(POLICY, late_link)
    await late_link.start()
    await await_until(lambda: (b := late.local.breaker("model:m")) is not None and b.state is State.OPEN,
                      what="the late replica to read the opening")
    assert not (await late.admit("model:m")).allowed
    await late_link.aclose()


async def test_one_probe_for_the_whole_fleet_and_its_success_closes_everywhere(
    replicas: list[RedisBreakerStore],
) -> None:
    one, two, three = replicas
    # Open until now: the probe is due at once on every replica.
    await one.record("backend:p", Outcome(Verdict.FAILURE, cooldown=0.0, reason="unavailable"))
    await await_until(lambda: all((b := s.local.breaker("backend:p")) is not None and b.state is State.OPEN
                                  for s in (two, three)), what="the opening everywhere")
    got = await asyncio.gather(*(s.admit("backend:p") for s in replicas))
    probes = [s for s, a in zip(replicas, got, strict=True) if a.allowed]
    assert len(probes) == 1 and got[replicas.index(probes[0])].probe
    await probes[0].record("backend:p", Outcome(Verdict.SUCCESS))
    await await_until(lambda: all((b := s.local.breaker("backend:p")) is None or b.state is State.CLOSED
                                  for s in replicas), what="the closing everywhere")
    assert all(a.allowed for a in await asyncio.gather(*(s.admit("backend:p") for s in replicas)))


async def test_a_closed_breaker_is_admitted_without_redis() -> None:
    link = RedisLink(f"redis://127.0.0.1:{closed_port()}/0", "prtest:")  # any call would fail and mark it down
    store = RedisBreakerStore(POLICY, link)
    for _ in range(100):
        assert (await store.admit("backend:never-failed")).allowed
        await store.record("backend:never-failed", Outcome(Verdict.SUCCESS))
    assert not link.down  # not one call went to Redis
    await link.aclose()
