"""Leases against a real Redis: requests admitted in the process, and the shared counts still exact."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest

from polyroute.errors import QuotaStoreUnavailable
from polyroute.redislink import RedisLink
from polyroute.tenancy import leases as leases_module
from polyroute.tenancy.leases import IDLE, MIN_REQUESTS, SHARE, Leases, Lent
from polyroute.tenancy.rediscounters import SLOT, RedisCounters
from polyroute.tenancy.stores import Charge
from tests.distributed.conftest import PrivateRedis

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def replicas(redis_url: str, prefix: str) -> AsyncIterator[Callable[[], Leases]]:
    """Replicas of one gateway: each its own connection and its own leases, one Redis and one prefix."""
    links: list[RedisLink] = []

    def make() -> Leases:
        links.append(RedisLink(redis_url, prefix))
        return Leases(RedisCounters(links[-1]), flush_every=None)  # flushed by the test

    yield make
    for link in links:
        await link.aclose()


async def admit(leases: Leases, charge: Charge) -> Lent | bool:
    """As the quota admits: from the lease, else the exact path; False when refused."""
    now = time.time()
    lent = leases.take([charge], now)
    if lent is not None:
        return lent
    return (await leases.counters.reserve([charge], now)).refused is None


def ask_twice(leases: Leases, charges: list[Charge], at: float | None = None) -> None:
    """Two requests that find no lease (a bucket is leased from its second request, never for a one-off)."""
    for _ in range(2):
        assert leases.take(charges, time.time() if at is None else at) is None


async def value(leases: Leases, bucket: str) -> float:
    (v,) = await leases.counters.read([bucket], time.time())
    return v


async def test_a_roomy_bucket_is_leased_and_the_spend_is_counted_exactly(replicas: Callable[[], Leases]) -> None:
    leases = replicas()
    budget = Charge("key:a:usd:total", 100.0, 0.01, None)  # room for 10,000 requests
    for _ in range(2):  # nothing leased yet: the exact path
        assert leases.take([budget], time.time()) is None
        assert (await leases.counters.reserve([budget], time.time())).refused is None
    await leases.flush()
    taken = [leases.take([budget], time.time()) for _ in range(MIN_REQUESTS)]
    assert all(isinstance(t, Lent) for t in taken), "the lease covers the next requests, with no round trip"
    for t in taken:
        assert t is not None
        leases.settle(t, [0.004])  # each spent less than its worst case
    await leases.counters.settle([(budget, 0.004)] * 2, time.time(), time.time())  # the exact two
    await leases.flush(closing=True)
    assert await value(leases, budget.bucket) == pytest.approx(0.004 * (MIN_REQUESTS + 2))


async def test_a_minute_bucket_lease_gives_back_what_it_did_not_use(replicas: Callable[[], Leases]) -> None:
    leases = replicas()
    now = time.time()
    rpm = Charge(f"key:a:rpm:{int(now // 60)}", 100_000, 1, (now // 60 + 1) * 60)
    ask_twice(leases, [rpm], now)
    await leases.flush()
    granted = await value(leases, rpm.bucket)
    assert granted >= MIN_REQUESTS, "the lease is made in the bucket itself"
    lent = leases.take([rpm], time.time())
    assert lent is not None
    leases.settle(lent, [1])
    await leases.flush(closing=True)
    assert await value(leases, rpm.bucket) == 1.0


async def test_a_small_limit_is_never_leased(replicas: Callable[[], Leases]) -> None:
    """rpm = 20: a lease would make one replica refuse what another holds idle, so every request is exact."""
    leases = replicas()
    now = time.time()
    rpm = Charge(f"key:a:rpm:{int(now // 60)}", 20, 1, (now // 60 + 1) * 60)
    for _ in range(5):
        assert leases.take([rpm], time.time()) is None
        await leases.flush()
    assert await value(leases, rpm.bucket) == 0.0
    assert 20 * SHARE < MIN_REQUESTS  # why: the largest grant would be below the smallest one made


async def test_replicas_leasing_one_bucket_never_pass_its_limit_and_can_use_all_of_it(
    replicas: Callable[[], Leases],
) -> None:
    fleet = [replicas() for _ in range(3)]
    limit = 200.0  # room for 200 requests: leased at first, exact near the end
    budget = Charge("key:a:usd:total", limit, 1.0, None)
    admitted: list[Lent | bool] = []
    refused = 0
    while refused < 30:
        for leases in fleet:
            got = await admit(leases, budget)
            if got is False:
                refused += 1
            else:
                admitted.append(got)
        for leases in fleet:
            await leases.flush()
    assert any(isinstance(a, Lent) for a in admitted), "some came from leases"
    # A bucket admits while it is below its limit (stores.py): one request may take it over, no more.
    assert len(admitted) <= limit + 1, "never past the limit"
    # Given back, what the leases held is anyone's again: every unit of the budget can be used.
    for leases in fleet:
        await leases.flush(closing=True)
    while await admit(fleet[0], budget) is not False:
        admitted.append(True)
    assert limit <= len(admitted) <= limit + 1
    assert await value(fleet[0], budget.bucket) == len(admitted), "each admitted request counted once"


async def test_an_idle_lease_is_given_back(replicas: Callable[[], Leases]) -> None:
    one, other = replicas(), replicas()
    budget = Charge("key:a:usd:total", 1000.0, 1.0, None)
    ask_twice(one, [budget])
    await one.flush()
    held = await value(other, budget.bucket)
    assert held >= MIN_REQUESTS, "the other replica sees the lease as taken room"
    for lease in one._leases.values():
        lease.asked_at -= IDLE + 1  # nothing asked for longer than IDLE
    await one.flush()
    assert await value(other, budget.bucket) == 0.0
    await one.flush()
    assert not one._leases, "an idle lease holding nothing is forgotten"


async def test_a_budget_lease_moves_to_the_current_hold_slot(
    replicas: Callable[[], Leases], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold lapses ten slots after it began; a lease lives longer, so each flush keeps it in a fresh one."""
    leases = replicas()
    then = (time.time() // SLOT - 2) * SLOT + 1  # two slots ago
    monkeypatch.setattr(leases_module, "time", SimpleNamespace(time=lambda: then, monotonic=time.monotonic))
    budget = Charge("key:a:usd:total", 1000.0, 1.0, None)
    ask_twice(leases, [budget], then)
    await leases.flush()
    lent = leases.take([budget], then)
    assert lent is not None
    leases.settle(lent, [0.5])
    monkeypatch.setattr(leases_module, "time", time)
    await leases.flush()
    client, key = leases.counters.link.client, leases.counters.key(budget.bucket)
    old, new = f"{key}~h{int(then // SLOT)}", f"{key}~h{int(time.time() // SLOT)}"
    assert float(await client.get(old) or 0) == 0.0
    (lease,) = leases._leases.values()
    assert float(await client.get(new)) == pytest.approx(lease.holds)
    assert float(await client.get(key)) == 0.5, "what was spent is in the budget itself, not in a hold"
    assert await value(leases, budget.bucket) == pytest.approx(0.5 + lease.holds)


async def test_leases_admit_while_redis_is_down_and_keep_what_they_hold(private_redis: PrivateRedis) -> None:
    link = RedisLink(private_redis.url, "leases:")
    leases = Leases(RedisCounters(link), flush_every=None)
    try:
        budget = Charge("key:a:usd:total", 1000.0, 1.0, None)
        ask_twice(leases, [budget])
        await leases.flush()
        (lease,) = leases._leases.values()
        before = lease.available
        private_redis.stop()
        assert leases.take([budget], time.time()) is not None, "what is leased was reserved already"
        lease.asked_at -= IDLE + 1
        with pytest.raises(QuotaStoreUnavailable):
            await leases.flush()
        assert lease.available == before - 1.0, "a give-back that failed leaves the lease as it was"
        assert not math.isnan(lease.holds)
    finally:
        await link.aclose()


async def test_a_changed_limit_stops_the_lease_and_gives_it_back(replicas: Callable[[], Leases]) -> None:
    """An operator who lowers a budget must not see a replica go on lending what it leased under the old one."""
    leases = replicas()
    budget = Charge("key:a:usd:total", 1000.0, 1.0, None)
    ask_twice(leases, [budget])
    await leases.flush()
    assert leases.take([budget], time.time()) is not None
    lowered = Charge(budget.bucket, 1.5, 1.0, None)
    assert leases.take([lowered], time.time()) is None, "the exact path decides under the new limit"
    await leases.flush()
    assert await value(leases, budget.bucket) == 1.0, "only the request lent before the change is still held"
    assert (await leases.counters.reserve([lowered], time.time())).refused is None  # 1.0 of 1.5: admitted, as exact
    assert (await leases.counters.reserve([lowered], time.time())).refused == 0


async def test_a_bucket_that_cannot_be_leased_keeps_its_siblings_from_holding_room(
    replicas: Callable[[], Leases],
) -> None:
    """A roomy rpm beside a budget nearly spent: no request can come from leases, so the rpm holds none."""
    leases = replicas()
    now = time.time()
    rpm = Charge(f"key:a:rpm:{int(now // 60)}", 100_000, 1, (now // 60 + 1) * 60)
    budget = Charge("key:a:usd:total", 10.0, 1.0, None)  # room for 10 requests: never leased
    for _ in range(5):
        assert leases.take([rpm, budget], time.time()) is None
        assert (await leases.counters.reserve([rpm, budget], time.time())).refused is None
        await leases.flush()
    assert await value(leases, rpm.bucket) == 5.0, "only the five exact reservations: no lease held"
    assert await value(leases, budget.bucket) == 5.0


async def test_float_residue_does_not_keep_a_lease_alive(replicas: Callable[[], Leases]) -> None:
    """Amounts like 0.1 never add up exactly: what is left of them must not keep a lease (and a flush) going."""
    leases = replicas()
    budget = Charge("key:a:usd:total", 1000.0, 0.1, None)
    ask_twice(leases, [budget])
    await leases.flush()
    for _ in range(37):
        lent = leases.take([budget], time.time())
        if lent is None:
            await leases.flush()
            continue
        leases.settle(lent, [0.07])
    for lease in leases._leases.values():
        lease.asked_at -= IDLE + 1
    await leases.flush()
    await leases.flush()
    assert not leases._leases
    assert leases._ops(time.time(), closing=False) == []


async def test_a_key_asked_once_is_not_leased(replicas: Callable[[], Leases]) -> None:
    """A one-off request costs no more than the exact path: no lease made, none to give back later."""
    leases = replicas()
    budget = Charge("key:once:usd:total", 1000.0, 1.0, None)
    assert leases.take([budget], time.time()) is None
    await leases.flush()
    assert await value(leases, budget.bucket) == 0.0


async def test_a_flood_of_keys_goes_to_redis_in_bounded_calls(
    replicas: Callable[[], Leases], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "MAX_OPS", 50)
    leases = replicas()
    charges = [Charge(f"key:k{i}:usd:total", 1000.0, 1.0, None) for i in range(120)]
    for c in charges:
        ask_twice(leases, [c])
    await leases.flush()
    leased = [await value(leases, c.bucket) for c in charges]
    assert sum(v > 0 for v in leased) == 50, "one call takes at most MAX_OPS leases"
    await leases.flush()
    await leases.flush()
    assert all([await value(leases, c.bucket) > 0 for c in charges]), "the rest in the next calls"
