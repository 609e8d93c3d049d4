"""When Redis is unreachable: what on_redis_down says, a clear 503, and one log line per outage."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from polyroute.errors import QuotaStoreUnavailable
from polyroute.redislink import RedisLink, Subscriber
from polyroute.tenancy.rediscounters import RedisCounters
from polyroute.tenancy.stores import Charge
from tests.distributed.conftest import PrivateRedis
from tests.support.fault_upstream import closed_port
from tests.support.live import Live, live_gateway
from tests.support.wait import await_until, room_in_this_minute

ENV = {"RICH_KEY": "sk-rich-0123456789abcdef", "FAST_KEY": "sk-fast-0123456789abcdef"}
UNREACHABLE = "is unreachable"


def config(store: Path, redis: str, on_down: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        "keys": {
            "rich": {"secret": "env:RICH_KEY", "budget_usd": 100.0},
            "fast": {"secret": "env:FAST_KEY", "rpm": 2},
        },
        "store": {"url": f"sqlite:///{store}", "redis": redis, "redis_prefix": f"prtest-{time.time_ns()}:"},
    }
    if on_down is not None:
        raw["store"]["on_redis_down"] = on_down
    return raw


@pytest.fixture
def dead_redis() -> str:
    return f"redis://127.0.0.1:{closed_port()}/0"


def chat(live: Live, key: str) -> httpx.Response:
    body = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV[key]}"})


@pytest.fixture
def default_live(tmp_path: Path, dead_redis: str) -> Iterator[Live]:
    with live_gateway(config(tmp_path / "s.db", dead_redis), env=ENV) as g:
        yield g


def test_by_default_a_budgeted_key_is_refused_with_503(default_live: Live) -> None:
    resp = chat(default_live, "RICH_KEY")
    assert resp.status_code == 503
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == "quota_store_unavailable" and err["type"] == "server_error"
    assert "Redis" in err["message"] and ENV["RICH_KEY"] not in resp.text
    assert resp.headers["retry-after"] == "1"  # the SDKs wait and try again


def test_by_default_a_rate_limited_key_is_let_in_and_limited_by_this_replica(default_live: Live) -> None:
    room_in_this_minute()
    # Allowed during the outage, the key's rpm is counted in this process: still 2 a minute here.
    assert [chat(default_live, "FAST_KEY").status_code for _ in range(3)] == [200, 200, 429]


def test_allow_lets_a_budgeted_key_in(tmp_path: Path, dead_redis: str) -> None:
    with live_gateway(config(tmp_path / "s.db", dead_redis, "allow"), env=ENV) as live:
        resp = chat(live, "RICH_KEY")
        assert resp.status_code == 200 and "x-polyroute-budget-remaining-usd" in resp.headers


def test_deny_refuses_a_rate_limited_key_too(tmp_path: Path, dead_redis: str) -> None:
    with live_gateway(config(tmp_path / "s.db", dead_redis, "deny"), env=ENV) as live:
        resp = chat(live, "FAST_KEY")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "quota_store_unavailable"


def test_an_outage_is_logged_once_not_per_request(default_live: Live, caplog: pytest.LogCaptureFixture) -> None:
    statuses = [chat(default_live, "RICH_KEY").status_code for _ in range(20)]
    assert statuses == [503] * 20
    # From the gateway's start (which may have found it first) to the last request: one line.
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert sum(UNREACHABLE in r.getMessage() for r in records if r.name == "polyroute.redis") == 1


def test_an_unreachable_redis_answers_at_once(dead_redis: str) -> None:
    async def run() -> float:
        link = RedisLink(dead_redis, "prtest:")
        counters = RedisCounters(link)
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(QuotaStoreUnavailable):
                await counters.reserve([Charge("key:x:rpm:1", 5, 1, time.time() + 30)], time.time())
        took = time.monotonic() - started
        await link.aclose()
        return took

    # Fifty calls during an outage: the first tries, the others are told without the network.
    assert asyncio.run(run()) < 10.0


async def ignore(message: str) -> None:
    pass


def test_one_warning_when_it_goes_and_one_line_when_it_is_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.redis")
    password_free = private_redis.url
    charge = Charge("key:y:rpm:1", 1000, 1, time.time() + 60)

    async def run() -> None:
        link = RedisLink(password_free, "prtest:")
        counters = RedisCounters(link)
        link.subscribe("nothing", Subscriber(ignore))
        await link.start()
        assert (await counters.reserve([charge], time.time())).refused is None
        private_redis.stop()
        for _ in range(30):
            with pytest.raises(QuotaStoreUnavailable):
                await counters.reserve([charge], time.time())
        private_redis.start()
        # The link's listener reconnects on its own and finds Redis back.
        await await_until(lambda: not link.down, what="the link to find Redis back")
        for _ in range(10):
            await counters.reserve([charge], time.time())
        await link.aclose()

    asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if r.name == "polyroute.redis"]
    assert sum(UNREACHABLE in m for m in lines) == 1, lines
    assert sum(m.endswith("is back") for m in lines) == 1, lines


def test_the_url_is_logged_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="polyroute.redis")
    url = f"redis://user:hunter2-very-secret@127.0.0.1:{closed_port()}/0"

    async def run() -> None:
        link = RedisLink(url, "prtest:")
        with pytest.raises(QuotaStoreUnavailable):
            await link.run(lambda c: c.ping())
        await link.aclose()

    asyncio.run(run())
    assert UNREACHABLE in caplog.text and "hunter2" not in caplog.text and "user:***@127.0.0.1" in caplog.text


def test_usage_says_the_counters_are_unreachable_not_500(default_live: Live) -> None:
    resp = httpx.get(f"{default_live.base_url}/usage", headers={"authorization": f"Bearer {ENV['RICH_KEY']}"})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "quota_store_unavailable"


def test_a_redis_that_hangs_holds_up_one_call_a_second_not_every_call() -> None:
    # A port that takes connections and never answers: each command would wait its whole timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def run() -> float:
            link = RedisLink(url, "prtest:")
            counters = RedisCounters(link)
            started = time.monotonic()
            for _ in range(20):
                with pytest.raises(QuotaStoreUnavailable):
                    await counters.reserve([Charge("key:z:rpm:1", 5, 1, time.time() + 30)], time.time())
            took = time.monotonic() - started
            await link.aclose()
            return took

        # Twenty calls that each waited out the timeout would take 20 s and more.
        assert asyncio.run(run()) < 8.0


def test_a_read_only_redis_is_answered_like_an_unreachable_one(private_redis: PrivateRedis) -> None:
    # After a failover, the old primary may be a read-only replica: the counters cannot be written.
    admin_client = redis.Redis.from_url(private_redis.url)
    admin_client.replicaof("127.0.0.1", closed_port())

    async def run() -> None:
        link = RedisLink(private_redis.url, "prtest:")
        with pytest.raises(QuotaStoreUnavailable):
            await RedisCounters(link).reserve([Charge("key:ro:rpm:1", 5, 1, time.time() + 30)], time.time())
        await link.aclose()

    try:
        asyncio.run(run())
    finally:
        admin_client.replicaof("NO", "ONE")
        admin_client.close()


def test_with_allow_what_was_spent_during_the_outage_reaches_the_shared_budget(private_redis: PrivateRedis) -> None:
    """A replica that admits alone while Redis is down still spends the shared budget: once Redis is back, what it
    spent is added there, so the other replicas see it and the budget is not granted again."""
    from polyroute import config as cfg
    from polyroute.attempts import Report
    from polyroute.auth import Keyring
    from polyroute.catalog import load_catalog_for
    from polyroute.finish import Finished
    from polyroute.gateway import Gateway, RequestContext
    from polyroute.routing import Principal
    from polyroute.tenancy.model import KeyRecord, Limits
    from polyroute.tenancy.quota import Quota
    from polyroute.types import ChatRequest, make_usage

    config = cfg.parse({"backends": {"fk": {"type": "fake"}},
                        "models": {"m": {"backend": "fk", "input_per_mtok": 1.0, "output_per_mtok": 2.0}}})
    gateway = Gateway.from_config(config, load_catalog_for(config))
    keys = Keyring([], [], enabled=True)
    keys.load_stored([KeyRecord("app", b"d" * 32, limits=Limits(budget_usd=100.0, budget_period="month"))], [])
    ctx = RequestContext(principal=Principal(key="app"))
    req = ChatRequest.model_validate({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})

    async def spend(quota: Quota, cost: float) -> None:
        admitted = await quota.admit(req, ctx, gateway.plan(req, ctx))
        report = Report(route="m", usage=make_usage(5, 5), cost_usd=cost)
        quota.finished(ctx, report, Finished(ctx.request_id, 200, False, 0.0, 0.1, admitted=admitted))
        await quota.settled()

    async def spent(quota: Quota) -> float:
        return float((await quota.remaining("app", None))["key"]["spent_usd"])

    from datetime import UTC, datetime

    from polyroute.tenancy.model import period_of

    async def run() -> None:
        link = RedisLink(private_redis.url, f"prtest-{time.time_ns()}:")
        link.subscribe("nothing", Subscriber(ignore))
        await link.start()
        quota = Quota(keys, RedisCounters(link), on_down="allow")
        await spend(quota, 0.25)
        assert await spent(quota) == pytest.approx(0.25)
        private_redis.stop()
        for _ in range(3):
            await spend(quota, 0.5)  # admitted by this process alone
        private_redis.start()  # a new, empty server: only what is sent to it after the outage is in it
        await await_until(lambda: not link.down, what="the link to find Redis back")
        # What another replica reads: the budget's counter in Redis itself, once the kept spend is sent.
        bucket = link.key("q", f"key:app:usd:{period_of('month', datetime.now(UTC)).id}")
        client = redis.Redis.from_url(private_redis.url)
        await await_until(lambda: float(client.get(bucket) or 0) == pytest.approx(1.5),
                          what="the outage's spend in the shared counter")
        client.close()
        assert await spent(Quota(keys, RedisCounters(link))) == pytest.approx(1.5)
        await link.aclose()

    asyncio.run(run())
