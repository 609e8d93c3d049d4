"""Every adapter: a stream assembled into one answer reads as the whole answer the same provider sends.

The fixtures pair a whole answer with the stream of the same answer (``completion`` with
``stream``, ``tool_call`` with ``tool_call_stream``), so what a client of a non-streamed
request reads is the same whether the gateway asked the upstream for it whole or streamed.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from polyroute.adapters import Adapter
from polyroute.assemble import Assembly
from polyroute.types import ChatResponse
from tests.conformance.helpers import WEATHER_TOOL, call, collect, fixture
from tests.conformance.providers import ANTHROPIC_PROVIDER, Provider
from tests.support.upstreams import OLLAMA, FakeUpstream, has_fixture, load

pytestmark = pytest.mark.anyio


async def assembled(adapter: Adapter, **fields: Any) -> dict[str, Any]:
    assembly = Assembly()
    for chunk in await collect(adapter, call(stream=True, **fields)):
        assembly.add(chunk)
    return cast(dict[str, Any], assembly.response())


def core(resp: ChatResponse | dict[str, Any]) -> dict[str, Any]:
    """What must agree: the message (tool-call arguments as objects), the finish reason, the token counts."""
    choice = resp["choices"][0]
    message = dict(choice["message"])
    calls = [{"type": c["type"], "name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
             for c in message.pop("tool_calls", None) or []]
    usage = resp.get("usage") or {}
    return {
        "object": resp["object"],
        "role": message["role"],
        "content": message.get("content") or None,
        "reasoning": message.get("reasoning_content"),
        "tool_calls": calls,
        "finish_reason": choice["finish_reason"],
        "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }


async def test_an_assembled_answer_is_the_whole_answer(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.json(fixture(provider.name, "completion"))
    whole = await adapter.complete(call())
    # A provider whose documented whole answer carries reasoning pairs it with its reasoning stream.
    reasoned = core(whole)["reasoning"] and has_fixture(provider.name, "reasoning_stream")
    paired = "reasoning_stream" if reasoned else "stream"
    upstream.stream(fixture(provider.name, paired))
    assert core(await assembled(adapter)) == core(whole)


async def test_a_whole_answer_sent_to_a_stream_request_is_read_as_its_chunks(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    """Some servers ignore ``stream: true`` and answer with one JSON body: the answer is not lost."""
    if provider.wire is OLLAMA:
        pytest.skip("Ollama streams NDJSON, which has no separate whole-answer content type")
    upstream.json(fixture(provider.name, "completion"))
    whole = await adapter.complete(call())
    upstream.json(fixture(provider.name, "completion"))  # the same body, to the streamed request
    chunks = await collect(adapter, call(stream=True))
    assert upstream.received[-1].json()["stream"] is True
    assert len(chunks) >= 1
    assembly = Assembly()
    for chunk in chunks:
        assembly.add(chunk)
    assert core(cast(dict[str, Any], assembly.response())) == core(whole)


async def test_an_assembled_tool_call_is_the_whole_tool_call(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.json(fixture(provider.name, "tool_call"))
    whole = await adapter.complete(call(tools=[WEATHER_TOOL]))
    upstream.stream(fixture(provider.name, "tool_call_stream"))
    got = core(await assembled(adapter, tools=[WEATHER_TOOL]))
    assert got == core(whole) and got["tool_calls"]


@pytest.mark.parametrize("provider", [ANTHROPIC_PROVIDER], ids=str)
async def test_assembled_thinking_is_the_whole_reasoning(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.json(load(provider.name, "thinking"))
    whole = await adapter.complete(call())
    upstream.stream(load(provider.name, "thinking_stream"))
    got = core(await assembled(adapter))
    assert got == core(whole) and got["reasoning"]
