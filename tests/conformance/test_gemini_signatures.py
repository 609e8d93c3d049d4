"""Gemini's thought signatures on tool calls: kept on the way out, given a stand-in on the way in where missing.

Gemini 3 signs its tool calls as ``extra_content.google.thought_signature`` and refuses a history whose current turn
has an unsigned first call in a step; for calls it did not make, Google documents a stand-in signature
(https://ai.google.dev/gemini-api/docs/thought-signatures). The fixtures are the page's parallel-call example,
whole (``tests/fixtures/gemini/tool_call.json``) and streamed as Gemini's endpoint streams (``tool_call_stream.sse``).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.adapters.gemini_signatures import STAND_IN, is_google
from polyroute.assemble import Assembly
from polyroute.errors import UpstreamError, UpstreamParamRefused
from tests.conformance.helpers import as_sdk_reads, call, collect
from tests.conformance.providers import OPENAI_PROVIDER, Provider, _compatible
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

GEMINI_PROVIDER = _compatible("gemini", "/v1beta/openai", provider="gemini")
WHOLE = load("gemini", "tool_call")
SIGNATURE = WHOLE["choices"][0]["message"]["tool_calls"][0]["extra_content"]["google"]["thought_signature"]
TEMPERATURE: dict[str, Any] = {"type": "function", "function": {"name": "get_current_temperature", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
ASK = {"role": "user", "content": "Check the weather in Paris and London."}


@pytest.fixture
def up(upstreams: dict[str, FakeUpstream]) -> Iterator[FakeUpstream]:
    """The session's OpenAI-wire fake, serving as Gemini's endpoint."""
    server = upstreams["openai"]
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def gemini(up: FakeUpstream) -> AsyncIterator[Adapter]:
    built = build_adapter("gemini-test", GEMINI_PROVIDER.config(up.url))
    yield built
    await built.aclose()


def claude_made(second_step: bool = False) -> list[dict[str, Any]]:
    """A turn whose calls Claude made (its ids, no signature): two parallel calls, their results, maybe a next step."""
    calls = [{"id": f"toolu_01{city}", "type": "function",
              "function": {"name": "get_current_temperature", "arguments": f'{{"location":"{city}"}}'}}
             for city in ("Paris", "London")]
    turn: list[dict[str, Any]] = [
        ASK, {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_01Paris", "content": "15C"},
        {"role": "tool", "tool_call_id": "toolu_01London", "content": "12C"},
    ]
    if second_step:
        turn += [{"role": "assistant", "content": "Booking.", "tool_calls": [
            {"id": "toolu_01Taxi", "type": "function", "function": {"name": "book_taxi", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_01Taxi", "content": "booked"}]
    return turn


def sent_calls(up: FakeUpstream, at: int = 0) -> list[list[dict[str, Any]]]:
    """The tool calls of each assistant message the upstream received."""
    return [m["tool_calls"] for m in up.received[at].json()["messages"] if m.get("tool_calls")]


# --- out: Gemini's signatures reach the client whole ---------------------------------------


async def test_a_whole_answer_keeps_each_calls_extra_content(up: FakeUpstream, gemini: Adapter) -> None:
    up.json(WHOLE)
    message = (await gemini.complete(call(upstream="gemini-3-pro-preview", tools=[TEMPERATURE])))["choices"][0][
        "message"]
    assert message["tool_calls"] == WHOLE["choices"][0]["message"]["tool_calls"]


async def test_a_stream_keeps_it_and_so_do_the_sdk_and_the_assembled_answer(
        up: FakeUpstream, gemini: Adapter) -> None:
    up.stream(load("gemini", "tool_call_stream"))
    chunks = await collect(gemini, call(upstream="gemini-3-pro-preview", tools=[TEMPERATURE], stream=True))
    deltas = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert deltas[0]["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    assert "extra_content" not in deltas[1]
    expected = WHOLE["choices"][0]["message"]["tool_calls"]
    joined = Assembly()
    for chunk in chunks:
        joined.add(chunk)
    assembled = joined.response()["choices"][0]
    assert assembled["message"]["tool_calls"] == expected  # a non-streamed request answered by a stream
    assert assembled["finish_reason"] == "tool_calls"
    sdk = as_sdk_reads(chunks)
    assert [{k: v for k, v in c.items() if k != "index"} for c in sdk["tool_calls"]] == expected
    assert sdk["role"] == "assistant"  # Gemini says it in every delta; OpenAI's SDK would join each one said


async def test_the_answer_sent_back_goes_to_gemini_unchanged(up: FakeUpstream, gemini: Adapter) -> None:
    up.json(WHOLE)
    message = dict((await gemini.complete(call(upstream="gemini-3-pro-preview", tools=[TEMPERATURE])))["choices"][0][
        "message"])
    up.json(load("openai", "completion"))
    history = [ASK, message, {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "15C"},
               {"role": "tool", "tool_call_id": message["tool_calls"][1]["id"], "content": "12C"}]
    await gemini.complete(call(upstream="gemini-3-pro-preview", messages=history, tools=[TEMPERATURE]))
    assert sent_calls(up, 1) == [WHOLE["choices"][0]["message"]["tool_calls"]]


# --- in: calls another model made get the stand-in -----------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_claude_made_get_the_stand_in_on_the_first_call_of_each_step(
        up: FakeUpstream, gemini: Adapter, stream: bool) -> None:
    history = claude_made(second_step=True)
    c = call(upstream="gemini-3-pro-preview", messages=history, tools=[TEMPERATURE])
    before = copy.deepcopy(c.request.raw())
    for _ in range(2):  # the same request is attempted again on a failover: it is never changed in place
        if stream:
            up.stream(load("gemini", "tool_call_stream"))
            await collect(gemini, c)
        else:
            up.json(load("openai", "completion"))
            await gemini.complete(c)
    assert sent_calls(up, 0) == sent_calls(up, 1)
    steps = sent_calls(up)
    assert [call_["extra_content"] for call_ in (steps[0][0], steps[1][0])] == [
        {"google": {"thought_signature": STAND_IN}}] * 2
    assert "extra_content" not in steps[0][1]  # a parallel call: only the first is checked
    assert [call_["id"] for s in steps for call_ in s] == ["toolu_01Paris", "toolu_01London", "toolu_01Taxi"]
    assert c.request.raw() == before and "extra_content" not in str(history)


async def test_earlier_turns_signed_calls_and_other_namespaces(up: FakeUpstream, gemini: Adapter) -> None:
    """Only the current turn is checked; a signature is kept as it came; other ``extra_content`` stays beside ours."""
    earlier = claude_made()
    signed = copy.deepcopy(WHOLE["choices"][0]["message"])
    other = {"id": "toolu_01Oslo", "type": "function", "extra_content": {"vertex": {"x": 1}, "google": {"y": 2}},
             "function": {"name": "get_current_temperature", "arguments": '{"location":"Oslo"}'}}
    history = [*earlier, {"role": "assistant", "content": "15C and 12C."}, {"role": "user", "content": "Oslo?"},
               signed, {"role": "tool", "tool_call_id": signed["tool_calls"][0]["id"], "content": "9C"},
               {"role": "assistant", "content": None, "tool_calls": [other]},
               {"role": "tool", "tool_call_id": "toolu_01Oslo", "content": "3C"}]
    up.json(load("openai", "completion"))
    await gemini.complete(call(upstream="gemini-3-pro-preview", messages=history, tools=[TEMPERATURE]))
    sent = up.received[0].json()["messages"]
    assert sent[:6] == history[:6]  # the earlier turn as the client sent it
    assert sent[6] == signed
    assert sent[8]["tool_calls"][0]["extra_content"] == {"vertex": {"x": 1},
                                                         "google": {"y": 2, "thought_signature": STAND_IN}}


@pytest.mark.parametrize(("provider", "model"), [
    (GEMINI_PROVIDER, "meta/llama-4-maverick-17b-128e-instruct-maas"),  # Vertex AI serves other families too
    (OPENAI_PROVIDER, "gemini-3-pro-preview"),
], ids=["vertex-llama", "openai"])
async def test_no_other_model_or_backend_is_sent_googles_field(
        up: FakeUpstream, provider: Provider, model: str) -> None:
    adapter = build_adapter("other", provider.config(up.url))
    up.json(load("openai", "completion"))
    try:
        await adapter.complete(call(upstream=model, messages=claude_made(), tools=[TEMPERATURE]))
    finally:
        await adapter.aclose()
    assert up.received[0].json()["messages"] == claude_made()


async def test_geminis_400_for_an_unsigned_call_falls_over(up: FakeUpstream, gemini: Adapter) -> None:
    doc = load("gemini", "errors/400_function_call_missing_thought_signature")
    up.json(doc["body"], doc["status"])
    with pytest.raises(UpstreamError) as caught:
        await gemini.complete(call(upstream="gemini-3-pro-preview", messages=claude_made()))
    err = caught.value
    assert isinstance(err, UpstreamParamRefused) and err.param == "messages" and err.may_fall_over


@pytest.mark.parametrize(("provider", "base_url", "google"), [
    (None, "https://generativelanguage.googleapis.com/v1beta/openai", True),
    (None, "https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/openapi", True),
    (None, "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi",
     True),
    ("gemini", "http://127.0.0.1:8080/v1", True), ("Vertex", "https://relay.example/v1", True),
    (None, "https://api.openai.com/v1", False), (None, "https://openrouter.ai/api/v1", False),
    ("openrouter", "https://generativelanguage.googleapis.com/v1beta/openai", False),
    (None, "https://notaiplatform.googleapis.com.example/v1", False),
])
def test_googles_endpoints_are_known_by_provider_or_host(provider: str | None, base_url: str, google: bool) -> None:
    assert is_google(provider, base_url) is google


async def test_other_upstreams_are_not_sent_gemini_s_signatures(up: FakeUpstream, gemini: Adapter) -> None:
    """A Gemini-made turn falling over to a server that checks a message's fields (Mistral, Groq refuse unknown
    ones): the calls go without ``extra_content``; Gemini itself gets them back as they came."""
    message = copy.deepcopy(WHOLE["choices"][0]["message"])
    history = [ASK, message, *({"role": "tool", "tool_call_id": c["id"], "content": "15C"}
                               for c in message["tool_calls"])]
    other = build_adapter("other-test", OPENAI_PROVIDER.config(up.url))
    try:
        for adapter in (other, gemini):
            up.json(load("openai", "completion"))
            await adapter.complete(call(messages=history, tools=[TEMPERATURE], upstream="gemini-3.5-flash"))
    finally:
        await other.aclose()
    to_other, to_gemini = (r.json()["messages"][1]["tool_calls"] for r in up.received)
    assert all("extra_content" not in c for c in to_other)
    assert [c["id"] for c in to_other] == [c["id"] for c in message["tool_calls"]]
    assert to_gemini == message["tool_calls"]
    assert history[1] == WHOLE["choices"][0]["message"]  # the client's request is never changed in place
