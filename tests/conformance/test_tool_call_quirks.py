"""Tool calls across providers: ids another provider wrote, and calls streamed under one index."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

import pytest

from polyroute.adapters import build_adapter
from polyroute.adapters.tool_ids import for_claude, for_mistral
from tests.conformance.helpers import WEATHER_TOOL, as_sdk_reads, call, collect
from tests.conformance.providers import ANTHROPIC_PROVIDER, OPENAI_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

# Kimi's ids (https://github.com/maximhq/bifrost/issues/5097), OpenAI's, and the provider's own.
KIMI_ID, OPENAI_ID = "functions.get_weather:0", "call_DdmO9pD3xa9XTPNJ32zg2hcA"


def history(*ids: str) -> list[dict[str, Any]]:
    """A conversation whose assistant called the weather tool once per id, each call answered."""
    calls = [{"id": i, "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
             for i in ids]
    return [
        {"role": "user", "content": "Weather in Paris, twice?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": i, "content": "18C"} for i in ids),
    ]


async def sent(up: FakeUpstream, p: Provider, messages: list[dict[str, Any]], answer: Any) -> dict[str, Any]:
    up.reset()
    up.json(answer)
    adapter = build_adapter("t", p.config(up.url))
    try:
        await adapter.complete(call(messages=messages, tools=[WEATHER_TOOL]))
    finally:
        await adapter.aclose()
    body: dict[str, Any] = up.received[0].json()
    return body


async def test_claude_is_sent_another_providers_tool_ids_in_its_form(upstreams: dict[str, FakeUpstream]) -> None:
    """Claude refuses an id outside ``^[a-zA-Z0-9_-]+$`` (400 "tool_use.id: String should match pattern"), and with
    it the whole conversation a client began with Kimi; each pair still matches, and Claude's own ids pass as sent."""
    messages = history(KIMI_ID, "functions.get_weather?0", "toolu_01A09q90qw90lq917835lq9")
    before = copy.deepcopy(messages)
    body = await sent(upstreams["anthropic"], ANTHROPIC_PROVIDER, messages, load("anthropic", "completion"))
    uses = [b["id"] for b in body["messages"][1]["content"] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for b in body["messages"][2]["content"] if b["type"] == "tool_result"]
    assert uses == results and len(set(uses)) == 3  # two ids alike but for Claude's refused characters stay two
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", i) for i in uses)
    assert uses[0].startswith("functions_get_weather_0_") and uses[2] == "toolu_01A09q90qw90lq917835lq9"
    assert messages == before  # the client's request, which the next candidate gets, is unchanged


@pytest.mark.parametrize(("backend", "formed"), [({"provider": "mistral"}, True), ({}, False)])
async def test_mistral_is_sent_tool_ids_of_nine_letters_and_digits(
    upstreams: dict[str, FakeUpstream], backend: dict[str, str], formed: bool
) -> None:
    """Mistral refuses any other id ("Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a length of
    9."): a conversation begun elsewhere goes on there; its own ids, and other servers' requests, pass as sent."""
    mistral = replace(OPENAI_PROVIDER, backend={**OPENAI_PROVIDER.backend, **backend})
    messages = history(OPENAI_ID, KIMI_ID, "D681PevKs")
    before = copy.deepcopy(messages)
    body = await sent(upstreams["openai"], mistral, messages, load("openai", "completion"))
    calls = [c["id"] for c in body["messages"][1]["tool_calls"]]
    results = [m["tool_call_id"] for m in body["messages"][2:]]
    assert calls == results and calls[2] == "D681PevKs"
    if formed:
        assert all(re.fullmatch(r"[a-zA-Z0-9]{9}", i) for i in calls) and len(set(calls)) == 3
        assert calls[:2] == [for_mistral(OPENAI_ID), for_mistral(KIMI_ID)]  # the same ids on every request
    else:
        assert calls == [OPENAI_ID, KIMI_ID, "D681PevKs"]
    assert messages == before


def test_ids_in_form_are_kept_and_the_rest_written_the_same_way_each_time() -> None:
    assert for_claude("toolu_01A-b") == "toolu_01A-b" and for_claude("") == ""
    assert for_claude(KIMI_ID) == for_claude(KIMI_ID) != for_claude("functions.get_weather;0")
    assert for_mistral("D681PevKs") == "D681PevKs" and for_mistral("") == ""
    assert for_mistral(OPENAI_ID) == for_mistral(OPENAI_ID) != for_mistral(OPENAI_ID + "x")


@pytest.mark.parametrize(("provider", "fixture", "expected"), [
    ("vllm", "parallel_calls_one_index", [("add_numbers", '{"a": 2, "b": 2}'),
                                          ("get_weather", '{"location": "Tokyo", "unit": "celsius"}')]),
    ("openai", "tool_call_stream", [("get_weather", '{"location":"Paris"}')]),  # indices that are each a call's
])
async def test_calls_streamed_under_one_index_reach_the_client_as_separate_calls(
    upstreams: dict[str, FakeUpstream], provider: str, fixture: str, expected: list[tuple[str, str]]
) -> None:
    """OpenAI's SDK joins tool-call deltas by ``index``: two calls under index 0 would reach the client as one call
    named "add_numbersget_weather" whose arguments are two JSON texts run together."""
    up = upstreams["openai"]
    up.reset()
    up.stream(load(provider, fixture))
    adapter = build_adapter("t", OPENAI_PROVIDER.config(up.url))
    try:
        chunks = await collect(adapter, call(stream=True, tools=[WEATHER_TOOL]))
    finally:
        await adapter.aclose()
    message = as_sdk_reads(chunks)
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == expected
    assert [c["index"] for c in message["tool_calls"]] == list(range(len(expected)))
