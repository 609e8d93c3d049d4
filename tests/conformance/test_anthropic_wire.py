"""What only the Anthropic adapter translates: content blocks, tool choice, thinking, prefill."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.adapters.anthropic import API_VERSION, DEFAULT_MAX_TOKENS
from polyroute.errors import UpstreamParamRefused, UpstreamRejected, UpstreamServerError
from polyroute.types import ChatChunk
from tests.conformance.helpers import ANSWER, WEATHER_TOOL, call, collect, content
from tests.conformance.providers import ANTHROPIC_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def provider() -> Provider:
    return ANTHROPIC_PROVIDER


def text_stream(pieces: list[str]) -> list[dict[str, Any]]:
    """The stream fixture with its text deltas replaced by ``pieces``."""
    events: list[dict[str, Any]] = load("anthropic", "stream")
    head = [e for e in events if e["event"] in ("message_start", "content_block_start")]
    tail = [e for e in events if e["event"] in ("content_block_stop", "message_delta", "message_stop")]
    deltas = [
        {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": p}}}
        for p in pieces
    ]
    return head + deltas + tail


async def test_messages_become_content_blocks(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("anthropic", "completion"))
    tool_calls = [
        {"id": f"toolu_{i}", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        for i, arguments in ((1, '{"location": "Paris"}'), (2, '{"location": "Oslo"}'))
    ]
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here and there?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/oslo.jpg"}},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "4C"},
        {"role": "user", "content": "Thanks"},
    ]
    await adapter.complete(call(messages=messages))
    body = upstream.received[0].json()
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here and there?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/oslo.jpg"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Oslo"}},
        ]},
        # Both results answer one assistant turn, so they share one user turn with the follow-up.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "4C"},
            {"type": "text", "text": "Thanks"},
        ]},
    ]


async def test_defaults_headers_and_unsupported_params(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(temperature=1.5, seed=7))
    got = upstream.received[0]
    body = got.json()
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["temperature"] == 1.0  # Anthropic's scale ends at 1
    assert "seed" not in body and "response_format" not in body and "output_config" not in body
    assert got.headers["anthropic-version"] == API_VERSION
    assert "seed" not in adapter.supports
    assert {"tools", "tool_choice", "stop", "temperature", "top_p", "max_tokens", "response_format"} <= adapter.supports
    # A JSON schema is Claude's structured outputs, from the 4.5 models on; JSON mode without one has no counterpart.
    assert adapter.unsupported({"response_format"}, "claude-sonnet-4-20250514") == {"response_format"}
    assert adapter.unsupported({"response_format"}, "claude-sonnet-4-5") == frozenset()
    with pytest.raises(UpstreamParamRefused) as refused:
        await adapter.complete(call(response_format={"type": "json_object"}))
    assert refused.value.param == "response_format" and len(upstream.received) == 1


async def test_max_completion_tokens_is_the_limit(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(max_completion_tokens=77))
    assert upstream.received[0].json()["max_tokens"] == 77


@pytest.mark.parametrize(
    ("choice", "extra", "expected"),
    [
        ("auto", {}, {"type": "auto"}),
        ("none", {}, {"type": "none"}),
        ("required", {}, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {}, {"type": "tool", "name": "get_weather"}),
        ("required", {"parallel_tool_calls": False}, {"type": "any", "disable_parallel_tool_use": True}),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "get_weather"}}]}}, {}, {"type": "any"}),
    ],
    ids=["auto", "none", "required", "named", "no-parallel", "allowed-tools"],
)
async def test_tools_and_tool_choice(
    upstream: FakeUpstream, adapter: Adapter, choice: Any, extra: dict[str, Any], expected: dict[str, Any]
) -> None:
    upstream.json(load("anthropic", "tool_call"))
    await adapter.complete(call(tools=[WEATHER_TOOL], tool_choice=choice, **extra))
    body = upstream.received[0].json()
    fn: dict[str, Any] = WEATHER_TOOL["function"]
    tool = {"name": "get_weather", "description": fn["description"], "input_schema": fn["parameters"]}
    assert body["tools"] == [tool]
    assert body["tool_choice"] == expected


async def test_allowed_tools_leaves_the_other_tools_out(upstream: FakeUpstream, adapter: Adapter) -> None:
    """OpenAI's allowed_tools choice names a subset of the tools: Claude is sent that subset, in the mode asked."""
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_time"}}]}}
    upstream.json(load("anthropic", "tool_call"))
    await adapter.complete(call(tools=[WEATHER_TOOL, other], tool_choice=choice))
    body = upstream.received[0].json()
    assert [t["name"] for t in body["tools"]] == ["get_time"] and body["tool_choice"] == {"type": "auto"}


PDF = "JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCg=="


async def test_a_pdf_or_text_file_part_becomes_a_document_block(upstream: FakeUpstream, adapter: Adapter) -> None:
    """OpenAI's file part (file_data as a data: URL) is what Claude calls a document."""
    upstream.json(load("anthropic", "completion"))
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Summarise both."},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}},
        {"type": "file", "file": {"filename": "b.txt", "file_data": "data:text/plain;base64,aGVsbG8gd29ybGQ="}},
    ]}]
    await adapter.complete(call(messages=messages))
    blocks = upstream.received[0].json()["messages"][0]["content"]
    assert blocks[1] == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                        "data": PDF}}
    assert blocks[2] == {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                        "data": "hello world"}}


@pytest.mark.parametrize("part", [
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-abc123"}},
    {"type": "file", "file": {"filename": "a.docx", "file_data": "data:application/msword;base64,AAAA"}},
], ids=["audio", "file-id", "word-file"])
async def test_a_part_claude_cannot_read_is_refused_for_this_model_not_dropped(
    upstream: FakeUpstream, adapter: Adapter, part: dict[str, Any],
) -> None:
    """Dropped, the model would answer as if it had read it: the attempt is refused for this model, so the next
    candidate is asked (a 400 naming it when none is left), and nothing is sent."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "What does it say?"}, part]}]
    with pytest.raises(UpstreamParamRefused, match="Claude takes no") as refused:
        await adapter.complete(call(messages=messages))
    assert refused.value.may_fall_over and refused.value.param == "messages"
    assert upstream.received == []


async def test_tool_arguments_that_are_not_an_object_are_refused(upstream: FakeUpstream, adapter: Adapter) -> None:
    bad = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "Paris"}}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [bad]}]
    with pytest.raises(UpstreamRejected, match=r"messages\[1\]\.tool_calls\[0\]"):
        await adapter.complete(call(messages=messages))
    assert upstream.received == []


async def test_thinking_becomes_reasoning_content(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("anthropic", "thinking"))
    message = (await adapter.complete(call()))["choices"][0]["message"]
    assert message["content"] == ANSWER
    assert message["reasoning_content"] == "The user greets me. A short greeting back fits."


async def test_thinking_stream_becomes_reasoning_deltas(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(load("anthropic", "thinking_stream"))
    chunks = await collect(adapter, call(stream=True))
    reasoning = "".join(ch["delta"].get("reasoning_content") or "" for c in chunks for ch in c["choices"])
    assert reasoning == "The user greets me. A short greeting back fits."
    assert content(chunks) == ANSWER


@pytest.mark.parametrize(
    ("prefix", "pieces"),
    [
        ("Hello! How ", [" can", " I help you today?"]),
        ("Hello! How ", [" ", "can I help you today?"]),
        ("Hello! How ", ["can I help you today?"]),
        ("Hello! How", [" can I help you today?"]),
        ("Hello!\n\n", ["\n\nHow can I help you today?"]),
    ],
    ids=["space-in-first-delta", "space-alone", "no-space-back", "no-trailing-space", "newlines"],
)
async def test_prefill_strips_trailing_whitespace_and_joins_exactly(
    upstream: FakeUpstream, adapter: Adapter, prefix: str, pieces: list[str]
) -> None:
    expected = ANSWER.replace("Hello! ", "Hello!\n\n") if "\n" in prefix else ANSWER
    upstream.stream(text_stream(pieces))
    chunks: list[ChatChunk] = await collect(adapter, call(prefix=prefix, stream=True))
    assert upstream.received[0].json()["messages"][-1] == {"role": "assistant", "content": prefix.rstrip()}
    assert prefix + content(chunks) == expected


async def test_prefill_complete_returns_the_whole_answer(upstream: FakeUpstream, adapter: Adapter) -> None:
    doc = load("anthropic", "completion")
    doc["content"] = [{"type": "text", "text": " can I help you today?"}]
    upstream.json(doc)
    resp = await adapter.complete(call(prefix="Hello! How "))
    assert resp["choices"][0]["message"]["content"] == ANSWER


async def test_whitespace_only_prefix_sends_no_prefill(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(load("anthropic", "stream"))
    await collect(adapter, call(prefix="  ", stream=True))
    assert upstream.received[0].json()["messages"][-1]["role"] == "user"


async def test_overloaded_event_in_a_stream_counts_as_529(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(load("anthropic", "stream_error"))
    with pytest.raises(UpstreamServerError) as info:
        await collect(adapter, call(stream=True))
    assert info.value.upstream_status == 529 and info.value.message == "Overloaded"


async def test_continuation_can_be_switched_off(provider: Provider) -> None:
    config = provider.config("http://127.0.0.1:9").model_copy(update={"continuation": "none"})
    off = build_adapter("off", config)
    assert not off.can_continue
    await off.aclose()


@pytest.mark.parametrize(("model", "takes"), [
    ("claude-3-5-sonnet-20241022", True), ("claude-sonnet-4-20250514", True), ("claude-opus-4-1-20250805", True),
    ("claude-3-7-sonnet-20250219", True), ("claude-sonnet-4@20250514", True), ("deepseek-chat", True),
    ("claude-sonnet-4-5", True), ("claude-haiku-4-5-20251001", True), ("claude-opus-4-6", True),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", True),
    # Sonnet 4.6 takes only the default; Opus 4.7 and everything after take none.
    ("claude-sonnet-4-6", False), ("claude-opus-4-7", False), ("claude-opus-4-8", False), ("claude-sonnet-5", False),
    ("claude-sonnet-5-5", False), ("claude-opus-5", False), ("claude-fable-5", False),
    ("claude-opus-4-7@20260416", False), ("claude-sonnet-4-6-20260217", False),
])
def test_which_claude_models_are_sent_sampling_parameters(model: str, takes: bool) -> None:
    adapter = build_adapter("claude", ANTHROPIC_PROVIDER.config("http://127.0.0.1:9"))
    dropped = adapter.unsupported({"temperature", "max_tokens"}, model)
    assert ("temperature" not in dropped) is takes


@pytest.mark.parametrize(("model", "continues"), [
    ("claude-3-7-sonnet-20250219", True), ("claude-sonnet-4-5", True), ("claude-haiku-4-5-20251001", True),
    ("claude-opus-4-1-20250805", True), ("anthropic.claude-sonnet-4-5-20250929-v1:0", True),
    # From Opus and Sonnet 4.6 on, a conversation may not end with the assistant's turn.
    ("claude-opus-4-6", False), ("claude-sonnet-4-6-20260217", False), ("claude-opus-4-7@20260416", False),
    ("claude-sonnet-5-5", False), ("claude-haiku-5-5", False), ("claude-fable-5-1", False),
])
def test_which_claude_models_can_continue_a_cut_answer(model: str, continues: bool) -> None:
    adapter = build_adapter("claude", ANTHROPIC_PROVIDER.config("http://127.0.0.1:9"))
    assert adapter.continues(model) is continues


@pytest.mark.parametrize(("model", "choice", "refused"), [
    ("claude-sonnet-5-5", "required", True),
    ("claude-opus-5-5", {"type": "function", "function": {"name": "get_weather"}}, True),
    ("claude-fable-5-1", "required", True), ("claude-sonnet-5-5", "auto", False),
    ("claude-sonnet-5", "required", False), ("claude-sonnet-4-5", "required", False),
])
async def test_claude_models_that_refuse_a_forced_tool_call_are_not_sent_one(
    upstream: FakeUpstream, adapter: Adapter, model: str, choice: Any, refused: bool,
) -> None:
    """Opus and Sonnet 5.5, Fable and Mythos 5.1 answer a forced tool call with a 400: such a request is asked of
    the next candidate (a 400 naming tool_choice when none is left), before anything is sent."""
    upstream.json(load("anthropic", "tool_call"))
    ask = call(upstream=model, tools=[WEATHER_TOOL], tool_choice=choice)
    if not refused:
        await adapter.complete(ask)
        assert upstream.received
        return
    with pytest.raises(UpstreamParamRefused, match="refuses a forced tool call") as raised:
        await adapter.complete(ask)
    assert raised.value.may_fall_over and raised.value.param == "tool_choice" and upstream.received == []
    upstream.reset()


@pytest.mark.parametrize(("model", "asked", "sent"), [
    ("claude-sonnet-5-5", {"type": "disabled"}, {"type": "between_tools"}),
    ("claude-sonnet-5-5", {"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}),
    ("claude-opus-5-5", {"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}),
    ("claude-opus-5-5", {"type": "adaptive"}, {"type": "adaptive"}),
    ("claude-sonnet-4-5", {"type": "enabled", "budget_tokens": 2048}, {"type": "enabled", "budget_tokens": 2048}),
    ("claude-sonnet-4-5", {"type": "disabled"}, {"type": "disabled"}),
    ("claude-opus-5-5", {"type": "disabled"}, None),
    ("claude-fable-5-1", {"type": "disabled"}, None),
    # Haiku 5.5 takes no budget either, but can think or not.
    ("claude-haiku-5-5", {"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}),
    ("claude-haiku-5-5", {"type": "disabled"}, {"type": "disabled"}),
    # What else the client set on thinking is kept.
    ("claude-opus-5-5", {"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
     {"type": "adaptive", "display": "summarized"}),
])
async def test_thinking_is_asked_as_the_newest_claude_models_take_it(
    upstream: FakeUpstream, adapter: Adapter, model: str, asked: dict[str, Any], sent: dict[str, Any] | None,
) -> None:
    """Opus and Sonnet 5.5, Fable and Mythos 5.1 answer a thinking budget or thinking turned off with a 400. A
    budget becomes adaptive thinking; Sonnet 5.5's way to turn it off is between_tools; the others cannot turn
    it off, so the request goes to another candidate. Older models are sent what the client wrote."""
    upstream.json(load("anthropic", "completion"))
    ask = call(upstream=model, thinking=asked)
    if sent is None:
        with pytest.raises(UpstreamParamRefused, match="cannot turn thinking off") as raised:
            await adapter.complete(ask)
        assert raised.value.may_fall_over and raised.value.param == "thinking" and upstream.received == []
        upstream.reset()
        return
    await adapter.complete(ask)
    assert upstream.received[0].json()["thinking"] == sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_block_binding_is_sent_with_the_beta_header_it_needs(
    upstream: FakeUpstream, adapter: Adapter, stream: bool,
) -> None:
    """A client that asks Claude to drop thinking blocks whose conversation changed: without Anthropic's beta
    header that field is a 400 ("Extra inputs are not permitted"), so the header goes with it, and only then."""
    binding = {"prefix_mismatch_behavior": "drop_block"}
    for thinking in ({"type": "adaptive", "block_binding": binding}, {"type": "adaptive"}):
        if stream:
            upstream.stream(load("anthropic", "stream"))
            await collect(adapter, call(upstream="claude-opus-5-5", thinking=thinking, stream=True))
        else:
            upstream.json(load("anthropic", "completion"))
            await adapter.complete(call(upstream="claude-opus-5-5", thinking=thinking))
    bound, plain = upstream.received
    assert bound.json()["thinking"]["block_binding"] == binding
    assert bound.headers["anthropic-beta"] == "thinking-binding-controls-2026-08-01"
    assert "anthropic-beta" not in plain.headers


@pytest.mark.parametrize("message", [
    "This model does not support assistant message prefill. The conversation must end with a user message.",
    "Prefilling assistant messages is not supported for this model.",
])
def test_a_prefill_refusal_moves_the_request_on(message: str) -> None:
    """Said by a Claude model the gateway did not know refuses prefill: not the client's error."""
    from polyroute.adapters.anthropic import read_error
    from polyroute.adapters.http import error_from_status

    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}).encode()
    err = error_from_status(400, body, {}, read_error, backend="claude", model="claude-opus-9")
    assert isinstance(err, UpstreamParamRefused) and err.may_fall_over


async def test_metadata_carries_the_end_user_alone(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    """Anthropic's metadata takes user_id and nothing else; OpenAI's metadata is any map."""
    for _ in range(2):
        upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(metadata={"session": "abc", "user_id": "u-1"}))
    await adapter.complete(call(metadata={"session": "abc"}, user="someone@example.com"))
    sent = [r.json().get("metadata") for r in upstream.received]
    assert sent == [{"user_id": "u-1"}, None]  # (an email in user_id is a 400 at Anthropic)
