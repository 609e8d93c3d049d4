"""The Messages API in front of Claude and of another model: a tool loop with signed thinking, read by the
``anthropic`` SDK, gives Claude its thinking blocks back as it wrote them, whole or streamed; the other model
gets the history without them."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

WEATHER: Any = {"name": "get_weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
ASK: Any = {"role": "user", "content": "Weather in Paris?"}
SIGNED = load("anthropic", "thinking_tool_use")


def config(claude: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"},
                   "other": {"backend": "other", "upstream": "other-model"}},
        "routes": {"agent": {"models": ["sonnet", "other"]}},
    }


def then_tool_result(message: anthropic.types.Message) -> list[Any]:
    call = next(b for b in message.content if b.type == "tool_use")
    return [ASK, {"role": "assistant", "content": message.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]


def test_claudes_thinking_reaches_the_client_and_goes_back_as_it_came(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        first = client.messages.create(model="agent", max_tokens=1024, messages=[ASK], tools=[WEATHER],
                                       thinking={"type": "enabled", "budget_tokens": 4000})
        assert [b.model_dump(exclude_none=True) for b in first.content] == SIGNED["content"]
        assert first.stop_reason == "tool_use"
        second = client.messages.create(model="agent", max_tokens=1024, messages=then_tool_result(first),
                                        tools=[WEATHER])
    assert second.content and second.content[0].type == "text"
    sent = claude.received[1].json()
    assert sent["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "toolu_01ParisWeather7"
    assert fallback.received == []


def test_a_streamed_turn_goes_back_signed(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.stream([{"event": e["type"], "data": e} for e in load("anthropic", "thinking_omitted_stream")])
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        with client.messages.stream(model="agent", max_tokens=1024, messages=[ASK], tools=[WEATHER]) as s:
            final = s.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "tool_use"]
        client.messages.create(model="agent", max_tokens=1024, messages=then_tool_result(final), tools=[WEATHER])
    blocks = claude.received[1].json()["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    assert blocks[0]["thinking"] == "" and blocks[0]["signature"].startswith("EqMCCkgI")
    assert blocks[1]["input"] == {"location": "Oslo"}


def test_the_other_model_gets_the_history_without_claudes_thinking(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    fallback.json(load("openai", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        first = client.messages.create(model="agent", max_tokens=1024, messages=[ASK], tools=[WEATHER])
        raw = client.messages.with_raw_response.create(model="agent", max_tokens=1024,
                                                       messages=then_tool_result(first), tools=[WEATHER])
    assert raw.headers["x-polyroute-model"] == "other" and raw.parse().content[0].type == "text"
    sent = fallback.received[0].json()
    turn = sent["messages"][1]
    assert "reasoning_details" not in turn and turn["tool_calls"][0]["id"] == "toolu_01ParisWeather7"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "toolu_01ParisWeather7", "content": "18C"}
    assert sent["max_tokens"] == 1024 or sent.get("max_completion_tokens") == 1024
