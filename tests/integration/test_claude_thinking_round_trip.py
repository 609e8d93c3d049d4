"""A tool-use loop with Claude's thinking on, through a real gateway and OpenAI's Python SDK.

The application does what OpenAI's docs tell it to: append the assistant message it got, then the tool's
result. Claude must get that turn back with its thinking blocks as it wrote them (signature included), streamed
or not; the OpenAI-compatible fallback must not get Claude's fields; Claude's own 400 about a thinking block is
the client's to read, not hidden behind a fallback's answer.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
ASK = {"role": "user", "content": "Weather in Paris?"}
SIGNED = load("anthropic", "thinking_tool_use")



def config(claude: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"},
                   "other": {"backend": "other", "upstream": "other-model"}},
        "routes": {"agent": {"models": ["sonnet", "other"]}},
    }


def then_tool_result(message: Any) -> list[dict[str, Any]]:
    turn = message.model_dump(exclude_none=True)  # what an application appends to its history
    return [ASK, turn, {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "18C"}]


def test_the_sdk_s_history_gives_claude_its_thinking_blocks_back(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER])  # type: ignore[list-item]
        second = client.chat.completions.create(model="agent", messages=then_tool_result(first.choices[0].message),
                                                tools=[WEATHER])  # type: ignore[list-item]
    assert second.choices[0].message.content
    sent = claude.received[1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": SIGNED["content"]}
    assert fallback.received == []


def test_a_streamed_turn_read_by_the_sdk_goes_back_signed(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.stream([{"event": e["type"], "data": e} for e in load("anthropic", "thinking_omitted_stream")])
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with client.chat.completions.stream(model="agent", messages=[ASK], tools=[WEATHER]) as s:  # type: ignore[list-item]
            final = s.get_final_completion()
        client.chat.completions.create(model="agent", messages=then_tool_result(final.choices[0].message),
                                       tools=[WEATHER])  # type: ignore[list-item]
    blocks = claude.received[1].json()["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    assert blocks[0]["thinking"] == "" and blocks[0]["signature"].startswith("EqMCCkgI")


def test_the_fallback_gets_the_history_without_claude_s_fields(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    fallback.json(load("openai", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER])  # type: ignore[list-item]
        raw = client.chat.completions.with_raw_response.create(
            model="agent", messages=then_tool_result(first.choices[0].message), tools=[WEATHER])  # type: ignore[list-item]
    assert raw.headers["x-polyroute-model"] == "other"
    turn = fallback.received[0].json()["messages"][1]
    assert "reasoning_details" not in turn and turn["tool_calls"][0]["id"] == "toolu_01ParisWeather7"


def test_claude_s_400_about_a_thinking_block_reaches_the_client(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    doc = load("anthropic", "errors/400_thinking_bound_to_another_conversation")
    claude.json(doc["body"], doc["status"])
    history = [ASK, {"role": "assistant", "content": "Checking.", "reasoning_details": [
        {"type": "reasoning.text", "text": "t", "signature": "s", "format": "anthropic-claude-v1", "index": 0}]},
        {"role": "user", "content": "And Oslo?"}]
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="agent", messages=history)  # type: ignore[arg-type]
    assert "bound to a different conversation" in caught.value.message
    assert fallback.received == []
