"""A chat answer as an Anthropic message, whole (``messages_answer``) and streamed (``messages_stream``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest

from polyroute.adapters.base import make_chunk
from polyroute.errors import UpstreamBadResponse
from polyroute.server.messages import MessageStream
from polyroute.server.messages_answer import error_doc, from_chat, message_usage
from polyroute.server.messages_stream import MessageEvents
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, Delta

REQ = ChatRequest.from_json({"model": "route", "messages": [{"role": "user", "content": "hi"}],
                             "stop": ["END", "STOP"]})
CLAUDE = "anthropic-claude-v1"


def answer(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None,
           **choice: Any) -> ChatResponse:
    return cast(ChatResponse, {
        "id": "x", "object": "chat.completion", "created": 1, "model": "echo",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})


def test_a_text_answer() -> None:
    doc = from_chat(answer({"content": "Hello."}), REQ, "req_1")
    assert doc == {"id": "msg_req_1", "type": "message", "role": "assistant", "model": "echo",
                   "content": [{"type": "text", "text": "Hello."}], "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 0,
                             "cache_creation_input_tokens": 0}}


def test_tool_calls_are_tool_use_blocks_with_their_input_parsed() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]
    doc = from_chat(answer({"content": None, "tool_calls": calls}, "tool_calls"), REQ, "req_1")
    assert doc["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                              {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]
    assert doc["stop_reason"] == "tool_use"
    with pytest.raises(UpstreamBadResponse):
        from_chat(answer({"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}), REQ, "r")


def test_claudes_signed_thinking_comes_back_in_the_order_claude_wrote_it() -> None:
    details = [{"type": "reasoning.text", "text": "first", "signature": "s1", "format": CLAUDE, "index": 0},
               {"type": "reasoning.encrypted", "data": "d2", "format": CLAUDE, "index": 1, "content_offset": 3}]
    doc = from_chat(answer({"content": "AB CD", "reasoning_content": "first", "reasoning_details": details}), REQ, "r")
    assert doc["content"] == [{"type": "thinking", "thinking": "first", "signature": "s1"},
                              {"type": "text", "text": "AB "}, {"type": "redacted_thinking", "data": "d2"},
                              {"type": "text", "text": "CD"}]


def test_another_models_reasoning_is_unsigned_thinking() -> None:
    doc = from_chat(answer({"content": "4", "reasoning_content": "2+2"}), REQ, "r")
    assert doc["content"] == [{"type": "thinking", "thinking": "2+2", "signature": ""}, {"type": "text", "text": "4"}]


@pytest.mark.parametrize(("finish", "choice", "reason", "sequence"), [
    ("length", {}, "max_tokens", None), ("content_filter", {}, "refusal", None), (None, {}, "end_turn", None),
    ("stop", {"stop_reason": "STOP"}, "stop_sequence", "STOP"),  # vLLM says which stop it met
    ("stop", {"stop_reason": 128001}, "end_turn", None),  # ... or which token
])
def test_stop_reasons(finish: str | None, choice: dict[str, Any], reason: str, sequence: str | None) -> None:
    doc = from_chat(answer({"content": "x"}, cast(str, finish), **choice), REQ, "r")
    assert (doc["stop_reason"], doc["stop_sequence"]) == (reason, sequence)


def test_a_refusal_says_why_in_stop_details() -> None:
    doc = from_chat(answer({"content": "", "refusal": "policy"}, "content_filter"), REQ, "r")
    assert doc["stop_details"] == {"type": "refusal", "category": None, "explanation": "policy"}


def test_usage_splits_cached_input_as_anthropic_does() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "cost_usd": 0.5,
             "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30}}
    assert message_usage(usage) == {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 60,
                                    "cache_creation_input_tokens": 30, "cost_usd": 0.5}


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"),
    (403, "permission_error"), (404, "not_found_error"), (408, "invalid_request_error"),
    (413, "request_too_large"), (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"),
    (502, "api_error"), (503, "overloaded_error"), (504, "api_error"),
])
def test_error_types_by_status(status: int, kind: str) -> None:
    assert error_doc(status, "m", "req_1") == {"type": "error", "error": {"type": kind, "message": "m"},
                                               "request_id": "req_1"}


# --- streams ---------------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
    return make_chunk("c", "m", cast(Delta, delta), finish, created=1)


def events(*chunks: ChatChunk, usage: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    stream = MessageEvents("msg_r", REQ, "echo", 12)
    raw = stream.opening() + b"".join(stream.chunk(c) for c in chunks)
    raw += stream.closing(usage or {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
    out = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name, data = frame.split("\n")
        payload = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        out.append((payload["type"], payload))
    return out


def test_a_text_stream_in_anthropics_order() -> None:
    got = events(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                 chunk({}, "stop"))
    assert [k for k, _ in got] == ["message_start", "content_block_start", "content_block_delta",
                                   "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    start = got[0][1]["message"]
    assert start["id"] == "msg_r" and start["usage"] == {"input_tokens": 12, "output_tokens": 0}
    assert got[1][1]["content_block"] == {"type": "text", "text": ""}
    assert got[3][1]["delta"] == {"type": "text_delta", "text": "lo"}
    assert got[5][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert got[5][1]["usage"]["input_tokens"] == 9 and got[5][1]["usage"]["output_tokens"] == 2


def test_signed_thinking_then_text_then_tool_calls() -> None:
    got = events(
        chunk({"reasoning_content": "hm", "reasoning_details": [
            {"type": "reasoning.text", "format": CLAUDE, "text": "", "index": 0}, {"index": 0, "text": "hm"}]}),
        chunk({"reasoning_details": [{"index": 0, "signature": "sig"}]}),
        chunk({"reasoning_details": [{"type": "reasoning.encrypted", "data": "d", "format": CLAUDE, "index": 1}]}),
        chunk({"content": "Let me check."}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function",
                               "function": {"name": "now", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"))
    shown = [(k, p.get("index"), p.get("content_block") or p.get("delta")) for k, p in got[1:-2]]
    assert shown == [
        ("content_block_start", 0, {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", 0, {"type": "thinking_delta", "thinking": "hm"}),
        ("content_block_delta", 0, {"type": "signature_delta", "signature": "sig"}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, {"type": "redacted_thinking", "data": "d"}),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, {"type": "text", "text": ""}),
        ("content_block_delta", 2, {"type": "text_delta", "text": "Let me check."}),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
        ("content_block_delta", 3, {"type": "input_json_delta", "partial_json": '{"city":'}),
        ("content_block_delta", 3, {"type": "input_json_delta", "partial_json": '"Oslo"}'}),
        ("content_block_stop", 3, None),
        ("content_block_start", 4, {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
        ("content_block_delta", 4, {"type": "input_json_delta", "partial_json": "{}"}),
        ("content_block_stop", 4, None),
    ]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_another_models_reasoning_streams_as_unsigned_thinking() -> None:
    got = events(chunk({"reasoning_content": "2+2"}), chunk({"reasoning_content": "=4"}), chunk({"content": "4"}),
                 chunk({}, "stop"))
    assert [p.get("delta", {}).get("thinking") for k, p in got if k == "content_block_delta"][:2] == ["2+2", "=4"]
    assert [p["content_block"]["type"] for k, p in got if k == "content_block_start"] == ["thinking", "text"]


def test_a_refusal_ends_with_its_stop_details() -> None:
    got = events(chunk({"refusal": "no"}, "content_filter"))
    assert got[-2][1]["delta"] == {"stop_reason": "refusal", "stop_sequence": None,
                                   "stop_details": {"type": "refusal", "category": None, "explanation": "no"}}


def test_an_empty_answer_is_a_message_without_blocks() -> None:
    assert [k for k, _ in events(chunk({}, "stop"))] == ["message_start", "message_delta", "message_stop"]


def test_a_failure_is_an_error_event() -> None:
    raw = MessageEvents.failed(error_doc(502, "cut"))
    assert raw == b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"cut"}}\n\n'


async def _nothing() -> AsyncIterator[bytes]:
    yield b""


def test_a_stream_cut_by_a_shutdown_ends_with_an_error_event() -> None:
    stream = MessageStream(_nothing(), {})
    cut = stream.closing({"error": {"message": "The gateway is shutting down.", "type": "server_error"}})
    size, _, rest = cut.partition(b"\r\n")
    framed = rest[:int(size, 16)]
    assert framed == (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                      b'"message":"The gateway is shutting down."}}\n\n')
    assert cut.endswith(b"\r\n0\r\n\r\n")
