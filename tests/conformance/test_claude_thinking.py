"""Claude's signed thinking through OpenAI's format and back: ``reasoning_details`` out, thinking blocks in.

A tool-use turn with thinking must come back with its thinking blocks complete, signature and all, or Claude
refuses the next request; the fixtures are shaped as Anthropic documents such turns
(``tests/fixtures/anthropic/thinking_tool_use.json``, ``thinking_omitted_stream.sse``).
"""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.adapters import Adapter
from polyroute.assemble import Assembly
from tests.conformance.helpers import WEATHER_TOOL, as_sdk_reads, call, collect
from tests.conformance.providers import ANTHROPIC_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

SIGNED = load("anthropic", "thinking_tool_use")


@pytest.fixture
def provider() -> Provider:
    return ANTHROPIC_PROVIDER


def omitted_stream() -> list[dict[str, Any]]:
    """The .sse fixture's events as the fake upstream sends named events (each event's name is its type)."""
    return [{"event": e["type"], "data": e} for e in load("anthropic", "thinking_omitted_stream")]


def second_turn(assistant: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        assistant,
        {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "18C, sunny"},
    ]


async def test_a_whole_answer_carries_each_thinking_block_signed_and_in_order(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(SIGNED)
    message = (await adapter.complete(call(tools=[WEATHER_TOOL])))["choices"][0]["message"]
    thinking, redacted = SIGNED["content"][0], SIGNED["content"][1]
    assert message["reasoning_details"] == [
        {"type": "reasoning.text", "text": thinking["thinking"], "signature": thinking["signature"],
         "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": redacted["data"], "format": "anthropic-claude-v1", "index": 1},
    ]
    assert message["reasoning_content"] == thinking["thinking"]
    assert message["tool_calls"][0]["id"] == "toolu_01ParisWeather7"


async def test_the_turn_sent_back_is_the_turn_claude_wrote(upstream: FakeUpstream, adapter: Adapter) -> None:
    """The whole round trip: the answer as a client got it goes back as the same content blocks, in order."""
    upstream.json(SIGNED)
    message = dict((await adapter.complete(call(tools=[WEATHER_TOOL])))["choices"][0]["message"])
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(messages=second_turn(message), tools=[WEATHER_TOOL]))
    sent = upstream.received[1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": SIGNED["content"]}
    assert sent[2]["content"][0]["type"] == "tool_result"


async def test_an_empty_thinking_block_streams_as_one_signed_entry_the_sdk_joins(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    """Opus 5.5 omits its thinking text by default: the block still goes back, empty, with its signature."""
    upstream.stream(omitted_stream())
    chunks = await collect(adapter, call(stream=True, tools=[WEATHER_TOOL]))
    message = as_sdk_reads(chunks)
    signature = "EqMCCkgIChABGAIqQK7xVb3nTz0pYc5mHsL2dQ9rWf4eUa8gJkXiO1tPy6vBNwZ3Ch"
    assert message["reasoning_details"] == [
        {"type": "reasoning.text", "format": "anthropic-claude-v1", "text": "", "index": 0, "signature": signature}]
    assert chunks[0]["input_transformations"] == [
        {"type": "thinking_dropped", "path": "messages.1.content.0", "reason": "model_binding_mismatch"}]
    # The gateway's own joining (a non-streamed request answered by a stream) reads it the same way.
    assembly = Assembly()
    for chunk in chunks:
        assembly.add(chunk)
    whole = assembly.response()
    assert whole["choices"][0]["message"]["reasoning_details"] == message["reasoning_details"]
    assert whole["input_transformations"] == chunks[0]["input_transformations"]
    # Sent back, it is the block Claude streamed: empty text, the signature.
    message["tool_calls"][0].pop("index")
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(messages=second_turn(message), tools=[WEATHER_TOOL]))
    sent = upstream.received[1].json()["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "", "signature": signature}
    assert sent[1] == {"type": "tool_use", "id": "toolu_01OsloWeather3", "name": "get_weather",
                       "input": {"location": "Oslo"}}


async def test_a_streamed_thinking_block_joins_to_the_whole_answer_s(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(load("anthropic", "thinking_stream"))
    streamed = as_sdk_reads(await collect(adapter, call(stream=True)))
    upstream.json(load("anthropic", "thinking"))
    whole = (await adapter.complete(call()))["choices"][0]["message"]
    assert streamed["reasoning_details"] == whole["reasoning_details"]
    assert streamed["reasoning_details"][0]["signature"] == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


def turn(details: list[Any], field: str = "reasoning_details", text: str = "Checking.") -> dict[str, Any]:
    return {"role": "assistant", "content": text, field: details}


def signed(n: int) -> dict[str, Any]:
    return {"type": "reasoning.text", "text": f"step {n}", "signature": f"sig-{n}", "format": "anthropic-claude-v1",
            "index": 0}


async def sent_turns(upstream: FakeUpstream, adapter: Adapter, messages: list[dict[str, Any]]) -> list[list[Any]]:
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(messages=messages))
    return [m["content"] for m in upstream.received[-1].json()["messages"] if m["role"] == "assistant"]


async def test_litellm_s_thinking_blocks_are_read_too(upstream: FakeUpstream, adapter: Adapter) -> None:
    blocks = [{"type": "thinking", "thinking": "hm", "signature": "sig-a"}, {"type": "redacted_thinking", "data": "xx"}]
    turns = await sent_turns(upstream, adapter, [{"role": "user", "content": "Hi"}, turn(blocks, "thinking_blocks"),
                                                 {"role": "user", "content": "And?"}])
    assert turns == [[*blocks, {"type": "text", "text": "Checking."}]]


async def test_blocks_that_cannot_go_back_leave_no_gap_between_those_that_do(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    """Unsigned (a stream cut inside the block) or another model's: dropped from the start freely; after a kept
    block, the first unsigned one ends every block after it, in later turns too."""
    unsigned = {"type": "reasoning.text", "text": "cut", "format": "anthropic-claude-v1", "index": 0}
    foreign = {"type": "reasoning.text", "text": "gemini", "signature": "g", "format": "google-gemini-v1", "index": 0}
    messages = [
        {"role": "user", "content": "1"}, turn([unsigned, foreign, signed(1)]),
        {"role": "user", "content": "2"}, turn([signed(2), unsigned, signed(3)]),
        {"role": "user", "content": "3"}, turn([signed(4)]),
        {"role": "user", "content": "4"},
    ]
    turns = await sent_turns(upstream, adapter, messages)
    kinds = [[b.get("thinking", b["type"]) for b in t] for t in turns]
    assert kinds == [["step 1", "text"], ["step 2", "text"], ["text"]]


async def test_an_openai_compatible_upstream_is_not_sent_claude_s_fields(upstreams: dict[str, FakeUpstream]) -> None:
    """Mistral, Groq and Cerebras refuse a message field they do not know; OpenRouter takes reasoning_details back."""
    from polyroute.adapters import build_adapter
    from tests.conformance.providers import PROVIDERS

    by_name = {p.name: p for p in PROVIDERS}
    messages = [{"role": "user", "content": "1"}, turn([signed(1)]), {"role": "user", "content": "2"}]
    for name, kept in (("openai", False), ("openrouter", True)):
        up = upstreams[name]
        up.reset()
        up.json(load(name, "completion"))
        built = build_adapter(f"{name}-test", by_name[name].config(up.url))
        try:
            await built.complete(call(messages=messages))
        finally:
            await built.aclose()
        sent = up.received[0].json()["messages"][1]
        assert ("reasoning_details" in sent) is kept, name
        assert sent["content"] == "Checking."


async def test_a_turn_of_thinking_alone_is_not_sent_and_leaves_no_gap(upstream: FakeUpstream, adapter: Adapter) -> None:
    """An answer cut while thinking has no text and no tool call: Claude is not sent a turn of thinking alone, and
    the blocks after it go too, since keeping them would leave a gap."""
    messages = [
        {"role": "user", "content": "1"}, turn([signed(1)]),
        {"role": "user", "content": "2"}, turn([signed(2)], text=""),
        {"role": "user", "content": "3"}, turn([signed(3)]),
        {"role": "user", "content": "4"},
    ]
    turns = await sent_turns(upstream, adapter, messages)
    assert [[b.get("thinking", b["type"]) for b in t] for t in turns] == [["step 1", "text"], ["text"]]
