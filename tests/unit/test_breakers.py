"""Breakers: the state machine on a fake clock, what each error counts against, the health view."""

from __future__ import annotations

import logging

import pytest

from polyroute.breakers import (
    RELEASE,
    SUCCESS,
    MemoryBreakerStore,
    Outcome,
    State,
    Verdict,
    backend_key,
    model_key,
    outcomes,
)
from polyroute.config import BreakerConfig
from polyroute.errors import (
    StreamCut,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamContextExceeded,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from polyroute.fleet import ModelEntry
from polyroute.health import Health, Ticket

pytestmark = pytest.mark.anyio

FAIL = Outcome(Verdict.FAILURE, reason="server_error")
POLICY = BreakerConfig(failures=3, error_rate=0.5, window=10, min_requests=6, probe_interval=5,
                       block_cooldown=3600, auth_cooldown=300)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryBreakerStore:
    return MemoryBreakerStore(POLICY, clock)


async def test_opens_after_consecutive_failures(store: MemoryBreakerStore) -> None:
    for _ in range(2):
        assert (await store.record("k", FAIL)) == (State.CLOSED, State.CLOSED)
    assert (await store.record("k", FAIL)) == (State.CLOSED, State.OPEN)
    refused = await store.admit("k")
    assert not refused.allowed and refused.reason == "server_error" and refused.retry_in == pytest.approx(5)


async def test_a_success_resets_the_run_of_failures(store: MemoryBreakerStore) -> None:
    for outcome in (FAIL, FAIL, SUCCESS, FAIL, FAIL):
        await store.record("k", outcome)
    assert (await store.get("k")).state is State.CLOSED


async def test_opens_on_error_rate_over_the_window(store: MemoryBreakerStore, clock: Clock) -> None:
    # Alternating failures never make three in a row, but 4 of 7 is over half.
    for outcome in (FAIL, SUCCESS, FAIL, SUCCESS, FAIL, SUCCESS):
        await store.record("k", outcome)
        clock.now += 1
    assert (await store.get("k")).state is State.CLOSED  # 3 of 6: not over half
    await store.record("k", FAIL)
    assert (await store.get("k")).state is State.OPEN


async def test_old_attempts_leave_the_window(store: MemoryBreakerStore, clock: Clock) -> None:
    for outcome in (FAIL, SUCCESS, FAIL, SUCCESS, FAIL, SUCCESS):
        await store.record("k", outcome)
    clock.now += 11  # the window is 10 s
    view = await store.get("k")
    assert (view.window_attempts, view.window_failures) == (0, 0)
    await store.record("k", FAIL)
    assert (await store.get("k")).state is State.CLOSED


async def test_one_probe_per_interval_then_closed_on_success(store: MemoryBreakerStore, clock: Clock) -> None:
    for _ in range(3):
        await store.record("k", FAIL)
    clock.now += 5
    probe = await store.admit("k")
    assert probe.allowed and probe.probe and probe.state is State.HALF_OPEN
    # While the probe is out, everything else is refused, even past another interval's start.
    assert not (await store.admit("k")).allowed
    clock.now += 4.9
    assert not (await store.admit("k")).allowed
    assert (await store.record("k", SUCCESS)) == (State.HALF_OPEN, State.CLOSED)
    assert (await store.admit("k")).allowed


async def test_a_failed_probe_keeps_it_open_for_another_interval(store: MemoryBreakerStore, clock: Clock) -> None:
    for _ in range(3):
        await store.record("k", FAIL)
    clock.now += 5
    assert (await store.admit("k")).probe
    clock.now += 1
    assert (await store.record("k", FAIL)) == (State.HALF_OPEN, State.OPEN)
    clock.now += 4.9
    assert not (await store.admit("k")).allowed
    clock.now += 0.2
    assert (await store.admit("k")).probe


async def test_a_hung_probe_lets_the_next_go_after_an_interval(store: MemoryBreakerStore, clock: Clock) -> None:
    for _ in range(3):
        await store.record("k", FAIL)
    clock.now += 5
    assert (await store.admit("k")).probe
    clock.now += 5
    assert (await store.admit("k")).probe  # the first never came back: one more, an interval later


async def test_a_released_probe_is_given_back(store: MemoryBreakerStore, clock: Clock) -> None:
    for _ in range(3):
        await store.record("k", FAIL)
    clock.now += 5
    assert (await store.admit("k")).probe
    await store.record("k", RELEASE)
    assert (await store.admit("k")).probe


async def test_cooldown_opens_at_once_and_holds(store: MemoryBreakerStore, clock: Clock) -> None:
    blocked = Outcome(Verdict.FAILURE, cooldown=3600, reason="blocked", detail="Country, region, or territory")
    assert (await store.record("k", blocked)) == (State.CLOSED, State.OPEN)
    clock.now += 3599
    refused = await store.admit("k")
    assert not refused.allowed and refused.reason == "blocked" and refused.retry_in == pytest.approx(1)
    clock.now += 1
    assert (await store.admit("k")).probe


async def test_snapshot_and_view(store: MemoryBreakerStore) -> None:
    await store.record("b", FAIL)
    await store.record("a", SUCCESS)
    views = await store.snapshot()
    assert [v.key for v in views] == ["a", "b"]
    assert views[1].consecutive_failures == 1 and views[1].window_failures == 1
    assert (await store.get("never-seen")).state is State.CLOSED


@pytest.mark.parametrize(
    ("err", "backend", "model", "cooldown"),
    [
        (UpstreamUnavailable("refused"), Verdict.FAILURE, Verdict.RELEASE, None),
        (UpstreamBlocked("region"), Verdict.FAILURE, Verdict.RELEASE, 3600),
        (UpstreamAuthError("bad key"), Verdict.FAILURE, Verdict.RELEASE, 300),
        (UpstreamBilling("402 Insufficient Balance"), Verdict.FAILURE, Verdict.RELEASE, 900),
        (UpstreamBlocked("model not here", scope="model"), Verdict.RELEASE, Verdict.FAILURE, 3600),
        # A 429 is the model's: a sibling on the same backend keeps serving.
        (UpstreamRateLimited("slow down", retry_after=7), Verdict.RELEASE, Verdict.FAILURE, 7),
        (UpstreamRateLimited("slow down", retry_after=99999), Verdict.RELEASE, Verdict.FAILURE, 3600),
        (UpstreamRateLimited("slow down"), Verdict.RELEASE, Verdict.FAILURE, None),
        (UpstreamModelNotFound("Model Not Exist"), Verdict.RELEASE, Verdict.FAILURE, 3600),
        (UpstreamServerError("500"), Verdict.RELEASE, Verdict.FAILURE, None),
        # A 503 that says when to come back (a model still loading): that model out until then.
        (UpstreamServerError("503 Loading model", retry_after=20), Verdict.RELEASE, Verdict.FAILURE, 20),
        (UpstreamTimeout("slow"), Verdict.RELEASE, Verdict.FAILURE, None),
        (UpstreamBadResponse("junk"), Verdict.RELEASE, Verdict.FAILURE, None),
        (StreamCut("cut"), Verdict.RELEASE, Verdict.FAILURE, None),
        (UpstreamRejected("your fault"), Verdict.SUCCESS, Verdict.SUCCESS, None),
        (UpstreamContextExceeded("too long"), Verdict.SUCCESS, Verdict.SUCCESS, None),
        (None, Verdict.SUCCESS, Verdict.SUCCESS, None),
    ],
)
def test_what_each_error_counts_against(
    err: UpstreamUnavailable | None, backend: Verdict, model: Verdict, cooldown: float | None
) -> None:
    b, m = outcomes(err, POLICY)
    assert (b.verdict, m.verdict) == (backend, model)
    counted = b if b.verdict is Verdict.FAILURE else m
    assert counted.cooldown == cooldown


def entry(name: str = "m", backend: str = "b") -> ModelEntry:
    return ModelEntry(name=name, backend=backend, upstream=name, family=None, input_per_mtok=0, output_per_mtok=0,
                      context_window=None, capabilities=frozenset(), locality="local")


async def test_health_admits_over_both_keys_and_logs_changes(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    health = Health(POLICY, MemoryBreakerStore(POLICY, clock))
    e = entry()
    caplog.set_level(logging.INFO, logger="polyroute.breakers")
    ticket = await health.admit(e)
    assert isinstance(ticket, Ticket) and ticket.probes == ()
    await health.settle(ticket, UpstreamBlocked("Country, region, or territory not supported"))
    assert "breaker backend:b open: blocked (Country, region, or territory not supported)" in caplog.text
    skipped = await health.admit(e)
    assert isinstance(skipped, UpstreamBlocked) and skipped.code == "blocked_cooldown"
    assert "next probe in 3600.0s" in skipped.message
    # Another model on the same backend is out too; a model on another backend is not.
    assert isinstance(await health.admit(entry("m2")), UpstreamBlocked)
    assert isinstance(await health.admit(entry("m3", "other")), Ticket)
    clock.now += 3600
    probe = await health.admit(e)
    assert isinstance(probe, Ticket) and probe.probes == (backend_key("b"),)
    assert "breaker backend:b half-open: probing (blocked)" in caplog.text
    await health.settle(probe, None)
    assert "breaker backend:b closed (was half_open)" in caplog.text


async def test_a_model_breaker_refusal_gives_back_the_backend_probe(clock: Clock) -> None:
    store = MemoryBreakerStore(POLICY, clock)
    health = Health(POLICY, store)
    for _ in range(3):
        await store.record(backend_key("b"), FAIL)
        await store.record(model_key("m"), Outcome(Verdict.FAILURE, cooldown=60, reason="rate_limited"))
    clock.now += 5
    skipped = await health.admit(entry())
    assert isinstance(skipped, UpstreamRateLimited) and skipped.retry_after == pytest.approx(55)
    # The backend's probe was not spent on an attempt that never went.
    assert (await store.admit(backend_key("b"))).probe


async def test_settle_without_counting_and_release(clock: Clock) -> None:
    store = MemoryBreakerStore(POLICY, clock)
    health = Health(POLICY, store)
    for _ in range(3):
        await store.record(model_key("m"), FAIL)
    clock.now += 5
    probe = await health.admit(entry())
    assert isinstance(probe, Ticket) and probe.probes == (model_key("m"),)
    await health.settle(probe, UpstreamTimeout("deadline"), counts=False)
    again = await health.admit(entry())
    assert isinstance(again, Ticket) and again.probes  # the probe came back unspent
    await health.release(again)
    assert isinstance(await health.admit(entry()), Ticket)
