"""An Anthropic Messages request as the chat request it asks for (``polyroute.server.messages_request``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from polyroute.adapters import build_adapter
from polyroute.adapters.anthropic import AnthropicAdapter
from polyroute.adapters.base import Call
from polyroute.errors import InvalidRequest
from polyroute.server.bounds import Bounds
from polyroute.server.messages import parse_messages
from polyroute.server.messages_request import effort_of_budget, to_chat
from tests.conformance.providers import ANTHROPIC_PROVIDER
from tests.support.upstreams import load

WEATHER = {"name": "get_weather", "description": "weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
SIGNED = load("anthropic", "thinking_tool_use")


def chat(**fields: Any) -> dict[str, Any]:
    return to_chat({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields})


def refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        chat(**fields)
    return caught.value


def test_a_plain_request_is_renamed_field_by_field() -> None:
    out = chat(system="Be brief.", stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=5, stream=True,
               metadata={"user_id": "u-1"})
    assert out == {"model": "m", "max_tokens": 100, "stop": ["END"], "temperature": 0.2, "top_p": 0.9, "top_k": 5,
                   "stream": True, "user": "u-1",
                   "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}


def test_system_blocks_keep_their_cache_breakpoints_and_the_top_level_one_marks_the_last_message() -> None:
    mark = {"type": "ephemeral"}
    out = chat(system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": mark}],
               cache_control=mark)
    assert out["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "A"},
                                                                {"type": "text", "text": "B", "cache_control": mark}]}
    assert out["messages"][-1] == {"role": "user", "content": "hi", "cache_control": mark}


def test_claude_codes_accounting_header_is_not_sent_as_instructions() -> None:
    header = {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.159; cc_entrypoint=sdk-cli;"}
    assert chat(system=[header, {"type": "text", "text": "You are an agent."}])["messages"][0] == {
        "role": "system", "content": "You are an agent."}
    assert chat(system=[header])["messages"] == [{"role": "user", "content": "hi"}]


def test_a_system_turn_stays_where_it_is() -> None:
    mark = {"type": "ephemeral"}
    turn = {"role": "system", "content": [{"type": "text", "text": "Agents: ...", "cache_control": mark}]}
    out = chat(messages=[{"role": "user", "content": "hi"}, turn, {"role": "assistant", "content": "Hello."}])
    assert out["messages"] == [{"role": "user", "content": "hi"},
                               {"role": "system", "content": [{"type": "text", "text": "Agents: ...",
                                                               "cache_control": mark}]},
                               {"role": "assistant", "content": "Hello."}]


def test_images_and_documents_become_chat_parts() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hé"}, "title": "n.txt"},
        {"type": "text", "text": "what are these?"},
    ]
    [user] = chat(messages=[{"role": "user", "content": content}])["messages"]
    assert user["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "document.pdf"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aMOp", "filename": "n.txt"}},
        {"type": "text", "text": "what are these?"},
    ]


def test_a_tool_loop_becomes_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Oslo?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "no station"},
                         {"type": "image", "source": {"type": "url", "url": "https://example.com/map.png"}}]},
            {"type": "text", "text": "and tomorrow?"}]},
    ]
    out = chat(messages=messages, tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert out["messages"][1:] == [
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no station"},
        # The tool result's image: a tool message carries text only.
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/map.png"}},
                                     {"type": "text", "text": "and tomorrow?"}]},
    ]
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"], "description": "weather for a city"}}]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choices(choice: dict[str, Any], expected: Any) -> None:
    out = chat(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out


def test_signed_thinking_becomes_reasoning_details_and_its_text_the_reasoning_of_a_tool_turn() -> None:
    turn = {"role": "assistant", "content": SIGNED["content"]}
    out = chat(messages=[{"role": "user", "content": "Weather in Paris?"}, turn])
    message = out["messages"][1]
    thinking, redacted = SIGNED["content"][0], SIGNED["content"][1]
    assert message["reasoning_details"] == [
        {"type": "reasoning.text", "text": thinking["thinking"], "signature": thinking["signature"],
         "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": redacted["data"], "format": "anthropic-claude-v1", "index": 1},
    ]
    assert message["reasoning_content"] == thinking["thinking"]


def test_thinking_after_text_keeps_its_place_and_unsigned_thinking_is_not_sent_as_claudes() -> None:
    turn = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "another model's", "signature": ""},
        {"type": "text", "text": "First."},
        {"type": "thinking", "thinking": "then", "signature": "sig"},
        {"type": "text", "text": " Second."}]}
    message = chat(messages=[{"role": "user", "content": "q"}, turn])["messages"][1]
    assert message == {"role": "assistant", "content": "First. Second.", "reasoning_details": [
        {"type": "reasoning.text", "text": "then", "signature": "sig", "format": "anthropic-claude-v1", "index": 0,
         "content_offset": 6}]}  # a finished turn's reasoning text is dropped, as chat templates drop it


def test_the_claude_adapter_rebuilds_the_turns_the_client_sent() -> None:
    """Both directions at once: an Anthropic history, through chat, is what Claude gets."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": SIGNED["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01ParisWeather7",
                                      "content": "18C"}]},
    ]
    req = parse_messages(_body(messages=messages, tools=[WEATHER]), Bounds())
    adapter = build_adapter("claude", ANTHROPIC_PROVIDER.config("http://127.0.0.1:9"))  # type: ignore[arg-type]
    assert isinstance(adapter, AnthropicAdapter)
    sent = adapter.payload(Call(req, "claude-sonnet-4-5-20250929"), False)
    assert sent["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01ParisWeather7", "content": "18C"}]}


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", "max_tokens": 100, **fields})


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 4000}, "low"), ({"type": "enabled", "budget_tokens": 10000}, "medium"),
    ({"type": "enabled", "budget_tokens": 31999}, "high"), ({"type": "disabled"}, None), ({"type": "adaptive"}, None),
])
def test_thinking_is_a_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    assert chat(thinking=thinking).get("reasoning_effort") == effort
    assert "thinking" not in chat(thinking=thinking)


def test_output_config_gives_the_effort_and_the_format() -> None:
    out = chat(thinking={"type": "enabled", "budget_tokens": 2000},
               output_config={"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}})
    assert out["reasoning_effort"] == "high" and effort_of_budget(2000) == "low"
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "output",
                                                                             "schema": {"type": "object"}}}


def test_fields_of_anthropics_platform_are_ignored_and_unknown_ones_passed_on() -> None:
    out = chat(service_tier="standard_only", inference_geo="us", context_management={"edits": []}, seed=3)
    assert out["seed"] == 3 and not {"service_tier", "inference_geo", "context_management"} & out.keys()


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "system", "content": [{"type": "image"}]}]}, "messages[0].content[0]"),
    ({"container": "c"}, "container"),
    ({"mcp_servers": [{"type": "url", "url": "https://x"}]}, "mcp_servers"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"name": "t"}]}, "tools[0].input_schema"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages[0].content[0].source"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}, "messages[0].content[0].source"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "x"}]}]},
     "messages[0].content[0].input"),
])
def test_what_cannot_be_served_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_chat_validation_still_applies_to_the_translation() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_messages(_body(max_tokens=0, messages=[{"role": "user", "content": "hi"}]), Bounds())
    assert caught.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as too_many:
        parse_messages(_body(messages=[{"role": "user", "content": "hi"}] * 3), Bounds(max_messages=2))
    assert too_many.value.param == "messages"
