"""Three `polyroute serve` replicas sharing one Redis and one store: limits hold across them.

Each test sends its requests round-robin to the three, as a load balancer would.
The store is a fixture (``store_url``: a shared SQLite file today; a PostgreSQL URL
fits the same place).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from polyroute.tenancy.sqlite import SqliteStore, path_of
from polyroute.tenancy.stores import LedgerStore
from tests.distributed.conftest import SHARED, reachable
from tests.distributed.replicas import ADMIN, ENV, Replica, replicas
from tests.support.fault_upstream import FaultUpstream
from tests.support.wait import wait_until

BODY = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The key store and ledger the replicas share: one SQLite file, or one PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'shared.db'}"
        return
    from tests.support.postgres import database, shared_or_skip

    shared_or_skip()
    with database() as url:
        yield url


def open_ledger(url: str) -> LedgerStore:
    """The ledger at ``url``, read through the ``LedgerStore`` protocol whatever the database."""
    if url.startswith("postgresql://"):
        from polyroute.tenancy.postgres import PostgresStore

        return PostgresStore(url)
    return SqliteStore(path_of(url))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, fleet_store: str) -> Iterator[tuple[list[Replica], FaultUpstream]]:
    if not reachable(SHARED):
        pytest.skip(f"no Redis at {SHARED} (set POLYROUTE_TEST_REDIS, or start redis-server)")
    prefix = f"prtest-{os.urandom(6).hex()}:"
    with FaultUpstream() as up, replicas(tmp_path_factory.mktemp("replicas"), 3, store_url=fleet_store,
                                         redis_url=SHARED, prefix=prefix, upstream=up.url + "/v1") as reps:
        yield reps, up
    client = redis.Redis.from_url(SHARED)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def admin(r: Replica, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{r.url}/admin/{path}", json=body, headers=auth(ADMIN), timeout=10)


def known(r: Replica, secret: str) -> bool:
    return httpx.get(f"{r.url}/v1/models", headers=auth(secret), timeout=10).status_code == 200


async def burst(reps: list[Replica], secret: str, body: dict[str, Any], count: int) -> list[httpx.Response]:
    """``count`` requests at once, round-robin over the replicas."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return await asyncio.gather(*(
            client.post(f"{reps[i % len(reps)].url}/v1/chat/completions", json=body, headers=auth(secret))
            for i in range(count)
        ))


def test_a_budget_for_ten_admits_at_most_ten_plus_one_a_replica_and_the_ledger_matches_the_costs(
    fleet: tuple[list[Replica], FaultUpstream], fleet_store: str,
) -> None:
    reps, _ = fleet
    one = httpx.post(f"{reps[0].url}/v1/chat/completions", json=BODY, headers=auth(ENV["FREE_KEY"]), timeout=30)
    assert one.status_code == 200
    cost = float(one.headers["x-polyroute-cost-usd"])
    made = admin(reps[0], "POST", "keys", {"name": "ten", "budget_usd": 10 * cost, "budget_period": "day"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    wait_until(lambda: all(known(r, secret) for r in reps), what="the new key on every replica")

    answers = asyncio.run(burst(reps, secret, BODY, 300))
    statuses = [a.status_code for a in answers]
    admitted = [a for a in answers if a.status_code == 200]
    assert set(statuses) <= {200, 402}, sorted(set(statuses))
    assert 1 <= len(admitted) <= 10 + len(reps), len(admitted)
    refused = next(a for a in answers if a.status_code == 402).json()["error"]
    assert refused["code"] == "budget_exceeded"
    returned = sum(float(a.headers["x-polyroute-cost-usd"]) for a in admitted)
    print(f"\nbudget for 10: {len(admitted)} admitted of 300 over {len(reps)} replicas; spent ${returned:.6f} "
          f"of ${10 * cost:.6f}")

    ledger = open_ledger(fleet_store)
    since = datetime.now(UTC) - timedelta(hours=1)
    wait_until(lambda: len(ledger.rows(since, "ten")) == 300, what="a ledger row for each of the 300 requests")
    rows = ledger.rows(since, "ten")
    assert sum(r.status == 200 for r in rows) == len(admitted)
    assert sum(r.cost_usd for r in rows) == pytest.approx(returned, abs=1e-9)
    ledger.close()


def test_rpm_20_admits_20_a_minute_across_the_three(fleet: tuple[list[Replica], FaultUpstream]) -> None:
    reps, _ = fleet
    # The burst must fall in one minute window: start it early in a minute.
    wait_until(lambda: time.time() % 60 < 30, timeout=61, what="the first half of a minute")
    answers = asyncio.run(burst(reps, ENV["LIMITED_KEY"], {**BODY, "model": "quick"}, 60))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 20 and statuses.count(429) == 40, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and int(refused.headers["retry-after"]) >= 1
    # Each replica tells the client what is left in the shared window, not in its own.
    left = sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in answers if a.status_code == 200)
    assert left == list(range(20))


def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_a_second(
    fleet: tuple[list[Replica], FaultUpstream],
) -> None:
    reps, _ = fleet
    made = admin(reps[0], "POST", "keys", {"name": "short-lived"})
    assert made.status_code == 201
    secret = made.json()["secret"]
    wait_until(lambda: all(known(r, secret) for r in reps), what="the new key on every replica")

    assert admin(reps[0], "DELETE", "keys/short-lived").status_code == 200
    revoked_at = time.monotonic()
    refused_after: dict[int, float] = {}

    def refused_everywhere() -> bool:
        for r in reps[1:]:
            if r.port not in refused_after and not known(r, secret):
                refused_after[r.port] = time.monotonic() - revoked_at
        return len(refused_after) == len(reps) - 1

    wait_until(refused_everywhere, what="the other replicas to refuse the revoked key")
    print(f"\nrevoked key refused by the other replicas after {max(refused_after.values()) * 1000:.0f} ms")
    assert max(refused_after.values()) < 1.0
    assert not known(reps[0], secret)


def test_a_backend_found_dead_by_one_replica_is_skipped_by_the_others(
    fleet: tuple[list[Replica], FaultUpstream],
) -> None:
    reps, up = fleet
    body = {**BODY, "model": "guarded"}
    h = auth(ENV["FREE_KEY"])
    first = httpx.post(f"{reps[0].url}/v1/chat/completions", json=body, headers=h, timeout=30)
    assert first.status_code == 200  # the blocked candidate failed, the next one answered
    assert up.count("block") == 1

    def open_on(r: Replica) -> bool:
        health = httpx.get(f"{r.url}/v1/health/backends", headers=h, timeout=10).json()
        return bool(health["backends"]["up"]["state"] == "open")

    wait_until(lambda: all(open_on(r) for r in reps[1:]), what="the opening to reach replicas 2 and 3")
    for r in reps[1:]:
        again = httpx.post(f"{r.url}/v1/chat/completions", json=body, headers=h, timeout=30)
        assert again.status_code == 200
    assert up.count("block") == 1  # neither tried the dead backend again
    assert "found so by another replica" in reps[1].log()


def test_a_roomy_budget_is_admitted_from_leases_and_its_spend_adds_up_across_the_three(
    fleet: tuple[list[Replica], FaultUpstream], fleet_store: str,
) -> None:
    """Leases (polyroute.tenancy.leases) admit without a round trip; once given back, the shared spend is exact."""
    reps, _ = fleet
    made = admin(reps[0], "POST", "keys", {"name": "roomy", "budget_usd": 1000.0, "budget_period": "day"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    wait_until(lambda: all(known(r, secret) for r in reps), what="the new key on every replica")

    answers: list[httpx.Response] = []
    for _ in range(3):  # the first requests of each replica are exact and ask for a lease; the later ones use it
        answers += asyncio.run(burst(reps, secret, BODY, 90))
    assert [a.status_code for a in answers] == [200] * len(answers)
    returned = sum(float(a.headers["x-polyroute-cost-usd"]) for a in answers)
    assert all(float(a.headers["x-polyroute-budget-remaining-usd"]) < 1000.0 for a in answers)

    def spent(r: Replica) -> float:
        got = httpx.get(f"{r.url}/v1/usage", headers=auth(secret), timeout=10)
        assert got.status_code == 200, got.text
        return float(got.json()["budget"]["key"]["spent_usd"])

    # Idle leases are given back within a second or two: then every replica reads the exact spend.
    wait_until(lambda: all(spent(r) == pytest.approx(returned, abs=1e-6) for r in reps), timeout=30,
               what="the spend in Redis to equal the costs returned")
    ledger = open_ledger(fleet_store)
    since = datetime.now(UTC) - timedelta(hours=1)
    wait_until(lambda: len(ledger.rows(since, "roomy")) == len(answers), what="a ledger row for each request")
    assert sum(r.cost_usd for r in ledger.rows(since, "roomy")) == pytest.approx(returned, abs=1e-9)
    ledger.close()
