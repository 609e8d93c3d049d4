"""Gemini's thought signatures in a tool-use loop, through a real gateway and OpenAI's Python SDK.

The application appends the assistant message it got, then the tool's result, as OpenAI's docs tell it to. A turn
whose calls Claude made reaches Gemini, after a failover, with Google's stand-in signature on its first call; a
turn Gemini made reaches Gemini again with its own signature, streamed or not (``tests/fixtures/gemini``, the
thought-signatures page's parallel-call example).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from polyroute.adapters.gemini_signatures import STAND_IN
from tests.support.live import live_gateway
from tests.support.upstreams import OPENAI, FakeUpstream, load

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
TEMPERATURE = {"type": "function", "function": {"name": "get_current_temperature", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
ASK = {"role": "user", "content": "Weather in Paris?"}
GEMINI_CALLS = load("gemini", "tool_call")["choices"][0]["message"]["tool_calls"]



def config(claude: FakeUpstream, gemini: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "google": {"type": "openai", "base_url": gemini.url + "/v1beta/openai", "api_key": "env:TEST_KEY",
                                "provider": "gemini"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"},
                   "gemini": {"backend": "google", "upstream": "gemini-3-pro-preview"}},
        "routes": {"agent": {"models": ["sonnet", "gemini"]}},
    }


def then_tool_results(message: Any) -> list[dict[str, Any]]:
    turn = message.model_dump(exclude_none=True)  # what an application appends to its history
    return [ASK, turn, *({"role": "tool", "tool_call_id": c["id"], "content": "18C"} for c in turn["tool_calls"])]


def test_claudes_calls_reach_gemini_with_the_stand_in_after_a_failover(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(load("anthropic", "tool_call"))
    claude.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    fallback.json(load("openai", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER])  # type: ignore[list-item]
        history = then_tool_results(first.choices[0].message)
        raw = client.chat.completions.with_raw_response.create(
            model="agent", messages=history, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert raw.headers["x-polyroute-model"] == "gemini"
    sent = fallback.received[0].json()["messages"][1]["tool_calls"][0]
    assert sent["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert sent["extra_content"] == {"google": {"thought_signature": STAND_IN}}
    assert "extra_content" not in history[1]["tool_calls"][0]


@pytest.mark.parametrize("stream", [False, True])
def test_geminis_signature_reaches_the_client_and_goes_back_unchanged(
        claude: FakeUpstream, fallback: FakeUpstream, stream: bool) -> None:
    if stream:
        fallback.stream(load("gemini", "tool_call_stream"))
    else:
        fallback.json(load("gemini", "tool_call"))
    fallback.json(load("openai", "completion"))
    ask = {"role": "user", "content": "Check the weather in Paris and London."}
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        if stream:
            with client.chat.completions.stream(model="gemini", messages=[ask],  # type: ignore[list-item]
                                                tools=[TEMPERATURE]) as s:  # type: ignore[list-item]
                message = s.get_final_completion().choices[0].message
        else:
            message = client.chat.completions.create(
                model="gemini", messages=[ask], tools=[TEMPERATURE]).choices[0].message  # type: ignore[list-item]
        got = message.model_dump(exclude_none=True)
        history = [ask, got, *({"role": "tool", "tool_call_id": c["id"], "content": "15C"} for c in got["tool_calls"])]
        client.chat.completions.create(model="gemini", messages=history, tools=[TEMPERATURE])  # type: ignore[arg-type, list-item]
    assert got["tool_calls"][0]["extra_content"] == GEMINI_CALLS[0]["extra_content"]
    back = fallback.received[1].json()["messages"][1]["tool_calls"]
    assert [{k: v for k, v in c.items() if k != "index"} for c in back] == GEMINI_CALLS
    assert claude.received == []


@pytest.mark.parametrize("refusal", ["400_corrupted_thought_signature", "400_thought_signature_not_valid"])
def test_a_signature_another_google_endpoint_made_is_replaced_by_the_stand_in(
        fallback: FakeUpstream, refusal: str) -> None:
    """A route from the Gemini API to Vertex AI: Gemini signs its calls on one, fails, and the next turn reaches
    the other, which refuses that endpoint's signatures (a 400, "Corrupted thought signature." or "Thought signature
    is not valid"). The same model is asked again at once with Google's stand-in on the calls of the turn, and
    answers; the client sees one answer and the attempt log says why the first attempt failed."""
    with FakeUpstream(OPENAI) as studio:
        studio.json(load("gemini", "tool_call"))
        studio.json({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}, 503)
        doc = load("gemini", f"errors/{refusal}")
        fallback.json(doc["body"], doc["status"])
        fallback.json(load("openai", "completion"))
        raw_config = {
            "backends": {"studio": {"type": "openai", "base_url": studio.url + "/v1beta/openai",
                                    "api_key": "env:TEST_KEY", "provider": "gemini"},
                         "vertex": {"type": "openai", "base_url": fallback.url + "/v1/projects/p/locations/global/"
                                    "endpoints/openapi", "api_key": "env:TEST_KEY", "provider": "vertex"}},
            "models": {"studio": {"backend": "studio", "upstream": "gemini-3-pro-preview"},
                       "vertex": {"backend": "vertex", "upstream": "google/gemini-3-pro-preview"}},
            "routes": {"agent": {"models": ["studio", "vertex"]}},
        }
        ask = {"role": "user", "content": "Check the weather in Paris and London."}
        with live_gateway(raw_config, env={"TEST_KEY": "sk-test"}) as g:
            client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
            got = client.chat.completions.create(
                model="agent", messages=[ask], tools=[TEMPERATURE]).choices[0].message  # type: ignore[list-item]
            turn = got.model_dump(exclude_none=True)
            history = [ask, turn, *({"role": "tool", "tool_call_id": c["id"], "content": "15C"}
                                    for c in turn["tool_calls"])]
            raw = client.chat.completions.with_raw_response.create(
                model="agent", messages=history, tools=[TEMPERATURE])  # type: ignore[arg-type, list-item]
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-polyroute-model"] == "vertex"
    attempts = raw.headers["x-polyroute-attempt-log"].split("; ")
    assert [a.split(" ")[:2] for a in attempts[-2:]] == [["vertex/vertex", "param_refused"], ["vertex/vertex", "ok"]]
    first, second = (r.json()["messages"][1]["tool_calls"] for r in fallback.received)
    assert first[0]["extra_content"] == GEMINI_CALLS[0]["extra_content"]  # sent as Gemini made it, refused
    assert second[0]["extra_content"] == {"google": {"thought_signature": STAND_IN}}
    assert [c["id"] for c in second] == [c["id"] for c in GEMINI_CALLS]
    assert "x-polyroute-dropped-params" not in raw.headers  # the gateway's own: nothing the client sent went
