"""Reasoning and interleaved tool calls through ``POST /v1/responses``, read by the unchanged ``openai`` SDK.

The upstreams are fake servers speaking DeepSeek's (OpenAI-compatible) and Claude's wire formats. A Claude tool
loop through the Responses API must give Claude its signed thinking back unchanged, as the chat path does.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ENV = {"TEST_KEY": "sk-test"}
WEATHER: list[Any] = [{"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]
ASK = {"role": "user", "content": "Weather in Paris?"}
SIGNED = load("anthropic", "thinking_tool_use")
SEALED: Any = ["reasoning.encrypted_content"]



def config(first: FakeUpstream, claude: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"ds": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"},
                     "claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
        "models": {"reasoner": {"backend": "ds", "upstream": "deepseek-reasoner"},
                   "sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"}},
    }


def client_of(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def deepseek_reasoned() -> dict[str, Any]:
    """DeepSeek's documented answer with thinking on: ``reasoning_content`` beside ``content``, and the reasoning
    counted in ``completion_tokens_details`` (https://api-docs.deepseek.com/guides/reasoning_model)."""
    doc = load("deepseek", "completion")
    doc["choices"][0]["message"]["reasoning_content"] = "The user greets me. A short greeting back fits."
    doc["usage"]["completion_tokens_details"] = {"reasoning_tokens": 6}
    return dict(doc)


def then_tool_result(output: list[Any]) -> list[Any]:
    """What a client that keeps no server state sends next: the output items as it got them, then the result."""
    items = [item.model_dump(exclude_none=True) for item in output]
    call = next(i for i in items if i["type"] == "function_call")
    return [ASK, *items, {"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}]


def test_a_deepseek_answer_s_reasoning_is_a_reasoning_item(first: FakeUpstream, claude: FakeUpstream) -> None:
    first.json(deepseek_reasoned())
    with live_gateway(config(first, claude), env=ENV) as g:
        resp = client_of(g.base_url).responses.create(model="reasoner", input="Hi")
    reasoning, message = resp.output
    assert reasoning.type == "reasoning" and reasoning.summary == [] and reasoning.encrypted_content is None
    assert reasoning.content is not None and reasoning.content[0].type == "reasoning_text"
    assert reasoning.content[0].text == "The user greets me. A short greeting back fits."
    assert message.type == "message" and resp.output_text == "Hello! How can I help you today?"
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens == 6


def test_a_streamed_deepseek_answer_streams_its_reasoning_first(first: FakeUpstream, claude: FakeUpstream) -> None:
    first.stream(load("deepseek", "reasoning_stream"))
    with live_gateway(config(first, claude), env=ENV) as g, \
            client_of(g.base_url).responses.stream(model="reasoner", input="Hi") as stream:
        seen = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in seen]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    thought = "".join(e.delta for e in seen if e.type == "response.reasoning_text.delta")
    assert thought == "The user greets me. A short greeting back fits."
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.content is not None and reasoning.content[0].text == thought
    assert message.type == "message" and final.output_text == "Hello! How can I help you today?"


def interleaved() -> list[dict[str, Any]]:
    """Two parallel calls whose pieces alternate, as some OpenAI-compatible servers send them; chunk shape as
    tests/fixtures/openai/tool_call_stream.json."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def call(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
        piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if name:
            piece.update(id=f"call_{name}", type="function", function={"name": name, "arguments": arguments})
        return chunk({"tool_calls": [piece]})

    return [chunk({"role": "assistant", "content": None}), call(0, "", "paris"), call(1, "", "oslo"),
            call(0, "{\"location\": "), call(1, "{\"location\": "), call(0, "\"Paris\"}"), call(1, "\"Oslo\"}"),
            chunk({}, "tool_calls")]


def test_interleaved_tool_calls_stream_in_order_to_the_sdk(first: FakeUpstream, claude: FakeUpstream) -> None:
    first.stream(interleaved())
    with live_gateway(config(first, claude), env=ENV) as g, \
            client_of(g.base_url).responses.stream(model="reasoner", input="Weather?", tools=WEATHER) as stream:
        seen = list(stream)
        final = stream.get_final_response()
    done_at: dict[int, int] = {}
    for n, e in enumerate(seen):
        if e.type == "response.output_item.done":
            done_at[e.output_index] = n
        elif e.type == "response.function_call_arguments.delta":
            assert e.output_index not in done_at, "a delta after its item's end"
    whole = {e.item_id: e.arguments for e in seen if e.type == "response.function_call_arguments.done"}
    assert sorted(whole.values()) == ["{\"location\": \"Oslo\"}", "{\"location\": \"Paris\"}"]
    calls = [(c.call_id, c.arguments) for c in final.output if c.type == "function_call"]
    assert calls == [("call_paris", "{\"location\": \"Paris\"}"), ("call_oslo", "{\"location\": \"Oslo\"}")]


def test_a_claude_tool_loop_gets_its_signed_thinking_back(first: FakeUpstream, claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(first, claude), env=ENV) as g:
        client = client_of(g.base_url)
        turn = client.responses.create(model="sonnet", input=[ASK], tools=WEATHER, include=SEALED)  # type: ignore[list-item]
        assert [i.type for i in turn.output] == ["reasoning", "message", "function_call"]
        reasoning = turn.output[0]
        assert reasoning.type == "reasoning" and reasoning.encrypted_content
        assert reasoning.content is not None and reasoning.content[0].text == SIGNED["content"][0]["thinking"]
        second = client.responses.create(model="sonnet", input=then_tool_result(turn.output), tools=WEATHER)
    assert second.output_text == "Hello! How can I help you today?"
    sent = claude.received[1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": SIGNED["content"]}
    assert sent[2]["content"][0]["type"] == "tool_result"


def test_a_streamed_claude_turn_goes_back_signed(first: FakeUpstream, claude: FakeUpstream) -> None:
    claude.stream([{"event": e["type"], "data": e} for e in load("anthropic", "thinking_omitted_stream")])
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(first, claude), env=ENV) as g:
        client = client_of(g.base_url)
        with client.responses.stream(model="sonnet", input=[ASK], tools=WEATHER, include=SEALED) as s:  # type: ignore[list-item]
            final = s.get_final_response()
        assert [i.type for i in final.output] == ["reasoning", "function_call"]
        client.responses.create(model="sonnet", input=then_tool_result(final.output), tools=WEATHER)
    blocks = claude.received[1].json()["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    assert blocks[0]["thinking"] == "" and blocks[0]["signature"].startswith("EqMCCkgI")


def test_without_include_claude_s_thinking_is_not_sent_back(first: FakeUpstream, claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(first, claude), env=ENV) as g:
        client = client_of(g.base_url)
        turn = client.responses.create(model="sonnet", input=[ASK], tools=WEATHER)  # type: ignore[list-item]
        assert turn.output[0].type == "reasoning" and turn.output[0].encrypted_content is None
        client.responses.create(model="sonnet", input=then_tool_result(turn.output), tools=WEATHER)
    blocks = claude.received[1].json()["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]


def test_a_forged_encrypted_content_is_a_400_naming_it(first: FakeUpstream, claude: FakeUpstream) -> None:
    forged = [ASK, {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "pr1.e30"},
              {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}]
    with live_gateway(config(first, claude), env=ENV) as g, pytest.raises(openai.BadRequestError) as caught:
        client_of(g.base_url).responses.create(model="sonnet", input=forged, tools=WEATHER)  # type: ignore[arg-type]
    assert caught.value.param == "input[1].encrypted_content"
    assert claude.received == []
