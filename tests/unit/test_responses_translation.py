"""The Responses API translated both ways: its request into chat's, chat's answer and chunks into its shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from polyroute.adapters.base import make_chunk
from polyroute.errors import InvalidRequest
from polyroute.server.bounds import Bounds
from polyroute.server.responses import parse_responses
from polyroute.server.responses_answer import from_chat, responses_usage
from polyroute.server.responses_request import to_chat
from polyroute.server.responses_stream import ResponseEvents
from polyroute.types import ChatRequest, ChatResponse

TOOL = {"type": "function", "name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {}}, "strict": True}


def parse(doc: dict[str, Any]) -> ChatRequest:
    return parse_responses(orjson.dumps(doc), Bounds(max_messages=8))


def test_a_string_input_with_instructions_is_a_system_then_a_user_message() -> None:
    chat = to_chat({"model": "m", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 9,
                    "temperature": 0.5, "metadata": {"a": "b"}, "store": False,
                    "include": ["file_search_call.results"]})
    assert chat == {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "hi"}],
                    "max_completion_tokens": 9, "temperature": 0.5, "metadata": {"a": "b"}}


def test_items_become_messages_tool_calls_and_tool_results() -> None:
    chat = to_chat({"model": "m", "input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"x\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
    ]})
    assert chat["messages"] == [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
    ]


def test_tools_choice_and_formats_take_chat_shapes() -> None:
    chat = to_chat({"model": "m", "input": "hi", "tools": [TOOL], "parallel_tool_calls": False,
                    "tool_choice": {"type": "function", "name": "get_weather"}, "reasoning": {"effort": "low"},
                    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"},
                                        "strict": True}, "verbosity": "low"}})
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {}},
        "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False and chat["reasoning_effort"] == "low" and chat["verbosity"] == "low"
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object"}, "strict": True}}
    assert to_chat({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})[
        "response_format"] == {"type": "json_object"}
    assert "response_format" not in to_chat({"model": "m", "input": "x", "text": {"format": {"type": "text"}}})


@pytest.mark.parametrize(("doc", "param", "words"), [
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "keeps no prompts"),
    ({"background": True}, "background", "no responses to poll"),
    ({"tools": [{"type": "web_search"}, {"type": "file_search"}, TOOL]}, "tools", "file_search, web_search"),
    ({"tool_choice": {"type": "web_search"}}, "tool_choice", "'web_search' is not supported"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "was not read"),
    ({"input": [{"type": "file_search_call", "id": "fs_1"}]}, "input[0].type", "'file_search_call'"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "must be 'user'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].type", "'input_file' are not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0].image_url", "keeps no files"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "Missing"),
    ({"input": None}, "input", "Missing required parameter: 'input'"),
    # Errors name the Responses API's own fields, not the chat fields they become.
    ({"tools": [{"type": "function"}]}, "tools[0].name", "Missing required parameter"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name", "Missing required parameter"),
    ({"max_output_tokens": -1}, "max_output_tokens", "at least 1"),
    ({"max_output_tokens": "9"}, "max_output_tokens", "whole number"),
    ({"text": 3}, "text", "expected an object"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "Missing required"),
])
def test_what_cannot_be_served_is_a_400_naming_the_field(doc: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat({"model": "m", "input": "hi", **doc})
    assert caught.value.param == param and words in caught.value.message


def test_the_chat_validation_and_bounds_apply() -> None:
    req = parse({"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": "required", "frobnicate": 1})
    assert req.tool_choice == "required" and req.extras() == {"frobnicate": 1}  # unknown fields: as chat keeps them
    with pytest.raises(InvalidRequest) as caught:
        parse({"model": "m", "input": "hi", "temperature": 3})
    assert caught.value.param == "temperature"
    with pytest.raises(InvalidRequest) as caught:
        parse({"model": "m", "input": [{"role": "user", "content": "x"}] * 9})
    assert caught.value.code == "array_above_max_length"


def answer(message: dict[str, Any], finish: str = "stop") -> ChatResponse:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "echo",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],  # type: ignore[typeddict-item]
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def test_a_whole_answer_is_a_response_object() -> None:
    req = ChatRequest.from_json(to_chat({"model": "main", "input": "hi", "tools": [TOOL]}))
    doc = from_chat(answer({"role": "assistant", "content": "Sure.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}), req, "r1")
    assert (doc["id"], doc["object"], doc["created_at"], doc["model"], doc["status"]) == (
        "resp_r1", "response", 7, "echo", "completed")
    assert doc["output"] == [
        {"id": "msg_r1_0", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Sure.", "annotations": []}]},
        {"id": "fc_r1_1", "type": "function_call", "status": "completed", "call_id": "call_1",
         "name": "get_weather", "arguments": "{}"}]
    assert doc["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                            "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0},
                            "total_tokens": 8}
    assert doc["tools"] == [{**TOOL}] and doc["tool_choice"] == "auto" and doc["parallel_tool_calls"] is True
    assert doc["text"] == {"format": {"type": "text"}}


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_an_answer_cut_short_is_incomplete(finish: str, reason: str) -> None:
    req = ChatRequest.from_json(to_chat({"model": "m", "input": "hi"}))
    doc = from_chat(answer({"role": "assistant", "content": "Par"}, finish), req, "r1")
    assert doc["status"] == "incomplete" and doc["incomplete_details"] == {"reason": reason}
    assert doc["output"][0]["status"] == "incomplete"


def test_usage_details_and_cost_carry_over() -> None:
    usage = responses_usage({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cost_usd": 0.5,
                             "prompt_tokens_details": {"cached_tokens": 6},
                             "completion_tokens_details": {"reasoning_tokens": 2}})
    assert usage["input_tokens_details"]["cached_tokens"] == 6
    assert usage["output_tokens_details"]["reasoning_tokens"] == 2 and usage["cost_usd"] == 0.5


def events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            payload = orjson.loads(data.removeprefix("data: "))
            assert name == f"event: {payload['type']}"
            out.append(payload)
    return out


def test_chunks_become_events_in_openai_order() -> None:
    req = ChatRequest.from_json(to_chat({"model": "m", "input": "hi", "tools": [TOOL]}))
    ev = ResponseEvents("r1", req, "echo", 7)
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    raw = ev.opening() + b"".join(ev.chunk(c) for c in [
        make_chunk("c", "echo", {"role": "assistant", "content": ""}),
        make_chunk("c", "echo", {"content": "Let"}), make_chunk("c", "echo", {"content": " me."}),
        make_chunk("c", "echo", {"tool_calls": [call]}),
        make_chunk("c", "echo", {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
        make_chunk("c", "echo", {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        make_chunk("c", "echo", {}, "tool_calls"),
    ]) + ev.closing({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    got = events(raw)
    assert [e["type"] for e in got] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[0]["response"]["status"] == "in_progress" and got[0]["response"]["output"] == []
    assert got[6]["text"] == "Let me." and got[6]["item_id"] == "msg_r1_0"
    assert got[12]["arguments"] == "{\"a\":1}" and got[12]["output_index"] == 1
    final = got[-1]["response"]
    assert final["id"] == "resp_r1" and final["status"] == "completed" and final["usage"]["total_tokens"] == 8
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1] == {"id": "fc_r1_1", "type": "function_call", "status": "completed",
                                  "call_id": "call_1", "name": "get_weather", "arguments": "{\"a\":1}"}


def test_a_stream_cut_at_its_limit_ends_incomplete_and_a_broken_one_failed() -> None:
    req = ChatRequest.from_json(to_chat({"model": "m", "input": "hi"}))
    ev = ResponseEvents("r1", req, "echo", 7)
    raw = ev.opening() + ev.chunk(make_chunk("c", "echo", {"content": "Par"}, "length"))
    got = events(raw + ev.closing({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
    assert got[-1]["type"] == "response.incomplete"
    assert got[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    broken = ResponseEvents("r2", req, "echo", 7)
    got = events(broken.opening() + broken.chunk(make_chunk("c", "echo", {"content": "Par"}))
                 + broken.failed({"message": "cut", "code": "x", "param": None}))
    assert [e["type"] for e in got[-2:]] == ["error", "response.failed"]
    assert got[-2]["message"] == "cut" and got[-1]["response"]["error"] == {"code": "server_error", "message": "cut"}
