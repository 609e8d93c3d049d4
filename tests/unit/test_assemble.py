"""Chunks to one chat.completion, and back."""

from __future__ import annotations

from typing import Any, cast

import pytest

from polyroute.adapters import build_adapter
from polyroute.assemble import Assembly, as_chunks
from polyroute.config import parse
from polyroute.errors import ConfigError
from polyroute.types import ChatChunk, ChatResponse


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, usage: dict[str, int] | None = None,
          logprobs: Any = None, index: int = 0, **top: Any) -> ChatChunk:
    choices = [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]
    doc: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                           "choices": choices, **top}
    if logprobs is not None:
        doc["choices"][0]["logprobs"] = logprobs
    if usage is not None:
        doc["usage"] = usage
    return cast(ChatChunk, doc)


def assemble(chunks: list[ChatChunk]) -> dict[str, Any]:
    a = Assembly()
    for c in chunks:
        a.add(c)
    return cast(dict[str, Any], a.response())


def test_text_reasoning_and_usage() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
             "completion_tokens_details": {"reasoning_tokens": 1}}
    doc = assemble([
        chunk({"role": "assistant", "content": "", "refusal": None}, system_fingerprint="fp_1"),
        chunk({"reasoning_content": "Think."}),
        chunk({"content": "Hello"}),
        chunk({"content": " world"}),
        chunk({}, "stop"),
        chunk(None, usage=usage),
    ])
    assert doc == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Hello world", "reasoning_content": "Think.", "refusal": None}}],
        "usage": usage, "system_fingerprint": "fp_1",
    }


def test_tool_calls_join_by_index() -> None:
    doc = assemble([
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
    ])
    msg = doc["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]}
    assert doc["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in doc


def test_logprobs_are_concatenated() -> None:
    a = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    b = {"token": "!", "logprob": -0.2, "bytes": [33], "top_logprobs": []}
    doc = assemble([
        chunk({"role": "assistant", "content": "Hi"}, logprobs={"content": [a], "refusal": None}),
        chunk({"content": "!"}, "stop", logprobs={"content": [b], "refusal": None}),
    ])
    assert doc["choices"][0]["logprobs"] == {"content": [a, b]}
    assert doc["choices"][0]["message"]["content"] == "Hi!"


def test_pieced_fields_are_joined_not_replaced() -> None:
    """Audio comes in pieces (an id, then transcript and base64 data, then its expiry) and annotations in lists:
    the whole answer holds all of them, not the last piece; the service tier is kept at the top."""
    cite = {"type": "url_citation", "url_citation": {"url": "https://a.example"}}
    cite2 = {"type": "url_citation", "url_citation": {"url": "https://b.example"}}
    doc = assemble([
        chunk({"role": "assistant", "audio": {"id": "audio_1", "transcript": "Hel"}}, service_tier="flex"),
        chunk({"audio": {"transcript": "lo"}, "annotations": [cite]}, service_tier="flex"),
        chunk({"audio": {"data": "AAAA"}}),
        chunk({"audio": {"data": "BBBB", "expires_at": 123}, "annotations": [cite2]}),
        chunk({"refusal": None}, "stop"),
    ])
    msg = doc["choices"][0]["message"]
    assert msg["audio"] == {"id": "audio_1", "transcript": "Hello", "data": "AAAABBBB", "expires_at": 123}
    assert msg["annotations"] == [cite, cite2] and msg["refusal"] is None
    assert doc["service_tier"] == "flex"


def test_an_empty_answer_has_empty_content() -> None:
    doc = assemble([chunk({"role": "assistant"}), chunk({}, "length")])
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": ""}


def test_a_whole_answer_round_trips_through_chunks() -> None:
    resp = cast(ChatResponse, {
        "id": "chatcmpl-2", "object": "chat.completion", "created": 9, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    })
    chunks = as_chunks(resp)
    assert chunks[-1]["choices"] == [] and chunks[-1].get("usage") == resp["usage"]
    assert assemble(chunks) == resp


@pytest.mark.parametrize(("backend", "assembles"), [
    ({"type": "openai", "base_url": "https://api.deepseek.com/v1"}, True),  # hosted: assembles
    ({"type": "anthropic", "base_url": "https://api.anthropic.com/v1"}, True),
    ({"type": "openai", "base_url": "http://127.0.0.1:8000/v1"}, True),  # a local server is bounded alike
    ({"type": "ollama", "base_url": "http://192.168.1.5:11434"}, True),
    ({"type": "openai", "base_url": "http://127.0.0.1:8000/v1", "locality": "remote"}, True),
    ({"type": "openai", "base_url": "https://api.deepseek.com/v1", "assemble_from_stream": False}, False),
    ({"type": "openai", "base_url": "http://127.0.0.1:8000/v1", "assemble_from_stream": False}, False),
    ({"type": "fake"}, False),
    ({"type": "fake", "assemble_from_stream": True}, True),
])
def test_assemble_from_stream_key_and_default(backend: dict[str, Any], assembles: bool) -> None:
    config = parse({"backends": {"b": backend}, "models": {"m": {"backend": "b"}}})
    assert build_adapter("b", config.backends["b"]).assembles is assembles


def test_assemble_from_stream_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"backends": {"b": {"type": "fake", "assemble_from_stream": "sometimes"}}})
    assert "assemble_from_stream" in str(info.value)
