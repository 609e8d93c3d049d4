"""Budgets seeded from the ledger at start: replicas sharing Redis count the ledger's spend once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from polyroute import config as cfg
from polyroute.auth import Keyring
from polyroute.redislink import RedisLink
from polyroute.tenancy.model import period_of
from polyroute.tenancy.setup import Tenancy
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import UsageRow


def row(request_id: str, cost: float) -> UsageRow:
    return UsageRow(request_id, datetime.now(UTC), "spender", None, "echo", "echo", "f", "[]", 10, 5, cost, False,
                    12.0, None, 200, None, False)


def test_three_replicas_starting_together_seed_the_spend_once(tmp_path: Path, redis_url: str, prefix: str) -> None:
    db = tmp_path / "shared.db"
    ledger = SqliteStore(db)
    ledger.write([row("r1", 0.25), row("r2", 0.5)])
    ledger.close()
    config = cfg.parse({
        "backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
        "keys": {"spender": {"secret": "env:SPENDER_KEY", "budget_usd": 5.0, "budget_period": "month"}},
        "store": {"url": f"sqlite:///{db}", "redis": redis_url, "redis_prefix": prefix},
    }, env={"SPENDER_KEY": "sk-spender-0123456789abcdef"})

    async def run() -> float:
        replicas = [Tenancy(config, Keyring.from_config(config), RedisLink(redis_url, prefix)) for _ in range(3)]
        await asyncio.gather(*(t.start() for t in replicas))
        period = period_of("month", datetime.now(UTC))
        (spent,) = await replicas[0].counters.read([f"key:spender:usd:{period.id}"], datetime.now(UTC).timestamp())
        for t in replicas:
            await t.aclose()
            assert t.link is not None
            await t.link.aclose()
        return spent

    assert asyncio.run(run()) == 0.75
