"""Answers whose fields have the wrong types are a bad answer of that upstream, not a crash of the gateway.

Each case is valid JSON in the wrong shape (a number for ``content``, a string for ``delta``, a
tool call that is not an object, nesting past what can be written again): the attempt fails as
``bad_response``, the breaker counts it, and the next candidate answers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import ANTHROPIC, OLLAMA, FakeUpstream, load

ASK = [{"role": "user", "content": "Spell the NATO alphabet"}]


def chunk(delta: Any, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def deep(levels: int) -> Any:
    doc: Any = "x"
    for _ in range(levels):
        doc = {"a": doc}
    return doc


BAD_STREAMS = {
    "delta-is-text": [chunk("hello")],
    "content-is-a-number": [chunk({"content": 12345})],
    "content-number-after-a-token": [chunk({"content": "Hi"}), chunk({"content": 12345})],
    "tool-calls-not-a-list": [chunk({"tool_calls": "not a list"})],
    "tool-call-index-text": [chunk({"tool_calls": [{"index": "x", "function": 5}]})],
    "nested-too-deep": [{**chunk({"content": "Hi"}), "extra": deep(300)}],
    "reasoning-is-a-number": [chunk({"reasoning": 12345})],  # OpenRouter's and vLLM's name for it
}


def config(first: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {
            "prov": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"},
            "fb": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"},
        },
        "models": {"m": {"backend": "prov", "upstream": "their-model"}, "f": {"backend": "fb", "upstream": "fb"}},
        "routes": {"r": {"models": ["m", "f"]}},
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_a_wrongly_typed_answer_fails_over(first: FakeUpstream, fallback: FakeUpstream, case: str,
                                          stream: bool) -> None:
    first.stream(BAD_STREAMS[case])
    fallback.stream(load("openai", "stream"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        body = {"model": "r", "messages": ASK, "stream": stream}
        resp = httpx.post(f"{g.base_url}/chat/completions", json=body, timeout=30)
        health = httpx.get(f"{g.base_url}/health/backends", timeout=30).json()
    assert resp.status_code == 200, resp.text
    assert health["models"]["m"]["window"]["failures"] == 1  # the breaker counted it
    if not stream:
        assert resp.headers["x-polyroute-model"] == "f" and resp.headers["x-polyroute-attempts"] == "2"
        assert resp.json()["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
        return
    events = [json.loads(line[6:]) for line in resp.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    if case == "content-number-after-a-token":
        # A token was sent before the bad chunk and no candidate here can continue an answer: the stream
        # ends with an error event, never a 500 nor a truncated stream that looks finished.
        assert text == "Hi" and events[-1]["error"]["code"] == "stream_cut" and "data: [DONE]" not in resp.text
    else:
        assert text == "Hello! How can I help you today?" and resp.headers["x-polyroute-model"] == "f"


@pytest.mark.parametrize("content", [12345, [{"type": "image", "url": "x"}]])
def test_a_whole_answer_with_wrong_types_fails_over(first: FakeUpstream, fallback: FakeUpstream,
                                                    content: Any) -> None:
    answer = load("openai", "completion")
    answer["choices"][0]["message"]["content"] = content
    first.json(answer)
    fallback.json(load("openai", "completion"))
    raw = config(first, fallback)
    raw["backends"]["prov"]["assemble_from_stream"] = False
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "f"
    assert "bad_response" in resp.headers.get("x-polyroute-attempt-log", "bad_response")


def test_content_sent_as_text_parts_is_joined(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.stream([chunk({"content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}),
                  chunk({}, "stop")])
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "Hello"
    assert fallback.received == []


def test_chunks_without_a_token_do_not_hold_a_stalled_answer_open(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """One token, then keep-alive chunks of empty deltas for 20 s: a gap without tokens past stall_timeout (1 s)
    is a stall, so the whole answer comes from the next model long before the keep-alives end."""
    first.stream([chunk({"content": "Hi"}), *[chunk({}) for _ in range(200)]], gap=0.1)
    fallback.stream(load("openai", "stream"))
    raw = config(first, fallback)
    raw["routes"]["r"]["stall_timeout"] = 1.0
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        started = time.monotonic()
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
        took = time.monotonic() - started
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "f"
    assert resp.json()["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
    assert took < 15  # time is the point: the keep-alives alone would have held it 20 s


ENDLESS = {
    "text": [chunk({"content": "x" * 100}) for _ in range(50)],
    "tool-call arguments": [
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                     "function": {"name": "f", "arguments": ""}}]}),
        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x" * 100}}]}) for _ in range(50)],
    ],
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", list(ENDLESS))
def test_an_answer_past_max_answer_bytes_ends_and_is_not_kept(first: FakeUpstream, fallback: FakeUpstream,
                                                             stream: bool, kind: str) -> None:
    first.stream(ENDLESS[kind])
    raw = config(first, fallback)
    raw["backends"]["prov"]["max_answer_bytes"] = 2000
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK, "stream": stream},
                          timeout=30)
    assert "the answer passed 2000 characters (max_answer_bytes)" in resp.text
    assert fallback.received == []  # not continued elsewhere: no model could take such a prefix
    if stream:
        assert resp.status_code == 200 and "data: [DONE]" not in resp.text and '"code":"stream_cut"' in resp.text
    else:
        assert resp.status_code == 502


def test_an_html_page_instead_of_a_stream_is_a_bad_answer(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.raw(b"<html><body>Please log in</body></html>", 200, media_type="text/html")
    fallback.stream(load("openai", "stream"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "f"
    assert resp.headers["x-polyroute-attempt-log"].startswith("prov/m bad_response ")  # not "unavailable"


def test_tool_call_arguments_sent_as_a_json_value_are_read_as_their_text(first: FakeUpstream,
                                                                      fallback: FakeUpstream) -> None:
    """Hugging Face TGI sends a tool call's arguments as an object (huggingface/text-generation-inference#2461)."""
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
    first.stream([chunk({"role": "assistant", "tool_calls": [call]}), chunk({}, "tool_calls")])
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and fallback.received == []
    [got] = resp.json()["choices"][0]["message"]["tool_calls"]
    assert json.loads(got["function"]["arguments"]) == {"location": "Paris"}


def test_an_anthropic_event_with_wrong_types_fails_over(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """Anthropic's wire format: a content_block_delta whose text is a number is a bad answer, as for OpenAI's."""
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                              "model": "claude", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 12345}},
    ]
    fallback.stream(load("openai", "stream"))
    with FakeUpstream(ANTHROPIC) as claude:
        claude.stream([{"event": e["type"], "data": e} for e in events], terminate=False)
        raw = config(claude, fallback)
        raw["backends"]["prov"] = {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}
        with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "f"
    assert resp.headers["x-polyroute-attempt-log"].startswith("prov/m bad_response ")


def ollama_record(message: Any, done: bool = False, **rest: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "created_at": "2025-10-26T17:15:24Z", "message": message, "done": done, **rest}


BAD_OLLAMA = {
    "message-is-text": ollama_record("hello"),
    "content-is-a-number": ollama_record({"role": "assistant", "content": 12345}),
    "content-is-an-object": ollama_record({"role": "assistant", "content": {"text": "hi"}}),
    "thinking-is-a-list": ollama_record({"role": "assistant", "content": "", "thinking": ["a"]}),
    "tool-calls-not-a-list": ollama_record({"role": "assistant", "tool_calls": {"function": {"name": "f"}}}),
    "tool-call-without-a-name": ollama_record({"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}),
    "tool-call-arguments-too-deep": ollama_record({"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": deep(300)}}]}),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_OLLAMA))
def test_an_ollama_record_with_wrong_types_fails_over(fallback: FakeUpstream, case: str, stream: bool) -> None:
    """Ollama's NDJSON records are checked as OpenAI's and Anthropic's chunks are: text where text belongs, a
    tool call naming its function, counts that are counts. A bad one fails over, counted by the breaker."""
    record = BAD_OLLAMA[case]
    fallback.stream(load("openai", "stream"))
    with FakeUpstream(OLLAMA) as ollama:
        if stream:
            ollama.stream([record, ollama_record({"role": "assistant", "content": ""}, True, done_reason="stop")])
        else:
            ollama.json({**record, "done": True, "done_reason": "stop"})
        raw = config(ollama, fallback)
        raw["backends"]["prov"] = {"type": "ollama", "base_url": ollama.url}
        with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions",
                              json={"model": "r", "messages": ASK, "stream": stream}, timeout=30)
            health = httpx.get(f"{g.base_url}/health/backends", timeout=30).json()
    assert resp.status_code == 200, resp.text
    assert health["models"]["m"]["window"]["failures"] == 1
    if not stream:
        assert resp.headers["x-polyroute-model"] == "f"
        assert resp.headers["x-polyroute-attempt-log"].startswith("prov/m bad_response ")
        assert resp.json()["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
    else:
        assert "Hello" in resp.text and "data: [DONE]" in resp.text and "12345" not in resp.text


def test_an_ollama_tool_call_reaches_the_client_with_json_text_arguments(first: FakeUpstream,
                                                                        fallback: FakeUpstream) -> None:
    """The check keeps what Ollama documents working: arguments as a JSON object become the JSON text clients
    read, and a call with no id gets one."""
    with FakeUpstream(OLLAMA) as ollama:
        ollama.json(load("ollama", "tool_call"))
        raw = config(ollama, fallback)
        raw["backends"]["prov"] = {"type": "ollama", "base_url": ollama.url}
        with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "m", resp.text
    [got] = resp.json()["choices"][0]["message"]["tool_calls"]
    assert got["id"].startswith("call_") and isinstance(json.loads(got["function"]["arguments"]), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_an_ollama_answer_whose_counts_are_not_counts_is_kept_and_its_usage_estimated(
    fallback: FakeUpstream, stream: bool,
) -> None:
    """The answer itself is whole: only its token counts cannot be read. It is not asked again elsewhere (that
    would bill twice); its usage is estimated and says so, in the answer and the ledger alike."""
    last = ollama_record({"role": "assistant", "content": ""}, True, done_reason="stop",
                         prompt_eval_count="twelve", eval_count=-3)
    with FakeUpstream(OLLAMA) as ollama:
        ollama.stream([ollama_record({"role": "assistant", "content": "Alfa Bravo"}), last])
        raw = config(ollama, fallback)
        raw["backends"]["prov"] = {"type": "ollama", "base_url": ollama.url}
        with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions", timeout=30, json={
                "model": "r", "messages": ASK, "stream": stream, "stream_options": {"include_usage": True}})
    assert resp.status_code == 200 and resp.headers["x-polyroute-attempts"] == "1", resp.text
    if stream:
        events = [json.loads(line[6:]) for line in resp.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        usage = events[-1]["usage"]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"]) == "Alfa Bravo"
    else:
        usage = resp.json()["usage"]
        assert resp.json()["choices"][0]["message"]["content"] == "Alfa Bravo"
    assert usage["estimated"] is True and usage["completion_tokens"] > 0


def test_a_base_url_without_its_v1_says_so(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """A server that answers 404 "Not Found" for the path itself (no model, no code of its own): the error says
    where nothing is served and what to check, rather than a bare "HTTP 404"."""
    first.json({"detail": "Not Found"}, 404)  # what a FastAPI server such as vLLM answers an unknown path
    raw = config(first, fallback)
    raw["backends"]["prov"]["base_url"] = first.url  # the /v1 left out
    raw["routes"]["r"]["models"] = ["m"]
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "r", "messages": ASK}, timeout=30)
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert "nothing is served at /chat/completions: check base_url" in message and "/v1" in message
