"""reasoning_effort turns Claude's thinking on, through a real gateway: OpenAI's Python SDK asks for an effort and
reads the thinking back as reasoning_content, whole or streamed, and sends the thinking blocks back on the next
turn; a Claude without thinking answers without it, the parameter named; Anthropic's SDK asking for a budget on
/v1/messages reaches Claude as thinking."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ASK: Any = {"role": "user", "content": "Hi"}
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
THINKING = load("anthropic", "thinking")
SIGNED = load("anthropic", "thinking_tool_use")


def config(claude: FakeUpstream, upstream: str) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
        "models": {"claude": {"backend": "claude", "upstream": upstream}},
        "routes": {"agent": {"models": ["claude"]}},
    }


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def test_high_effort_reaches_a_budget_model_as_thinking_and_comes_back_as_reasoning(claude: FakeUpstream) -> None:
    claude.json(THINKING)
    with live_gateway(config(claude, "claude-sonnet-4-5-20250929"), env={"TEST_KEY": "sk-test"}) as g:
        raw = client(g.base_url).chat.completions.with_raw_response.create(
            model="agent", messages=[ASK], reasoning_effort="high", max_tokens=1000)
    answer = raw.parse()
    sent = claude.received[0].json()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 31999} and sent["max_tokens"] == 32999
    assert "reasoning_effort" not in sent
    message = answer.choices[0].message
    assert (message.model_extra or {})["reasoning_content"] == THINKING["content"][0]["thinking"]
    assert message.content == "Hello! How can I help you today?"
    assert "x-polyroute-dropped-params" not in raw.headers
    assert answer.usage is not None and answer.usage.completion_tokens == 9  # thinking billed as Claude counts it


def test_a_streamed_effort_on_an_adaptive_model_streams_its_reasoning(claude: FakeUpstream) -> None:
    claude.stream(load("anthropic", "thinking_stream"))
    with live_gateway(config(claude, "claude-opus-4-6"), env={"TEST_KEY": "sk-test"}) as g:
        stream = client(g.base_url).chat.completions.create(
            model="agent", messages=[ASK], reasoning_effort="xhigh", stream=True)
        reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                            for c in stream if c.choices)
    sent = claude.received[0].json()
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "high"}  # no xhigh on 4.6
    assert reasoning


def test_the_thinking_effort_turned_on_goes_back_signed_on_the_next_turn(claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, "claude-sonnet-4-5-20250929"), env={"TEST_KEY": "sk-test"}) as g:
        sdk = client(g.base_url)
        first = sdk.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER], reasoning_effort="low")
        turn = first.choices[0].message.model_dump(exclude_none=True)
        history = [ASK, turn, {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "18C"}]
        sdk.chat.completions.create(model="agent", messages=history, tools=[WEATHER], reasoning_effort="low")
    second = claude.received[1].json()
    assert second["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 4000}


def test_a_claude_without_thinking_answers_and_the_effort_is_named_dropped(claude: FakeUpstream) -> None:
    claude.json(load("anthropic", "completion"))
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, "claude-3-5-haiku-20241022"), env={"TEST_KEY": "sk-test"}) as g:
        sdk = client(g.base_url)
        for _ in range(2):  # the second is sent without it at once: remembered
            raw = sdk.chat.completions.with_raw_response.create(model="agent", messages=[ASK], reasoning_effort="high")
            assert raw.headers["x-polyroute-dropped-params"] == "reasoning_effort"
            assert raw.parse().choices[0].message.content
    assert len(claude.received) == 2
    assert all("thinking" not in r.json() and "output_config" not in r.json() for r in claude.received)


def test_a_budget_asked_on_the_messages_api_reaches_claude_as_thinking(claude: FakeUpstream) -> None:
    claude.json(THINKING)
    with live_gateway(config(claude, "claude-sonnet-4-5-20250929"), env={"TEST_KEY": "sk-test"}) as g:
        sdk = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        answer = sdk.messages.create(model="agent", max_tokens=16000, messages=[ASK],
                                     thinking={"type": "enabled", "budget_tokens": 8000})
    sent = claude.received[0].json()
    # A route of Claude alone: the client's budget and max_tokens as it wrote them (polyroute.server.messages).
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8000} and sent["max_tokens"] == 16000
    assert [b.type for b in answer.content] == ["thinking", "text"]
    assert answer.content[0].type == "thinking" and answer.content[0].signature == THINKING["content"][0]["signature"]
