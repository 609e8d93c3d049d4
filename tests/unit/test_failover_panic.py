"""When breakers leave no candidate at all, the request tries them anyway rather than fail for certain."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.errors import AllAttemptsFailed
from polyroute.gateway import RequestContext
from tests.unit.failover_support import config, gateway, outcomes, request


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def one_strike(raw: dict[str, Any]) -> dict[str, Any]:
    return {**raw, "gateway": {"breakers": {"failures": 1, "probe_interval": 60}}}


@pytest.mark.anyio
async def test_every_breaker_open_still_tries_and_the_last_resort_answers() -> None:
    # "flaky" fails its first call and answers its second: a local model that was briefly overloaded.
    gw = gateway(one_strike(config(("hosted", "b1", "error-503"), ("local", "b2", "flaky"))))
    with pytest.raises(AllAttemptsFailed):
        await gw.complete(request(), RequestContext())
    resp, report = await gw.complete(request(), RequestContext())
    assert resp["choices"][0]["message"]["content"]
    assert outcomes(report) == [("hosted", "server_error"), ("local", "ok")]
    assert {e.code for e in report.skipped} == {"circuit_open"}  # both were skipped before the override


@pytest.mark.anyio
async def test_a_blocked_backend_is_not_overridden() -> None:
    gw = gateway(one_strike(config(("hosted", "b1", "blocked"))))
    with pytest.raises(AllAttemptsFailed):
        await gw.complete(request(), RequestContext())
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.attempts == []  # nothing was sent to a backend that blocks us
    assert info.value.status == 503 and "blocked" in info.value.message


@pytest.mark.anyio
async def test_no_override_while_one_candidate_is_still_admitted() -> None:
    gw = gateway(one_strike(config(("hosted", "b1", "error-503"), ("ok", "b2", "echo"))))
    await gw.complete(request(), RequestContext())
    _, report = await gw.complete(request(), RequestContext())
    assert outcomes(report) == [("ok", "ok")]  # the open breaker keeps the dead one out
