"""Failover for streams: first-token hold, stalls, rescue, tool-call cuts, hedging, usage of cut attempts."""

from __future__ import annotations

import time

import pytest

from polyroute.errors import AllAttemptsFailed, StreamCut
from polyroute.gateway import RequestContext
from polyroute.types import chunk_has_token
from tests.unit.failover_support import Scripted, collect, config, gateway, outcomes, request, text

pytestmark = pytest.mark.anyio

WHOLE = "You said: one two three"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_first_item_waits_for_a_real_token() -> None:
    gw = gateway(config(("a", "b1", "error-503"), ("b", "b2", "echo")))
    chunks, report = gw.stream(request(stream=True), RequestContext())
    first = await anext(chunks)
    # By the time anything is yielded the failed attempt is recorded and the live one counted.
    assert report.attempt_count() == 2 and outcomes(report) == [("a", "server_error")]
    rest = [c async for c in chunks]
    assert text([first, *rest]) == WHOLE


async def test_a_cut_stream_is_rescued_as_one_answer() -> None:
    gw = gateway(config(("cut", "b1", "cut-2"), ("b", "b2", "echo")))
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None and text(chunks) == WHOLE
    assert outcomes(report) == [("cut", "stream_cut"), ("b", "ok")] and report.rescued
    with_choices = [c for c in chunks if c["choices"]]
    assert len({c["id"] for c in with_choices}) == 1  # one answer, one id
    roles = [c for c in with_choices if c["choices"][0]["delta"].get("role")]
    assert len(roles) == 1


async def test_the_cut_attempt_is_billed_by_estimate() -> None:
    gw = gateway(config(("cut", "b1", "cut-2"), ("b", "b2", "echo")))
    _, report, _ = await collect(gw, request(stream=True))
    # "You said:" = 9 characters -> 3 tokens estimated; the rescue reports its own usage.
    assert report.estimated
    assert report.usage["completion_tokens"] == 3 + 1
    assert report.usage["total_tokens"] == report.usage["prompt_tokens"] + report.usage["completion_tokens"]


async def test_a_stall_after_tokens_is_rescued() -> None:
    # A stall that never ends: only the stall timer can end it. The rescue's tokens come at once, so
    # the limit is far above any pause of a loaded machine.
    gw = gateway(config(("stall", "b1", "stall-2"), ("b", "b2", "echo"), stall_timeout=0.5))
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None and text(chunks) == WHOLE
    assert outcomes(report) == [("stall", "stream_cut"), ("b", "ok")]
    assert "no token for 0.50s" in report.attempts[0].detail


async def test_no_first_token_in_time_moves_on_invisibly() -> None:
    gw = gateway(config(("slow", "b1", "slow-30000+echo"), ("b", "b2", "echo"), first_token_timeout=0.5))
    started = time.monotonic()
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None and text(chunks) == WHOLE and time.monotonic() - started < 15  # not the slow one's pace
    assert outcomes(report) == [("slow", "timeout"), ("b", "ok")] and not report.rescued


async def test_without_a_candidate_that_can_continue_the_stream_ends_in_an_error() -> None:
    gw = gateway(config(("cut", "b1", "cut-2"), ("b", "nc2", "echo")))  # nc...: continuation = "none"
    chunks, report, exc = await collect(gw, request(stream=True))
    assert isinstance(exc, StreamCut) and exc.code == "stream_cut" and exc.partial == "You said:"
    assert text(chunks) == "You said:"
    assert outcomes(report) == [("cut", "stream_cut")]  # the one that cannot continue was not tried


async def test_tool_call_deltas_are_not_rescued() -> None:
    gw = gateway(config(("t", "s1", "toolcut"), ("b", "b2", "echo")))
    _chunks, report, exc = await collect(gw, request(stream=True))
    assert isinstance(exc, StreamCut) and "tool-call" in exc.message
    assert outcomes(report) == [("t", "stream_cut")]


async def test_a_lost_end_after_finish_reason_is_still_a_whole_answer() -> None:
    gw = gateway(config(("f", "s1", "finishcut"), ("b", "b2", "echo")))
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None and text(chunks) == "whole answer"
    assert outcomes(report) == [("f", "stream_cut")] and report.estimated


async def test_a_stream_without_any_token_falls_over() -> None:
    gw = gateway(config(("e", "s1", "empty"), ("b", "b2", "echo")))
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None and text(chunks) == WHOLE
    assert outcomes(report) == [("e", "bad_response"), ("b", "ok")]


async def test_a_stream_without_usage_is_estimated() -> None:
    gw = gateway(config(("n", "s1", "nousage")))
    _, report, _ = await collect(gw, request(stream=True))
    assert report.estimated and report.usage["completion_tokens"] == 3  # "whole answer": 12 characters


async def test_every_failure_before_a_token_is_an_error_not_a_stream() -> None:
    gw = gateway(config(("a", "b1", "error-503"), ("b", "b2", "blocked")))
    chunks, _report, exc = await collect(gw, request(stream=True))
    assert isinstance(exc, AllAttemptsFailed) and exc.status == 502 and chunks == []


async def test_hedged_stream_takes_the_first_token_and_closes_the_other() -> None:
    gw = gateway(config(("slow", "b1", "slow-30000+echo"), ("fast", "b2", "echo"), hedge_after=0.05))
    started = time.monotonic()
    chunks, report = gw.stream(request(stream=True), RequestContext())
    first = await anext(chunks)
    assert time.monotonic() - started < 15  # long before the slow one's first token
    assert report.attempt_count() == 2 and outcomes(report) == [("slow", "cancelled")]
    rest = [c async for c in chunks]
    assert text([first, *rest]) == WHOLE
    assert outcomes(report) == [("slow", "cancelled"), ("fast", "ok")]
    winner = rest[-1].get("usage")
    assert winner is not None and report.estimated and report.usage["prompt_tokens"] > winner["prompt_tokens"]


async def test_a_client_that_leaves_cancels_the_attempt_and_closes_the_upstream() -> None:
    gw = gateway(config(("n", "s1", "long")))
    scripted = gw.fleet.adapters["s1"]
    assert isinstance(scripted, Scripted)
    chunks, report = gw.stream(request(stream=True), RequestContext())
    assert chunk_has_token(await anext(chunks)) is False  # the role chunk, held until the first token came
    await chunks.aclose()  # type: ignore[attr-defined]
    assert outcomes(report) == [("n", "cancelled")] and scripted.closed == 1
