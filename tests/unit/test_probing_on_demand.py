"""``OnDemandProbes`` in-process over the fake backend: the spacing between two probes of a model (a moved clock,
no waiting), an answer closing an open breaker, and a failure charged to its scope."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.breakers import Outcome, State, Verdict, backend_key, model_key
from polyroute.catalog import load_catalog
from polyroute.config import parse
from polyroute.errors import InvalidRequest, RateLimitExceeded
from polyroute.gateway import Gateway
from polyroute.probing.on_demand import OnDemandProbes

RAW = {
    "backends": {"f": {"type": "fake"}},
    "models": {"echo": {"backend": "f", "upstream": "echo"}, "gone": {"backend": "f", "upstream": "blocked"}},
    "routes": {"both": {"models": ["echo", "gone"]}},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probes(clock: Clock) -> OnDemandProbes:
    return OnDemandProbes(Gateway.from_config(parse(RAW, source="t.toml", env={}), load_catalog()), clock=clock)


def test_a_model_is_probed_again_only_once_the_spacing_has_passed() -> None:
    clock = Clock()
    p = probes(clock)

    async def run() -> None:
        [first] = await p.run(["echo"])
        assert first["result"] == "ok"
        clock.now += 4.0
        with pytest.raises(RateLimitExceeded) as refused:
            await p.run(["both"])  # echo among them: refused whole
        assert refused.value.retry_after == pytest.approx(1.0) and "echo" in refused.value.message
        assert "gone" not in p.last  # nothing of a refused call was claimed
        clock.now += 1.0
        assert [r["model"] for r in await p.run(["both"])] == ["echo", "gone"]

    asyncio.run(run())


def test_an_answer_closes_the_open_breakers_and_a_failure_opens_its_scope() -> None:
    p = probes(Clock())
    store = p.gateway.failover.health.store

    async def run() -> None:
        down = Outcome(Verdict.FAILURE, cooldown=600.0, reason="unavailable", detail="connection refused")
        await store.record(backend_key("f"), down)
        await store.record(model_key("echo"), down)
        [echo] = await p.run(["echo"])
        assert echo["breaker"] == {"model": "closed", "backend": "closed", "reason": None}
        assert (await store.get(model_key("echo"))).state is State.CLOSED
        [gone] = await p.run(["gone"])
        assert gone["result"] == "blocked" and "another provider" in gone["hint"]
        # A region block is the whole account's: the backend is charged, for the block's cooldown.
        assert gone["breaker"] == {"model": "closed", "backend": "open", "reason": "blocked"}
        assert (await store.get(backend_key("f"))).retry_in > 0

    asyncio.run(run())


def test_an_unknown_name_is_refused_before_anything_is_asked() -> None:
    p = probes(Clock())
    with pytest.raises(InvalidRequest, match="no model or route named 'ecoh'"):
        p.entries(["ecoh"])
    with pytest.raises(InvalidRequest, match="names no model"):
        p.entries([])
    assert [e.name for e in p.entries(None)] == ["echo", "gone"]
