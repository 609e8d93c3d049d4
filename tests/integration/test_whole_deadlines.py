"""Non-streamed requests under the stream deadlines: streamed from the upstream and assembled.

The backends' ``answer_timeout`` is a minute here and the route's deadlines half a
second, so an answer that comes at all within a few seconds shows which one applied.
Every backend is on loopback and assembles by default, as every HTTP backend does; the
``direct`` ones say ``assemble_from_stream = false`` and make the direct call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.faults import Fleet, upstream
from tests.support.fault_upstream import ANSWER, FaultUpstream
from tests.support.live import Live
from tests.support.wait import wait_until

FIRST_TOKEN = 0.5
STALL = 0.5
ANSWER_TIMEOUT = 60.0
# Far above the route's deadlines, far below answer_timeout: generous for a busy machine.
MUCH_LESS = ANSWER_TIMEOUT / 4
LONG = 600_000  # ms: an upstream that does not answer while the test runs

ROUTE = {"first_token_timeout": FIRST_TOKEN, "stall_timeout": STALL, "deadline": 120.0}
SLOW_BACKEND = {"timeout": ANSWER_TIMEOUT, "answer_timeout": ANSWER_TIMEOUT, "connect_timeout": 5.0}


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    fleet = Fleet(up)
    fleet.route("hung", f"slowheaders-{LONG}", "ok", **ROUTE)
    fleet.route("silent-body", f"slowfirst-{LONG}", "ok", **ROUTE)
    fleet.route("stalled", "stall-3", "ok", **ROUTE)
    fleet.route("cut", "cut-3", "ok", **ROUTE)
    fleet.route("cut-nousage", "cut-3", "ok+nousage", **ROUTE)
    fleet.route("plain", "ok", **ROUTE)
    fleet.route("tools", "tools", **ROUTE)
    fleet.route("tools-cut", "tools+cut-2", "tools", **ROUTE)
    fleet.route("no-continuation", "cut-3", "ok", continuation="none", **ROUTE)
    fleet.route("direct", "ok", **ROUTE)
    fleet.route("direct-hung", "slowheaders-3000", "ok", **ROUTE)
    for name, backend in fleet.backends.items():
        backend.update(SLOW_BACKEND)
        if name.startswith("direct"):
            backend["assemble_from_stream"] = False
    fleet.backends["direct-hung-b0"]["answer_timeout"] = 1.0
    with fleet.serve() as g:
        yield g


@pytest.fixture(scope="module")
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0, timeout=ANSWER_TIMEOUT * 2)


def ask() -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": "Spell the NATO alphabet"}]


@pytest.mark.parametrize(("route", "fault"), [
    ("hung", f"slowheaders-{LONG}"),  # accepts the request and sends nothing
    ("silent-body", f"slowfirst-{LONG}"),  # sends its headers and an empty role chunk, then nothing
])
def test_a_hung_upstream_fails_over_within_the_first_token_deadline(
    route: str, fault: str, client: openai.OpenAI, up: FaultUpstream
) -> None:
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=route, messages=ask())
    took = time.monotonic() - started
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-polyroute-attempts"] == "2"
    first, second = raw.headers["x-polyroute-attempt-log"].split("; ")
    assert first.startswith(f"{route}-b0/{route}-0 timeout") and second.startswith(f"{route}-b1/{route}-1 ok")
    assert took < MUCH_LESS  # the route's first-token deadline applied, not the backend's answer_timeout
    hung = upstream(route, 0, fault)
    wait_until(lambda: any(h.model == hung for h in up.hangups), what="the gateway to let go of the hung upstream")


@pytest.mark.parametrize("route", ["stalled", "cut"])
def test_an_answer_cut_part_way_is_rescued(route: str, client: openai.OpenAI, up: FaultUpstream) -> None:
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=route, messages=ask())
    took = time.monotonic() - started
    resp = raw.parse()
    assert resp.choices[0].message.content == ANSWER
    assert resp.choices[0].finish_reason == "stop"
    assert raw.headers["x-polyroute-attempts"] == "2"
    assert took < MUCH_LESS
    # The second candidate continued the first's three words, and was asked for the rest only.
    (hit,) = up.of(upstream(route, 1, "ok"))
    assert hit.stream and hit.prefix == "Alpha bravo charlie"
    # Both attempts are billed: the first's three words (estimated) and the continuation's own usage.
    usage = resp.usage
    assert usage is not None
    continuation_completion = len(ANSWER.split()) - 3
    assert usage.completion_tokens > continuation_completion
    assert usage.prompt_tokens > 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert float(raw.headers["x-polyroute-cost-usd"]) >= 0


def test_a_plain_answer_is_assembled_as_the_upstream_would_send_it(client: openai.OpenAI, up: FaultUpstream) -> None:
    assembled = client.chat.completions.with_raw_response.create(model="plain", messages=ask())
    direct = client.chat.completions.with_raw_response.create(model="direct", messages=ask())
    (streamed,) = up.of(upstream("plain", 0, "ok"))
    (whole,) = up.of(upstream("direct", 0, "ok"))
    assert streamed.stream and not whole.stream  # a local server keeps the direct call
    a, d = assembled.parse(), direct.parse()
    assert a.object == "chat.completion" and a.id == "chatcmpl-fault" and a.model == "plain-0"
    assert a.usage is not None and (a.usage.prompt_tokens, a.usage.completion_tokens) == (10, 8)
    assert a.model_dump(exclude={"created", "model"}) == d.model_dump(exclude={"created", "model"})
    assert assembled.headers["x-polyroute-attempts"] == "1"


def test_tool_calls_are_assembled_from_their_deltas(live: Live) -> None:
    body: dict[str, Any] = {"model": "tools", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    resp = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=ANSWER_TIMEOUT)
    assert resp.status_code == 200
    doc = resp.json()
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_fault", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert doc["usage"] == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cost_usd": 0.0}


def test_the_sdk_reads_assembled_tool_calls(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="tools", messages=ask())
    calls = resp.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert calls[0].function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]


def test_a_backend_that_does_not_assemble_is_bounded_by_its_answer_timeout(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="direct-hung", messages=ask())
    assert raw.parse().choices[0].message.content == ANSWER
    first = raw.headers["x-polyroute-attempt-log"].split("; ")[0]
    assert first.startswith("direct-hung-b0/direct-hung-0 timeout")


def test_every_http_backend_assembles_unless_told_not_to(live: Live) -> None:
    adapters = live.gateway.fleet.adapters
    assert adapters["hung-b0"].assembles  # on loopback, by default
    assert not adapters["direct-b0"].assembles  # assemble_from_stream = false: the direct call


@pytest.mark.parametrize(("route", "first", "second"), [
    ("tools-cut", "tools+cut-2", "tools"),  # cut inside a tool call: it cannot be continued
    ("no-continuation", "cut-3", "ok"),  # no candidate can continue a partial answer
])
def test_an_answer_that_cannot_be_continued_starts_afresh(
    route: str, first: str, second: str, live: Live, up: FaultUpstream
) -> None:
    body: dict[str, Any] = {"model": route, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    resp = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=ANSWER_TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-polyroute-attempts"] == "2"
    assert resp.headers["x-polyroute-attempt-log"].split("; ")[0].startswith(f"{route}-b0/{route}-0 stream_cut")
    message = resp.json()["choices"][0]["message"]
    if first.startswith("tools"):
        assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"city": "Paris"}']
    else:
        assert message["content"] == ANSWER  # the cut words are not there twice
    (hit,) = up.of(upstream(route, 1, second))
    assert hit.prefix is None  # asked for the whole answer, not a continuation


def test_a_rescued_answer_has_usage_when_no_attempt_reported_any(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="cut-nousage", messages=ask())
    resp = raw.parse()
    assert resp.choices[0].message.content == ANSWER
    assert resp.usage is not None and resp.usage.completion_tokens > 0  # estimated for both attempts
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
