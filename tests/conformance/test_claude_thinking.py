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


# A turn in which Claude thought again after some of its text: each block's place is its prefix, so the turn goes
# back with the second thinking block after the text before it, not moved to the front with the first.
INTERLEAVED: dict[str, Any] = {
    **SIGNED,
    "content": [
        {"type": "thinking", "thinking": "Paris first.", "signature": "sig-paris-1"},
        {"type": "text", "text": "Let me look that up."},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgyZ3q7Lk0pXw9vTbA2a"},
        {"type": "thinking", "thinking": "Now the tool.", "signature": "sig-paris-2"},
        {"type": "text", "text": " Calling it now."},
        SIGNED["content"][3],
    ],
}


def as_events(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole answer as Anthropic streams it: each block opened, its pieces, closed (the thinking_stream
    fixture's shape)."""
    def event(doc: dict[str, Any]) -> dict[str, Any]:
        return {"event": doc["type"], "data": doc}

    start = {**answer, "content": [], "stop_reason": None, "usage": {"input_tokens": 412, "output_tokens": 1}}
    out = [event({"type": "message_start", "message": start})]
    for i, block in enumerate(answer["content"]):
        kind = block["type"]
        empty = {"thinking": {"type": "thinking", "thinking": ""}, "text": {"type": "text", "text": ""},
                 "tool_use": {**block, "input": {}}}.get(kind, block)
        out.append(event({"type": "content_block_start", "index": i, "content_block": empty}))
        if kind == "thinking":
            for piece in ({"type": "thinking_delta", "thinking": block["thinking"]},
                          {"type": "signature_delta", "signature": block["signature"]}):
                out.append(event({"type": "content_block_delta", "index": i, "delta": piece}))
        elif kind == "text":
            out.append(event({"type": "content_block_delta", "index": i,
                              "delta": {"type": "text_delta", "text": block["text"]}}))
        elif kind == "tool_use":
            out.append(event({"type": "content_block_delta", "index": i,
                              "delta": {"type": "input_json_delta", "partial_json": '{"location": "Paris"}'}}))
        out.append(event({"type": "content_block_stop", "index": i}))
    out.append(event({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                      "usage": {"output_tokens": 96}}))
    out.append(event({"type": "message_stop"}))
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_after_some_text_goes_back_where_claude_wrote_it(
        upstream: FakeUpstream, adapter: Adapter, stream: bool) -> None:
    if stream:
        upstream.stream(as_events(INTERLEAVED))
        message = as_sdk_reads(await collect(adapter, call(stream=True, tools=[WEATHER_TOOL])))
        message["tool_calls"][0].pop("index")
    else:
        upstream.json(INTERLEAVED)
        message = dict((await adapter.complete(call(tools=[WEATHER_TOOL])))["choices"][0]["message"])
    assert message["content"] == "Let me look that up. Calling it now."
    offsets = [d.get("content_offset", 0) for d in message["reasoning_details"]]
    assert offsets == [0, len("Let me look that up."), len("Let me look that up.")]
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(messages=second_turn(message), tools=[WEATHER_TOOL]))
    sent = upstream.received[-1].json()["messages"][1]
    assert sent == {"role": "assistant", "content": INTERLEAVED["content"]}


async def test_a_client_that_split_the_text_into_parts_gets_the_thinking_first(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    """Offsets count characters of the content string the gateway sent; content sent back as parts is not that
    string, so the blocks open the turn as before, in their order, and nothing of the text is lost or cut."""
    details = [signed(1), {**signed(2), "index": 1, "content_offset": 5}]
    parts = {"role": "assistant", "content": [{"type": "text", "text": "Hello world"}], "reasoning_details": details}
    turns = await sent_turns(upstream, adapter, [{"role": "user", "content": "1"}, parts,
                                                 {"role": "user", "content": "2"}])
    assert [[b.get("thinking", b.get("text")) for b in t] for t in turns] == [["step 1", "step 2", "Hello world"]]
    # An offset past the text (a client that trimmed it) puts the block at its end; a bad one at the start.
    odd = [{**signed(1), "content_offset": "5"}, {**signed(2), "index": 1, "content_offset": 999}]
    turns = await sent_turns(upstream, adapter, [{"role": "user", "content": "1"}, turn(odd, text="Hi."),
                                                 {"role": "user", "content": "2"}])
    assert [[b.get("thinking", b.get("text")) for b in t] for t in turns] == [["step 1", "Hi.", "step 2"]]


async def test_returned_thinking_asks_claude_to_drop_a_block_whose_prefix_changed(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    """A client of OpenAI's format cannot see that Claude binds a thinking block to what came before it: a tool list
    that changed between turns, a trimmed history, or a system message the gateway had to move into the top-level
    system (here: one after an assistant turn, where Claude takes none in place) fails that check, and the request
    would be a 400 ("bound to a different conversation") on every retry. On the models that check, a request that
    sends thinking back asks Claude to drop such a block instead (``drop_block``, with its beta header), as
    Anthropic's fix for that error says; a block that still matches is kept. Nothing changes when no thinking goes
    back, on models that do not check, or when the client chose."""
    reminder = {"role": "system", "content": "Answer in French from now on."}
    late = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1"}, turn([signed(1)]),
            reminder, {"role": "user", "content": "2"}]
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1"}, turn([]),
             reminder, {"role": "user", "content": "2"}]
    asked = [("claude-opus-5-5", late, None), ("claude-opus-5-5", plain, None),
             ("claude-sonnet-4-5", late, None), ("claude-haiku-5-5", late, {"type": "adaptive", "display": "omitted"}),
             ("claude-opus-5-5", late, {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "error"}})]
    for model, messages, thinking in asked:
        upstream.json(load("anthropic", "completion"))
        fields: dict[str, Any] = {"thinking": thinking} if thinking else {}
        await adapter.complete(call(upstream=model, messages=messages, **fields))
    sent = [(r.json(), r.headers) for r in upstream.received]
    assert sent[0][0]["system"] == "Be brief.\n\nAnswer in French from now on."
    assert sent[0][0]["thinking"] == {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "drop_block"}}
    assert sent[0][1]["anthropic-beta"] == "thinking-binding-controls-2026-08-01"
    assert "thinking" not in sent[1][0] and "anthropic-beta" not in sent[1][1]  # no thinking goes back
    assert "thinking" not in sent[2][0]  # Sonnet 4.5 checks no prefix
    assert sent[3][0]["thinking"] == {"type": "adaptive", "display": "omitted",
                                      "block_binding": {"prefix_mismatch_behavior": "drop_block"}}
    assert sent[4][0]["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "error"}  # the client's choice


async def test_a_system_message_stays_in_place_where_claude_takes_it_there(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    """Opus 4.8 and later Opus, Fable and Mythos take ``role: "system"`` in ``messages``, right after a user turn
    (tool results included) and before an assistant turn or at the end: sent there, the instruction changes neither
    the cached prefix nor what earlier thinking was written after, so no block is dropped. Elsewhere, or on a model
    without it, the message goes to the top-level system as before
    (https://platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages)."""
    reminder = {"role": "system", "content": "Answer in French from now on."}
    tool_turn = {"role": "assistant", "content": None, "reasoning_details": [signed(1)],
                 "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]}
    after_tools = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1"}, tool_turn,
                   {"role": "tool", "tool_call_id": "toolu_1", "content": "found"}, reminder]
    after_user = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1"}, turn([signed(1)]),
                  {"role": "user", "content": "2"}, reminder, {"role": "developer", "content": "Use metric units."}]
    asked = [("claude-opus-5-5", after_tools), ("claude-fable-5-1", after_user), ("claude-opus-4-8", after_user),
             ("claude-sonnet-4-5", after_user), ("claude-sonnet-5", after_user)]
    for model, messages in asked:
        upstream.json(load("anthropic", "completion"))
        await adapter.complete(call(upstream=model, messages=messages))
    sent = [r.json() for r in upstream.received]
    assert sent[0]["system"] == "Be brief."
    assert [m["role"] for m in sent[0]["messages"]] == ["user", "assistant", "user", "system"]
    assert sent[0]["messages"][3]["content"] == [{"type": "text", "text": "Answer in French from now on."}]
    assert sent[0]["messages"][1]["content"][0]["signature"] == "sig-1"
    for body in sent[1:3]:
        assert body["system"] == "Be brief."
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "system", "system"]
    for body in sent[3:]:  # no system in messages: moved to the top, as before
        assert body["system"] == "Be brief.\n\nAnswer in French from now on.\n\nUse metric units."
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
