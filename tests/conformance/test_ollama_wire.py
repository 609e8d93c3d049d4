"""What only the Ollama adapter translates: options, format, images, tool turns, thinking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyroute.adapters import Adapter
from polyroute.errors import UpstreamRejected
from tests.conformance.helpers import ANSWER, WEATHER_TOOL, call, collect, content, finishes
from tests.conformance.providers import OLLAMA_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def provider() -> Provider:
    return OLLAMA_PROVIDER


async def test_messages_options_and_tools(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("ollama", "completion"))
    fn = {"name": "get_weather", "arguments": '{"location": "Paris"}'}
    tool_call = {"id": "call_7", "type": "function", "function": fn}
    messages = [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_7", "content": "18C"},
    ]
    await adapter.complete(call(
        messages=messages, tools=[WEATHER_TOOL], temperature=0.3, top_p=0.8, seed=42, stop="END",
        max_completion_tokens=64, keep_alive="10m",
    ))
    body = upstream.received[0].json()
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather here?", "images": [PNG]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"index": 0, "name": "get_weather", "arguments": {"location": "Paris"}}},
        ]},
        # Ollama matches a result to its call by the tool's name, not by an id.
        {"role": "tool", "content": "18C", "tool_name": "get_weather"},
    ]
    assert body["options"] == {"temperature": 0.3, "top_p": 0.8, "seed": 42, "stop": ["END"], "num_predict": 64}
    assert body["tools"] == [WEATHER_TOOL]
    assert body["stream"] is False
    assert body["keep_alive"] == "10m"
    assert "tool_choice" not in adapter.supports


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}, {"type": "object"}),
        ({"type": "text"}, None),
    ],
    ids=["json_object", "json_schema", "text"],
)
async def test_response_format_becomes_format(
    upstream: FakeUpstream, adapter: Adapter, response_format: dict[str, Any], expected: Any
) -> None:
    upstream.json(load("ollama", "completion"))
    await adapter.complete(call(response_format=response_format))
    assert upstream.received[0].json().get("format") == expected


async def test_image_urls_are_refused_before_sending(upstream: FakeUpstream, adapter: Adapter) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]
    with pytest.raises(UpstreamRejected, match="base64"):
        await adapter.complete(call(messages=messages))
    assert upstream.received == []


async def test_every_tool_call_gets_its_own_id(upstream: FakeUpstream, adapter: Adapter) -> None:
    doc = load("ollama", "tool_call")
    first = doc["message"]["tool_calls"][0]
    doc["message"]["tool_calls"] = [first, {"function": {"name": "get_weather", "arguments": {"location": "Oslo"}}}]
    upstream.json(doc)
    calls = (await adapter.complete(call(tools=[WEATHER_TOOL])))["choices"][0]["message"]["tool_calls"]
    assert len({c["id"] for c in calls}) == 2
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"location": "Paris"}, {"location": "Oslo"}]

    record, done = load("ollama", "tool_call_stream")
    upstream.stream([{**record, "message": doc["message"]}, done])
    chunks = await collect(adapter, call(stream=True, tools=[WEATHER_TOOL]))
    deltas = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert [d["index"] for d in deltas] == [0, 1]
    assert finishes(chunks) == ["tool_calls"]


async def test_thinking_becomes_reasoning_content(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(load("ollama", "thinking_stream"))
    chunks = await collect(adapter, call(stream=True, think=True))
    reasoning = "".join(ch["delta"].get("reasoning_content") or "" for c in chunks for ch in c["choices"])
    assert reasoning == "The user greets me. A short greeting back fits."
    assert content(chunks) == ANSWER
    assert upstream.received[0].json()["think"] is True


async def test_done_reason_length_is_finish_length(upstream: FakeUpstream, adapter: Adapter) -> None:
    doc = load("ollama", "completion")
    doc["done_reason"] = "length"
    upstream.json(doc)
    resp = await adapter.complete(call(max_tokens=9))
    assert resp["choices"][0]["finish_reason"] == "length"


async def test_continuation_returns_the_whole_answer(upstream: FakeUpstream, adapter: Adapter) -> None:
    # Ollama answers a trailing assistant turn with only what comes after it.
    doc = load("ollama", "completion")
    doc["message"]["content"] = " can I help you today?"
    upstream.json(doc)
    resp = await adapter.complete(call(prefix="Hello! How"))
    assert resp["choices"][0]["message"]["content"] == ANSWER
    assert upstream.received[0].json()["messages"][-1] == {"role": "assistant", "content": "Hello! How"}
