"""Failure scope: a failure is charged to its model or its backend, and widens only on evidence."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.breakers import MemoryBreakerStore, State, backend_key, model_key
from polyroute.config import BreakerConfig
from polyroute.errors import (
    ConfigError,
    UpstreamBilling,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from polyroute.fleet import ModelEntry
from polyroute.gateway import RequestContext
from polyroute.health import PANIC_CODES, Health, Ticket
from tests.unit.failover_support import config, gateway, outcomes, request

pytestmark = pytest.mark.anyio

POLICY = BreakerConfig(failures=3, error_rate=0.5, window=10, min_requests=6, probe_interval=5,
                       block_cooldown=3600, auth_cooldown=300, widen_after_models=3)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(name: str, backend: str = "b", upstream: str | None = None) -> ModelEntry:
    return ModelEntry(name=name, backend=backend, upstream=upstream or name, family=None, input_per_mtok=0,
                      output_per_mtok=0, context_window=None, capabilities=frozenset(), locality="hosted")


async def fail(health: Health, e: ModelEntry, err: UpstreamError) -> None:
    ticket = await health.admit(e)
    assert isinstance(ticket, Ticket), ticket
    await health.settle(ticket, err)


def limited() -> UpstreamRateLimited:
    return UpstreamRateLimited("Rate limit reached", retry_after=2)


async def test_several_models_failing_the_same_way_widen_to_the_backend(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    store = MemoryBreakerStore(POLICY, clock)
    health = Health(POLICY, store)
    caplog.set_level(logging.INFO, logger="polyroute.breakers")
    await fail(health, entry("m1"), limited())
    await fail(health, entry("m2"), limited())
    # Two models rate-limited: still theirs; a sibling serves.
    assert isinstance(await health.admit(entry("sibling")), Ticket)
    assert (await store.get(backend_key("b"))).state is State.CLOSED
    await fail(health, entry("m3"), limited())
    view = await store.get(backend_key("b"))
    assert view.state is State.OPEN and view.reason == "rate_limited"
    assert view.why == "3 models rate_limited within 10s (m1, m2, m3)"
    assert "breaker backend:b open: rate_limited" in caplog.text
    assert "scope backend: 3 models rate_limited within 10s (m1, m2, m3)" in caplog.text
    skipped = await health.admit(entry("sibling"))
    assert not isinstance(skipped, Ticket)
    # The sibling never failed: its error says the whole backend is out, and why.
    assert "(backend b out: 3 models rate_limited within 10s (m1, m2, m3))" in skipped.message
    doc = await health.report(_FakeFleet(["m1", "m2", "m3", "sibling"]))  # type: ignore[arg-type]
    assert doc["backends"]["b"]["scope"] == "backend" and doc["backends"]["b"]["why"] == view.why
    assert doc["models"]["m1"]["scope"] == "model" and doc["models"]["sibling"]["scope"] is None


@pytest.mark.parametrize(
    "errors",
    [
        # Different outcomes are not "the same way".
        [limited(), UpstreamServerError("500"), UpstreamTimeout("slow")],
        # A catalog may retire several ids at once; the current ones still serve.
        [UpstreamModelNotFound("Model Not Exist")] * 3,
    ],
    ids=["different-ways", "retired"],
)
async def test_what_does_not_widen(errors: list[UpstreamError]) -> None:
    store = MemoryBreakerStore(POLICY, Clock())
    health = Health(POLICY, store)
    for i, err in enumerate(errors):
        await fail(health, entry(f"m{i}"), err)
    assert (await store.get(backend_key("b"))).state is State.CLOSED
    assert isinstance(await health.admit(entry("sibling")), Ticket)


async def test_the_scope_keys_come_from_the_config() -> None:
    raw = {**config(("m", "b", "echo")), "gateway": {"breakers": {
        "billing_cooldown": 120, "retired_cooldown": 60, "widen_after_models": 2}}}
    policy = cfg.parse(raw, source="<test>", env={}).gateway.breakers
    assert (policy.billing_cooldown, policy.retired_cooldown, policy.widen_after_models) == (120, 60, 2)
    store = MemoryBreakerStore(policy, Clock())
    health = Health(policy, store)
    await fail(health, entry("m1"), UpstreamModelNotFound("gone"))
    assert (await store.get(model_key("m1"))).retry_in == 60
    await fail(health, entry("m2"), limited())
    await fail(health, entry("m3"), limited())
    assert (await store.get(backend_key("b"))).why == "2 models rate_limited within 30s (m2, m3)"
    await fail(health, entry("x", "other"), UpstreamBilling("unpaid"))
    assert (await store.get(backend_key("other"))).retry_in == 120
    with pytest.raises(ConfigError, match="widen_after_models"):
        cfg.parse({**raw, "gateway": {"breakers": {"widen_after_models": 1}}}, source="<test>", env={})


async def test_failures_outside_the_window_do_not_widen() -> None:
    clock = Clock()
    store = MemoryBreakerStore(POLICY, clock)
    health = Health(POLICY, store)
    await fail(health, entry("m1"), limited())
    clock.now += 11
    await fail(health, entry("m2"), limited())
    await fail(health, entry("m3"), limited())
    assert (await store.get(backend_key("b"))).state is State.CLOSED


async def test_the_same_upstream_model_on_two_backends_has_two_breakers() -> None:
    store = MemoryBreakerStore(POLICY, Clock())
    health = Health(POLICY, store)
    await fail(health, entry("a-x", "a", upstream="x"), limited())
    assert (await store.get(model_key("a-x"))).state is State.OPEN
    assert isinstance(await health.admit(entry("b-x", "b", upstream="x")), Ticket)


async def test_an_account_wide_error_takes_every_model_of_the_backend_out() -> None:
    store = MemoryBreakerStore(POLICY, Clock())
    health = Health(POLICY, store)
    await fail(health, entry("m1"), UpstreamBilling("b: account balance exhausted (402 Insufficient Balance)"))
    skipped = await health.admit(entry("m2"))
    assert isinstance(skipped, UpstreamBilling) and skipped.code == "billing_cooldown"
    assert "account balance exhausted" in skipped.message and "next probe in 900.0s" in skipped.message
    assert isinstance(await health.admit(entry("m3", "other")), Ticket)


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (limited(), "rate_limited_cooldown"),
        (UpstreamBilling("unpaid"), "billing_cooldown"),
        (UpstreamModelNotFound("gone"), "retired_cooldown"),
    ],
)
async def test_a_cooldown_skip_is_never_panic_retried(err: UpstreamError, code: str) -> None:
    health = Health(POLICY, MemoryBreakerStore(POLICY, Clock()))
    await fail(health, entry("m"), err)
    skipped = await health.admit(entry("m"))
    assert isinstance(skipped, UpstreamError) and skipped.code == code and code not in PANIC_CODES


def two_on_one_backend(first: str) -> dict[str, Any]:
    return config(("m1", "b1", first), ("m2", "b1", "echo"), ("m3", "b2", "echo"))


async def test_a_429_leaves_the_sibling_in_the_same_request() -> None:
    gw = gateway(two_on_one_backend("error-429"))
    _, report = await gw.complete(request(), RequestContext())
    assert outcomes(report) == [("m1", "rate_limited"), ("m2", "ok")]


async def test_billing_skips_the_whole_backend_in_the_same_request() -> None:
    gw = gateway(two_on_one_backend("error-402"))
    _, report = await gw.complete(request(), RequestContext())
    assert outcomes(report) == [("m1", "billing"), ("m3", "ok")]


class _FakeFleet:
    """Just what ``Health.report`` reads: adapters by backend, models by name."""

    def __init__(self, names: list[str]) -> None:
        self.adapters = {"b": _Ready()}
        self.models = {n: entry(n) for n in names}


class _Ready:
    def ready(self) -> bool:
        return True

    def unready_reason(self) -> str | None:
        return None
