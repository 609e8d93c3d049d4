"""Whole answers over backends that assemble from a stream and backends that answer directly, mixed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from polyroute.adapters import Call
from polyroute.adapters.fake import FakeAdapter
from polyroute.errors import AllAttemptsFailed, UpstreamRejected
from polyroute.gateway import RequestContext
from polyroute.types import ChatChunk
from tests.unit.failover_support import gateway, request

pytestmark = pytest.mark.anyio

LIMITS = {"first_token_timeout": 0.5, "stall_timeout": 0.5, "deadline": 30.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def raw(*models: tuple[str, str, bool]) -> dict[str, Any]:
    """Route ``r`` over fake models (name, upstream behaviour, whether its backend assembles)."""
    return {
        "backends": {f"b-{name}": {"type": "fake", "assemble_from_stream": assembles, "answer_timeout": 30.0}
                     for name, _, assembles in models},
        "models": {name: {"backend": f"b-{name}", "upstream": up} for name, up, _ in models},
        "routes": {"r": {"models": [name for name, _, _ in models], **LIMITS}},
    }


async def test_a_stalled_answer_is_continued_by_a_backend_that_answers_directly() -> None:
    gw = gateway(raw(("a", "stall-2", True), ("b", "echo", False)))
    resp, report = await gw.complete(request(), RequestContext())
    # The direct answer repeats the prefix it was given; the client reads it once.
    assert resp["choices"][0]["message"]["content"] == "You said: one two three"
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert [a.outcome for a in report.attempts] == ["stream_cut", "ok"]
    assert report.rescued and report.estimated
    assert resp["model"] == "b"
    usage = resp.get("usage")
    assert usage is not None and usage["total_tokens"] == report.usage["total_tokens"]


async def test_a_slow_first_token_moves_on_and_a_direct_backend_answers_whole() -> None:
    gw = gateway(raw(("a", "slow-5000", True), ("b", "text-fine-thanks", False)))
    resp, report = await gw.complete(request(), RequestContext())
    assert resp["choices"][0]["message"] == {"role": "assistant", "content": "fine thanks"}
    assert [a.outcome for a in report.attempts] == ["timeout", "ok"]
    assert not report.rescued


async def test_tool_calls_of_a_direct_backend_survive_the_walk() -> None:
    gw = gateway(raw(("a", "error-503", True), ("b", "tools", False)))
    req = request(tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    resp, _ = await gw.complete(req, RequestContext())
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": "{}"}
    assert call["id"].startswith("call_") and "index" not in call


async def test_a_route_of_direct_backends_keeps_the_direct_call() -> None:
    gw = gateway(raw(("a", "slow-1000", False), ("b", "echo", False)))
    resp, report = await gw.complete(request(), RequestContext())
    # answer_timeout (30 s) bounds a direct call, not first_token_timeout (0.5 s): the slow one answers.
    assert resp["model"] == "a" and [a.outcome for a in report.attempts] == ["ok"]


class RefusesToStream(FakeAdapter):
    """A model that answers whole but answers 400 to ``stream: true`` (or to ``stream_options``)."""

    streamed = 0
    why = "this model does not support streaming"

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        self.streamed += 1
        raise UpstreamRejected(self.why, backend=self.name, model=call.upstream_model, upstream_status=400)
        yield  # an async generator, as every adapter's stream is


def refusing(raw_config: dict[str, Any], backend: str, why: str | None = None) -> tuple[Any, RefusesToStream]:
    gw = gateway(raw_config)
    adapter = RefusesToStream(backend, gw.fleet.adapters[backend].config)
    if why is not None:
        adapter.why = why
    gw.fleet.adapters[backend] = adapter
    return gw, adapter


async def test_a_model_that_refuses_to_stream_is_asked_for_a_whole_answer() -> None:
    gw, adapter = refusing(raw(("a", "text-whole-anyway", True), ("b", "echo", True)), "b-a")
    resp, report = await gw.complete(request(), RequestContext())
    assert adapter.streamed == 1 and adapter.calls == 1  # one refused stream, then one direct call
    assert resp["choices"][0]["message"]["content"] == "whole anyway"
    assert resp["model"] == "a" and [a.outcome for a in report.attempts] == ["ok"]


@pytest.mark.parametrize("why", [
    "Unsupported value: 'stream' does not support true with this model.",  # OpenAI's words, param "stream"
    "Unrecognized request argument supplied: stream_options",
])
async def test_a_400_about_streaming_is_retried_whole(why: str) -> None:
    gw, adapter = refusing(raw(("a", "text-whole-anyway", True),), "b-a", why)
    resp, _ = await gw.complete(request(), RequestContext())
    assert adapter.streamed == 1 and adapter.calls == 1
    assert resp["choices"][0]["message"]["content"] == "whole anyway"


async def test_a_400_about_the_request_is_not_sent_again_whole() -> None:
    gw, adapter = refusing(raw(("a", "text-whole-anyway", True),), "b-a", "messages: the list is empty")
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.status == 400
    assert adapter.streamed == 1 and adapter.calls == 0  # the same request is not sent again


async def test_the_clients_own_400_is_still_a_400() -> None:
    gw, adapter = refusing(raw(("a", "error-400", True), ("b", "echo", True)), "b-a")
    with pytest.raises(AllAttemptsFailed) as info:
        await gw.complete(request(), RequestContext())
    assert info.value.status == 400 and [a.model for a in info.value.attempts] == ["a"]
    assert adapter.streamed == 1 and adapter.calls == 1


async def test_a_hedged_whole_answer_is_the_first_one_to_start() -> None:
    config = raw(("a", "slow-5000", True), ("b", "text-hedged", True))
    config["routes"]["r"]["hedge_after"] = 0.05
    gw = gateway(config)
    resp, report = await gw.complete(request(), RequestContext())
    assert resp["choices"][0]["message"]["content"] == "hedged" and resp["model"] == "b"
    assert sorted(a.outcome for a in report.attempts) == ["cancelled", "ok"]


@pytest.mark.parametrize("max_tokens", [2, 50])
async def test_the_fake_backend_ends_a_stream_as_its_whole_answer_ends(max_tokens: int) -> None:
    """Cut at max_tokens it says ``length`` streamed or not; a whole answer within the limit says ``stop``."""
    from polyroute.config import FakeBackend
    from polyroute.types import ChatRequest

    fake = FakeAdapter("f", FakeBackend(type="fake"))
    req = ChatRequest.from_json({"model": "m", "max_tokens": max_tokens,
                                 "messages": [{"role": "user", "content": "one two three four five"}]})
    whole = await fake.complete(Call(req, "echo"))
    streamed = [c["choices"][0]["finish_reason"] async for c in fake.stream(Call(req, "echo")) if c["choices"]]
    assert whole["choices"][0]["finish_reason"] == streamed[-1] == ("length" if max_tokens == 2 else "stop")
