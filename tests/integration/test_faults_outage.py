"""Outages, hedging, the local last resort, and the one property: never a truncated stream ending in [DONE]."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.integration.faults import SLOW_MS, Fleet, stream, upstream
from tests.support.fault_upstream import ANSWER, FaultUpstream
from tests.support.live import Live
from tests.support.wait import wait_until

PROBE_INTERVAL = 0.5
FAILURES = 3
CONCURRENCY = 8
ROUNDS = 5  # requests each worker makes at least, however slow the machine
SLOW = SLOW_MS / 1000

# Faults a candidate may have, before or after its first token, for the property below.
ANY_FAULT = ["ok", "reset", "status-503", "block", f"slowfirst-{SLOW_MS}", "stall-2", "cut-3", "resetbody-1",
             "malformed-2", "errorevent-1", "badjson", "tools+cut-2", "nousage"]


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    fleet = Fleet(up)
    fleet.gateway = {"breakers": {"failures": FAILURES, "probe_interval": PROBE_INTERVAL}}
    fleet.route("outage-503", "status-503", "ok")
    fleet.route("outage-refused", "ok", "ok", refused=(0,))
    # Only the hedge can answer sooner than the slow candidate: no limit of the gateway's ends it first.
    fleet.route("hedge-s", f"slowfirst-{SLOW_MS}", "ok", hedge_after=0.1, first_token_timeout=2 * SLOW,
                deadline=2 * SLOW)
    fleet.route("hedge", f"slowheaders-{SLOW_MS}", "ok", hedge_after=0.1, deadline=2 * SLOW,
                limits={"timeout": 2 * SLOW, "answer_timeout": 2 * SLOW})
    fleet.route("last-resort", "block", "ok", "auth", refused=(1,), local_last=True)
    fleet.route("log", "cut-2", "ok")
    for (i, a), (j, b) in itertools.product(enumerate(ANY_FAULT), repeat=2):
        fleet.route(f"pair-{i}-{j}", a, b)
    with fleet.serve() as g:
        yield g


@pytest.mark.parametrize("route", ["outage-503", "outage-refused"])
def test_outage_every_request_succeeds_and_the_primary_gets_one_probe_per_interval(
    route: str, live: Live, up: FaultUpstream
) -> None:
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop = started + 2.0

    def worker(n: int) -> None:
        client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
        done = 0
        while done < ROUNDS or time.monotonic() < stop:
            if n % 2:
                text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                    model=route, messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
            else:
                resp = client.chat.completions.create(model=route, messages=[{"role": "user", "content": "hi"}])
                text = resp.choices[0].message.content or ""
            with lock:
                results.append((n, text))
            done += 1
            time.sleep(0.01)
        client.close()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(worker, range(CONCURRENCY)))
    elapsed = time.monotonic() - started

    assert len(results) >= ROUNDS * CONCURRENCY and all(text == ANSWER for _, text in results)
    primary = "ok" if route == "outage-refused" else "status-503"
    if route == "outage-503":  # a closed port leaves nothing to count at the server
        hits = sorted(up.times(upstream(route, 0, primary)))
        # A burst while the breaker is still closed (FAILURES failures, and what was in flight meanwhile),
        # then at most one probe per interval for as long as the run lasted.
        burst = FAILURES + CONCURRENCY - 1
        assert len(hits) <= burst + elapsed / PROBE_INTERVAL + 1
        # The breaker spaces probes by its own clock; the upstream notes each on arrival, late by however
        # long a loaded machine took to deliver it. A quarter of an interval leaves room for that and
        # still tells probes from a burst, whose requests come milliseconds apart.
        assert all(b - a >= PROBE_INTERVAL / 4 for a, b in itertools.pairwise(hits[burst:]))
    health = httpx.get(f"{live.root}/v1/health/backends").json()
    key = health["models"][f"{route}-0"] if route == "outage-503" else health["backends"][f"{route}-b0"]
    assert key["state"] in ("open", "half_open") and key["consecutive_failures"] >= FAILURES


def test_hedged_stream_answers_from_the_fast_one_and_releases_the_slow_one(live: Live, up: FaultUpstream) -> None:
    sse = stream(live, "hedge-s")
    assert sse.done and sse.text == ANSWER and sse.seconds < SLOW  # never the slow one's pace
    assert sse.headers["x-polyroute-attempts"] == "2"
    assert "hedge-s-b0/hedge-s-0 cancelled" in sse.headers["x-polyroute-attempt-log"]
    wait_until(lambda: up.hangups, what="the slow attempt's connection closed")
    assert [h.model for h in up.hangups] == [upstream("hedge-s", 0, f"slowfirst-{SLOW_MS}")]


def test_hedged_whole_answer(live: Live, up: FaultUpstream) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="hedge", messages=[{"role": "user", "content": "x"}])
    assert raw.parse().choices[0].message.content == ANSWER and time.monotonic() - started < SLOW
    assert raw.headers["x-polyroute-attempts"] == "2" and raw.headers["x-polyroute-model"] == "hedge-1"
    slow = upstream("hedge", 0, f"slowheaders-{SLOW_MS}")
    wait_until(lambda: slow in [h.model for h in up.hangups], what="the slow attempt's connection closed")


def test_local_model_answers_when_every_hosted_one_is_cut_off(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    for attempts in ("4", "2"):  # the block and the refused key keep those backends out afterwards
        raw = client.chat.completions.with_raw_response.create(
            model="last-resort", messages=[{"role": "user", "content": "x"}]
        )
        assert raw.parse().choices[0].message.content == ANSWER
        assert raw.headers["x-polyroute-model"] == "last-resort-local"
        assert raw.headers["x-polyroute-attempts"] == attempts
    sse = stream(live, "last-resort")
    assert sse.done and sse.text == ANSWER and sse.headers["x-polyroute-model"] == "last-resort-local"


def test_access_log_lists_every_attempt(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.access")
    sse = stream(live, "log")
    assert sse.done and sse.text == ANSWER
    wait_until(lambda: "route=log " in caplog.text, what="the access log line")
    line = next(r.getMessage() for r in caplog.records if "route=log " in r.getMessage())
    assert "attempts=2" in line and "log-b0/log-0:stream_cut:" in line and "log-b1/log-1:ok:" in line


def test_no_stream_ever_ends_in_done_unless_the_answer_is_whole(live: Live) -> None:
    """Every pair of faults, first and second candidate: a [DONE] always follows the whole answer."""
    pairs = list(itertools.product(range(len(ANY_FAULT)), repeat=2))
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=16)) as client, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda p: (p, stream(live, f"pair-{p[0]}-{p[1]}", client)), pairs))
    for (i, j), sse in results:
        a, b = ANY_FAULT[i], ANY_FAULT[j]
        if sse.done:
            assert sse.text == ANSWER, (a, b, sse.text)
            assert sse.error is None
        else:
            assert sse.error is not None, (a, b, sse.events[-1:])
        healthy = {"ok", "nousage"}
        if a in healthy or (b in healthy and not a.startswith("tools")):
            assert sse.done, (a, b)  # a healthy candidate that can take over always gives the answer
