"""Failover for whole answers: order, bounds, classification, breakers, context windows, hedging."""

from __future__ import annotations

import itertools
import time

import pytest

from polyroute.errors import AllAttemptsFailed, UpstreamBlocked
from polyroute.failover import Report
from polyroute.gateway import RequestContext
from tests.unit.failover_support import config, gateway, outcomes, request

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_falls_over_in_order_until_one_answers() -> None:
    gw = gateway(config(("a", "b1", "error-503"), ("b", "b2", "error-500"), ("c", "b3", "echo")))
    resp, report = await gw.complete(request(), RequestContext())
    assert resp["choices"][0]["message"]["content"] == "You said: one two three"
    assert outcomes(report) == [("a", "server_error"), ("b", "server_error"), ("c", "ok")]
    assert report.model is not None and report.model.name == "c"


async def test_max_attempts_bounds_the_walk() -> None:
    gw = gateway(config(("a", "b1", "error-503"), ("b", "b2", "error-502"), ("c", "b3", "echo"), max_attempts=2))
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert [a.model for a in info.value.attempts] == ["a", "b"]
    assert info.value.status == 502 and "all 2 attempt(s) for 'r' failed" in info.value.message


async def test_deadline_cuts_the_attempt_and_does_not_count_against_it() -> None:
    gw = gateway(config(("a", "b1", "slow-30000+echo"), ("b", "b2", "echo"), deadline=0.2))
    started = time.monotonic()
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert time.monotonic() - started < 15  # cut by the deadline, long before the slow answer
    assert info.value.status == 504 and [a.outcome for a in info.value.attempts] == ["timeout"]
    view = await gw.failover.health.store.get("model:a")
    assert view.window_failures == 0  # our deadline, not the model's fault


async def test_the_clients_own_400_is_not_tried_elsewhere() -> None:
    gw = gateway(config(("a", "b1", "error-400"), ("b", "b2", "echo")))
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.status == 400 and outcomes_of(info.value) == [("a", "rejected")]
    assert (await gw.failover.health.store.get("backend:b1")).window_failures == 0


async def test_the_clients_400_stays_a_400_when_a_candidate_was_skipped() -> None:
    gw = gateway(config(("out", "b1", "blocked"), ("a", "b2", "error-400")))
    with pytest.raises(AllAttemptsFailed):
        await gw.complete(request(model="out"), RequestContext())  # takes b1 out for the block cooldown
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.status == 400 and outcomes_of(info.value) == [("a", "rejected")]


async def test_context_exceeded_moves_to_a_larger_window_only() -> None:
    raw = config(("small", "s1", "ctx"), ("same", "b2", "echo"), ("unknown", "b3", "echo"), ("large", "b4", "echo"))
    for name, window in (("small", 8192), ("same", 8192), ("large", 131072)):
        raw["models"][name]["context_window"] = window
    gw = gateway(raw)
    _resp, report = await gw.complete(request(), RequestContext())
    assert outcomes(report) == [("small", "context_exceeded"), ("large", "ok")]


async def test_context_exceeded_with_no_larger_window_is_the_clients_400() -> None:
    raw = config(("small", "s1", "ctx"), ("same", "b2", "echo"))
    raw["models"]["small"]["context_window"] = raw["models"]["same"]["context_window"] = 8192
    with pytest.raises(AllAttemptsFailed) as info:
        await gateway(raw).complete(request(), RequestContext())
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"


async def test_a_block_takes_the_backend_out_and_says_so() -> None:
    gw = gateway(config(("a", "b1", "blocked"), ("b", "b2", "echo")))
    _, first = await gw.complete(request(), RequestContext())
    assert outcomes(first) == [("a", "blocked"), ("b", "ok")]
    _, second = await gw.complete(request(), RequestContext())
    assert outcomes(second) == [("b", "ok")]  # not even tried
    assert second.errors == [] and isinstance(second.skipped[0], UpstreamBlocked)
    assert second.skipped[0].code == "blocked_cooldown"
    health = await gw.failover.health.report(gw.fleet)
    assert health["backends"]["b1"]["state"] == "open" and health["backends"]["b1"]["reason"] == "blocked"
    assert health["backends"]["b1"]["next_probe_in"] > 3500 and health["status"] == "degraded"


async def test_a_refused_key_is_not_tried_again_on_that_backend() -> None:
    gw = gateway(config(("a", "keyed", "error-401"), ("a2", "keyed", "echo"), ("b", "b2", "echo")))
    _, report = await gw.complete(request(), RequestContext())
    assert outcomes(report) == [("a", "auth_error"), ("b", "ok")]


async def test_a_rate_limit_skips_the_backend_until_retry_after() -> None:
    gw = gateway(config(("a", "b1", "error-429"), ("b", "b2", "echo")))  # the fake says Retry-After: 1
    now = time.monotonic()
    gw.failover.health.store.clock = lambda: now  # that second cannot run out on a stalled machine
    _, first = await gw.complete(request(), RequestContext())
    _, second = await gw.complete(request(), RequestContext())
    assert outcomes(first) == [("a", "rate_limited"), ("b", "ok")] and outcomes(second) == [("b", "ok")]


async def test_outage_sends_one_probe_per_interval_to_the_dead_primary() -> None:
    raw = config(("dead", "b1", "error-503"), ("alive", "b2", "echo"))
    raw["gateway"] = {"breakers": {"failures": 2, "probe_interval": 0.1}}
    gw = gateway(raw)
    tried: list[tuple[float, float]] = []  # (before, after) the request of each attempt at "dead"
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 0.5 or calls < 3:
        before = time.monotonic()
        _resp, report = await gw.complete(request(), RequestContext())
        calls += 1
        assert report.model is not None and report.model.name == "alive"
        tried += [(before, time.monotonic()) for a in report.attempts if a.model == "dead"]
    elapsed = time.monotonic() - started
    # Two failures open it; then one probe per 0.1 s at most.
    assert 2 <= len(tried) <= 2 + elapsed / 0.1 + 1
    probes = tried[2:]
    # Each probe was admitted within its request: the next one's end is at least an interval after
    # the previous one's start, however long a loaded machine took over either.
    assert all(b_end - a_start >= 0.1 for (a_start, _), (_, b_end) in itertools.pairwise(probes))


async def test_every_candidate_out_fails_fast_and_explains() -> None:
    gw = gateway(config(("a", "b1", "blocked")))
    with pytest.raises(AllAttemptsFailed):
        await gw.complete(request(), RequestContext())
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.attempts == [] and info.value.status == 503
    assert "no candidate of 'r' could be tried" in info.value.message and "skipped: blocked" in info.value.message


async def test_hedge_takes_the_first_answer_and_cancels_the_other() -> None:
    gw = gateway(config(("slow", "b1", "slow-30000+echo"), ("fast", "b2", "echo"), hedge_after=0.05))
    started = time.monotonic()
    resp, report = await gw.complete(request(), RequestContext())
    assert time.monotonic() - started < 15  # long before the slow answer
    assert resp["choices"][0]["message"]["content"] == "You said: one two three"
    assert sorted(outcomes(report)) == [("fast", "ok"), ("slow", "cancelled")]
    # The loser read the prompt too: its prompt tokens are billed, estimated and said so.
    winner = resp["usage"]
    assert report.usage["prompt_tokens"] > winner["prompt_tokens"] and report.estimated
    assert report.usage["completion_tokens"] == winner["completion_tokens"]


async def test_hedge_failure_moves_on_at_once() -> None:
    hedge_after = 1.0
    gw = gateway(config(("bad", "b1", "error-500"), ("slow", "b2", "slow-30000+echo"), ("fast", "b3", "echo"),
                        hedge_after=hedge_after))
    started = time.monotonic()
    _, report = await gw.complete(request(), RequestContext())
    # bad fails at once -> slow starts; hedge_after later fast is hedged beside it and wins. Had the
    # walk waited out hedge_after after the failure too, it would have taken twice that: a second of
    # room for a loaded machine.
    assert hedge_after <= time.monotonic() - started < 2 * hedge_after
    assert outcomes(report)[0] == ("bad", "server_error") and ("fast", "ok") in outcomes(report)


def outcomes_of(exc: AllAttemptsFailed) -> list[tuple[str, str]]:
    return outcomes(Report(route="r", attempts=exc.attempts))


async def test_a_whole_answer_may_take_longer_than_the_time_to_headers() -> None:
    raw = config(("slow", "b1", "slow-400"), ("fast", "b2", "echo"))
    raw["backends"]["b1"].update(timeout=0.2, answer_timeout=20.0)
    _, report = await gateway(raw).complete(request(), RequestContext())
    assert outcomes(report) == [("slow", "ok")]
    raw["backends"]["b1"].update(answer_timeout=0.2)
    _, report = await gateway(raw).complete(request(), RequestContext())
    assert outcomes(report) == [("slow", "timeout"), ("fast", "ok")]


async def test_the_message_counts_the_candidates_skipped_beside_the_attempts() -> None:
    """One attempt failed and one candidate was skipped (its backend blocked): the message lists two causes, and
    says both counts, not 'all 1 attempt(s)' over a list of two."""
    gw = gateway(config(("a", "b1", "blocked"), ("b", "b2", "error-503")))
    with pytest.raises(AllAttemptsFailed):
        await gw.complete(request(), RequestContext())
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert [a.model for a in info.value.attempts] == ["b"]
    assert "all 1 attempt(s) for 'r' failed, 1 candidate(s) skipped" in info.value.message
    assert "skipped: blocked" in info.value.message
