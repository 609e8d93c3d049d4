"""The unchanged ``openai`` SDK against a real gateway on localhost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import openai
import orjson
import pytest

from polyroute.server.answers import Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from tests.support.live import Live, live_gateway, serve_app

TOOLS: list[Any] = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "weather for a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}]


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {
        "backends": {"f": {"type": "fake"}},
        "models": {
            "echo": {"backend": "f", "family": "deepseek-v4-flash", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "down": {"backend": "f", "upstream": "error-503"},
            "tooly": {"backend": "f", "upstream": "tools"},
        },
        "routes": {"main": {"models": ["down", "echo"]}},
    }
    with live_gateway(raw) as g:
        yield g


@pytest.fixture
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_sync_completion_names_who_answered(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="main", messages=ask("hello there"))
    resp = raw.parse()
    assert resp.choices[0].message.content == "You said: hello there"
    assert resp.model == "echo"
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    assert raw.headers["x-polyroute-model"] == "echo"
    assert raw.headers["x-polyroute-backend"] == "f"
    assert raw.headers["x-polyroute-attempts"] == "2"  # the dead first candidate, then echo
    # 7 prompt tokens at $1/M + 4 completion tokens at $2/M, priced from the config.
    expected = (resp.usage.prompt_tokens * 1.0 + resp.usage.completion_tokens * 2.0) / 1e6
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(expected)


def test_sync_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="main", messages=ask("stream me"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    assert {c.model for c in chunks} == {"echo"}


def test_stream_without_usage_request_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="echo", messages=ask("a b"), stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_tools_non_stream_and_stream(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="tooly", messages=ask("weather?"), tools=TOOLS)
    call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert resp.choices[0].finish_reason == "tool_calls"
    chunks = list(client.chat.completions.create(model="tooly", messages=ask("weather?"), tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_async_client_stream_and_not(live: Live) -> None:
    async def main() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
        whole = await client.chat.completions.create(model="echo", messages=ask("async one"))
        parts = []
        async for chunk in await client.chat.completions.create(model="echo", messages=ask("async two"), stream=True):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        await client.close()
        return whole.choices[0].message.content or "", "".join(parts)

    whole, streamed = anyio.run(main)
    assert whole == "You said: async one"
    assert streamed == "You said: async two"


def test_models_list_shows_fleet_facts(client: openai.OpenAI, live: Live) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "main" and {"echo", "down", "tooly"} <= set(ids)
    import httpx

    doc = httpx.get(f"{live.base_url}/models").json()
    echo = next(m for m in doc["data"] if m["id"] == "echo")
    facts = echo["polyroute"]
    assert facts["origin"]["organisation"] == "DeepSeek" and facts["origin"]["country"] == "CN"
    assert facts["locality"] == "local" and facts["open_weights"] is True
    assert facts["price_per_mtok"] == {"input": 1.0, "output": 2.0, "currency": "USD"}


def test_a_failure_that_will_not_clear_soon_tells_the_sdk_not_to_retry() -> None:
    """A region block (or a refused key, an empty account, a retired model) does not clear in the seconds the SDK
    waits between retries: x-should-retry: false, and the SDK asks once; a 503 that may clear is retried."""
    raw = {"backends": {"w": {"type": "fake"}, "b": {"type": "fake"}},  # a block takes its whole backend out
           "models": {"walled": {"backend": "w", "upstream": "blocked"},
                      "busy": {"backend": "b", "upstream": "error-503"}}}
    with live_gateway(raw) as g:
        sdk = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=2)
        counted = {"walled": g.gateway.fleet.adapters["w"], "busy": g.gateway.fleet.adapters["b"]}
        for model, asked in (("walled", 1), ("busy", 3)):
            before = counted[model].calls  # type: ignore[attr-defined]
            with pytest.raises(openai.APIStatusError) as failed:
                sdk.chat.completions.with_raw_response.create(model=model, messages=ask("x"))
            assert counted[model].calls - before == asked, model  # type: ignore[attr-defined]
            assert failed.value.response.headers.get("x-should-retry") == ("false" if asked == 1 else None)


def test_upstream_failure_is_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="down", messages=ask("x"))
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert body["code"] == "all_backends_failed"
    assert "f/down: server_error HTTP 503" in body["message"]


# --- an OpenAI-compatible upstream that records what it was sent ------------------------


@pytest.fixture(scope="module")
def recording_upstream() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def chat(request: Request) -> Reply:
        body = orjson.loads(request.body)
        seen.append({"body": body, "auth": request.header(b"authorization")})
        usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                 "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 1}}
        if body.get("stream"):  # a non-streamed client request is streamed from the upstream and assembled
            head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
            events = [
                {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "upstream"},
                                      "finish_reason": None}]},
                {**head, "choices": [{"index": 0, "delta": {"content": " says hi"}, "finish_reason": "stop"}]},
                {**head, "choices": [], "usage": usage},
            ]
            frames = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            return Reply(frames, content_type="text/event-stream")
        return Reply(orjson.dumps({
            "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "upstream says hi"},
                         "finish_reason": "stop"}],
            "usage": usage,
        }))

    app = App({"/v1/chat/completions": {"POST": chat}}, max_body=1 << 20)
    with serve_app(app) as root:
        yield root, seen


def test_parameters_pass_through_to_openai_compatible_upstream(
    recording_upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    root, seen = recording_upstream
    raw = {
        # On loopback, but it stands in for a hosted provider, billed at the catalog's price.
        "backends": {"up": {"type": "openai", "base_url": f"{root}/v1", "api_key": "env:UP_KEY", "locality": "remote"}},
        "models": {"qwen": {"backend": "up", "upstream": "qwen-plus", "family": "qwen3-235b"}},
    }
    with live_gateway(raw, env={"UP_KEY": "sk-test-secret"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw_resp = client.chat.completions.with_raw_response.create(
            model="qwen", messages=ask("hi"), temperature=0.3, top_p=0.9, seed=7, stop=["END"],
            max_completion_tokens=50, response_format={"type": "json_object"}, tools=TOOLS,
        )
        resp = raw_resp.parse()
    sent = seen[-1]["body"]
    assert sent["model"] == "qwen-plus"
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["stop"]) == (0.3, 0.9, 7, ["END"])
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent  # the name every server takes
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["tools"] == json.loads(json.dumps(TOOLS))
    assert seen[-1]["auth"] == "Bearer sk-test-secret"
    assert resp.model == "qwen" and resp.choices[0].message.content == "upstream says hi"
    assert float(raw_resp.headers["x-polyroute-cost-usd"]) > 0


def test_the_upstreams_token_details_and_the_request_id_reach_the_sdk(
    recording_upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    """Cached and reasoning tokens the upstream reports reach the client in a stream's usage as in a whole
    answer's, and the request id is where the SDK reads it (``_request_id``), to quote when asking for help."""
    root, _ = recording_upstream
    raw = {"backends": {"up": {"type": "openai", "base_url": f"{root}/v1", "api_key": "env:UP_KEY"}},
           "models": {"qwen": {"backend": "up", "upstream": "qwen-plus"}}}
    with live_gateway(raw, env={"UP_KEY": "sk-test-secret"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        whole = client.chat.completions.create(model="qwen", messages=ask("hi"))
        chunks = list(client.chat.completions.create(model="qwen", messages=ask("hi"), stream=True,
                                                      stream_options={"include_usage": True}))
    for usage in (whole.usage, chunks[-1].usage):
        assert usage is not None and usage.prompt_tokens == 10 and usage.completion_tokens == 3
        assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 8
        assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 1
    assert whole._request_id is not None and whole._request_id.startswith("req_")
