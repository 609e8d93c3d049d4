"""``POST /admin/probe`` with ``[store] share_breakers``: a probe on one replica brings the model back on all.

Two gateways share one Redis and one store. The account behind ``paid`` cannot pay: the
replica that meets it opens the backend's breaker, and the other takes the opening. The
account is topped up and the other replica is asked to probe: both close at once, and a
probe of the same model on the first replica right after is refused (the claim is shared).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_admin_probe import ADMIN, CLIENT, ENV, Account
from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until


@pytest.fixture
def account() -> Iterator[Account]:
    up = Account()
    up.start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def pair(account: Account, tmp_path: Path, redis_url: str, prefix: str) -> Iterator[list[Live]]:
    raw = {
        "gateway": {"breakers": {"failures": 1, "probe_interval": 600, "billing_cooldown": 3600}},
        "backends": {"acct": {"type": "openai", "base_url": f"{account.url}/v1", "api_key": "env:PAID_KEY"},
                     "f": {"type": "fake"}},
        "models": {"paid": {"backend": "acct", "upstream": "gpt-4.1-mini"}, "spare": {"backend": "f"}},
        "routes": {"chat": {"models": ["paid", "spare"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "keys": {"app": {"secret": "env:CLIENT_KEY"}},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}", "redis": redis_url, "redis_prefix": prefix,
                  "share_breakers": True, "flush_interval": 0.05, "ledger_writer": "thread"},
    }
    with ExitStack() as stack:
        yield [stack.enter_context(live_gateway(raw, env=ENV)) for _ in range(2)]


def acct_state(live: Live) -> Any:
    doc = httpx.get(f"{live.base_url}/health/backends", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    return doc.json()["backends"]["acct"]["state"]


def test_a_probe_on_one_replica_closes_the_breaker_on_every_one(pair: list[Live], account: Account) -> None:
    one, two = pair
    answer = httpx.post(f"{one.base_url}/chat/completions", headers={"authorization": f"Bearer {CLIENT}"},
                        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert answer.json()["model"] == "spare"
    wait_until(lambda: acct_state(two) == "open", what="the other replica to take the opening")

    account.topped_up = True
    probed = httpx.post(f"{two.root}/admin/probe", json={"models": ["paid"]}, timeout=30,
                        headers={"authorization": f"Bearer {ADMIN}"})
    assert probed.status_code == 200 and probed.json()["data"][0]["result"] == "ok"
    assert acct_state(two) == "closed"
    wait_until(lambda: acct_state(one) == "closed", what="the first replica to take the closing")

    again = httpx.post(f"{one.root}/admin/probe", json={"models": ["paid"]}, timeout=30,
                       headers={"authorization": f"Bearer {ADMIN}"})
    assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1
