"""Gemini's, Mistral's and Together's ways with tool calls and finish words, as OpenAI clients read them.

Sources: Gemini's OpenAI-compatible stream sends tool-call deltas without ``index`` and ends an answer
that called tools with ``stop`` (https://github.com/THU-MAIC/OpenMAIC/issues/1556,
https://github.com/googleapis/python-genai/issues/2868); Mistral ends an answer cut at the model's context
with ``model_length`` (its finish_reason enum); servers behind Together send ``eos``
(https://github.com/vibrantlabsai/ragas/issues/1548).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream

ASK = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call(cid: str, city: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
            "extra_content": {"google": {"thought_signature": "sig"}}}


def gateway(up: FakeUpstream) -> Any:
    return live_gateway({"backends": {"g": {"type": "openai", "base_url": up.url + "/v1", "api_key": "env:K"}},
                         "models": {"m": {"backend": "g", "upstream": "gemini-3-flash"}}}, env={"K": "k"})


def events(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize("stream", [True, False])
def test_gemini_tool_calls_get_their_index_and_end_as_tool_calls(first: FakeUpstream, stream: bool) -> None:
    first.stream([chunk({"role": "assistant", "tool_calls": [call("a1", "Paris")]}),
                  chunk({"tool_calls": [call("b2", "Rome")]}), chunk({}, "stop")])
    with gateway(first) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", timeout=30,
                          json={"model": "m", "messages": ASK, "stream": stream})
    assert resp.status_code == 200
    if stream:
        got = events(resp)
        deltas = [tc for e in got for c in e["choices"] for tc in c["delta"].get("tool_calls") or []]
        assert [(d["id"], d["index"]) for d in deltas] == [("a1", 0), ("b2", 1)]
        last = next(c for e in got for c in e["choices"] if c.get("finish_reason"))
    else:
        last = resp.json()["choices"][0]
        calls = last["message"]["tool_calls"]
        assert [(c["id"], json.loads(c["function"]["arguments"])["city"]) for c in calls] == [
            ("a1", "Paris"), ("b2", "Rome")]
    assert (last["finish_reason"], last.get("native_finish_reason")) == ("tool_calls", "stop")


@pytest.mark.parametrize(("word", "as_openai"), [("model_length", "length"), ("eos", "stop")])
def test_other_finish_words_reach_clients_as_openais(first: FakeUpstream, word: str, as_openai: str) -> None:
    first.stream([chunk({"role": "assistant", "content": "Hi"}), chunk({}, word)])
    with gateway(first) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "m", "messages": ASK}, timeout=30)
    choice = resp.json()["choices"][0]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == (as_openai, word)
