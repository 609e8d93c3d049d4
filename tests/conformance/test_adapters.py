"""The conformance suite: every HTTP adapter through the same scenarios.

Each scenario runs once per provider in ``providers.PROVIDERS`` against a fake
upstream that answers in that provider's wire format, from fixtures under
``tests/fixtures/<provider>/``. The answers are the same across providers, so the
expectations below are written once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBlocked,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamUnavailable,
)
from polyroute.types import ChatChunk
from tests.conformance.helpers import (
    ANSWER,
    MODEL,
    TOOL_USAGE,
    USAGE,
    WEATHER_TOOL,
    call,
    collect,
    content,
    finishes,
    fixture,
)
from tests.conformance.providers import API_KEY, Provider, text_of
from tests.support.upstreams import FakeUpstream, closed_port

pytestmark = pytest.mark.anyio

def sent(upstream: FakeUpstream, provider: Provider) -> dict[str, Any]:
    """The one request the upstream received, checked to have gone to the right place."""
    assert len(upstream.received) == 1
    got = upstream.received[0]
    assert (got.method, got.path) == ("POST", provider.chat_path)
    body: dict[str, Any] = got.json()
    assert body["model"] == MODEL
    return body


# --- answers ------------------------------------------------------------------------------


async def test_complete_maps_content_finish_and_usage(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.json(fixture(provider.name, "completion"))
    resp = await adapter.complete(call())
    choice = resp["choices"][0]
    assert resp["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == ANSWER
    assert choice["finish_reason"] == "stop"
    assert {k: resp["usage"][k] for k in USAGE} == USAGE  # type: ignore[literal-required]
    body = sent(upstream, provider)
    assert body.get("stream") in (False, None)
    assert [text_of(m) for m in body["messages"]] == ["Hi"]


async def test_stream_joins_to_the_answer_and_ends_with_usage(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.stream(fixture(provider.name, "stream"))
    chunks = await collect(adapter, call(stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert content(chunks) == ANSWER
    assert finishes(chunks) == ["stop"]
    last = chunks[-1]
    assert last["choices"] == []
    assert {k: last["usage"][k] for k in USAGE} == USAGE  # type: ignore[index, literal-required]
    assert len({c["id"] for c in chunks}) == 1
    assert sent(upstream, provider)["stream"] is True


async def test_tool_call(provider: Provider, upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(fixture(provider.name, "tool_call"))
    resp = await adapter.complete(call(tools=[WEATHER_TOOL], tool_choice="auto"))
    choice = resp["choices"][0]
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["id"] and tool_call["type"] == "function"
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"location": "Paris"}
    assert choice["finish_reason"] == "tool_calls"
    assert {k: resp["usage"][k] for k in TOOL_USAGE} == TOOL_USAGE  # type: ignore[literal-required]
    assert provider.tool_names(sent(upstream, provider)) == ["get_weather"]


async def test_tool_call_stream(provider: Provider, upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(fixture(provider.name, "tool_call_stream"))
    chunks = await collect(adapter, call(stream=True, tools=[WEATHER_TOOL]))
    deltas = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert {d["index"] for d in deltas} == {0}
    first = deltas[0]
    assert first["id"] and first["function"]["name"] == "get_weather"
    arguments = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(arguments) == {"location": "Paris"}
    assert finishes(chunks) == ["tool_calls"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    assert provider.tool_names(sent(upstream, provider)) == ["get_weather"]


# --- requests -----------------------------------------------------------------------------


async def test_system_prompt_placement(provider: Provider, upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(fixture(provider.name, "completion"))
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    await adapter.complete(call(messages=messages))
    body = sent(upstream, provider)
    assert provider.system(body) == "You are terse."
    assert text_of(body["messages"][-1]) == "Hi"


async def test_stop_max_tokens_and_sampling(provider: Provider, upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(fixture(provider.name, "completion"))
    await adapter.complete(call(stop=["END"], max_tokens=50, temperature=0.2, top_p=0.9))
    body = sent(upstream, provider)
    assert provider.stop(body) == ["END"]
    assert provider.max_tokens(body) == 50
    assert provider.sampling(body) == {"temperature": 0.2, "top_p": 0.9}


async def test_api_key_in_its_header_only(provider: Provider, upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(fixture(provider.name, "completion"))
    await adapter.complete(call())
    got = upstream.received[0]
    assert got.headers[provider.key_header] == provider.key_value.format(key=API_KEY)
    assert API_KEY.encode() not in got.body
    assert [v for k, v in got.headers.items() if API_KEY in v and k != provider.key_header] == []


async def test_rescue_sends_the_prefix_as_a_trailing_assistant_turn(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    if provider.prefix_message is None:
        pytest.skip(f"{provider.name} documents no way to continue a partial answer")
    assert adapter.can_continue
    upstream.stream(fixture(provider.name, "stream"))
    await collect(adapter, call(prefix="Hello! How", stream=True))
    body = sent(upstream, provider)
    assert body["messages"][-1] == provider.prefix_message("Hello! How")
    assert text_of(body["messages"][-2]) == "Hi"


# --- failures -----------------------------------------------------------------------------

ERROR_CASES = [
    ("auth", UpstreamAuthError),
    ("permission", UpstreamAuthError),
    ("region", UpstreamBlocked),
    ("rate_limited", UpstreamRateLimited),
    ("server_500", UpstreamServerError),
    ("server_503", UpstreamServerError),
    ("overloaded_529", UpstreamServerError),
    ("context", UpstreamContextExceeded),
    ("rejected", UpstreamRejected),
    ("model_not_found", UpstreamModelNotFound),  # another backend may have the model
]


def script_error(upstream: FakeUpstream, provider: Provider, case: str) -> int:
    spec = fixture(provider.name, "errors")[case]
    if "absent" in spec:
        pytest.skip(f"{provider.name}: {spec['absent']}")
    # The worst upstream echoes the key it was sent; it must not reach our messages.
    body = json.loads(json.dumps(spec["body"]).replace("{api_key}", API_KEY))
    upstream.json(body, spec["status"], spec.get("headers"))
    status: int = spec["status"]
    return status


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("case", "expected"), ERROR_CASES, ids=[c for c, _ in ERROR_CASES])
async def test_error_status_maps_to_the_error_tree(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter, case: str, expected: type[UpstreamError], mode: str
) -> None:
    status = script_error(upstream, provider, case)
    with pytest.raises(UpstreamError) as info:
        if mode == "complete":
            await adapter.complete(call())
        else:
            await collect(adapter, call(stream=True))
    err = info.value
    assert type(err) is expected, err.describe()
    assert err.upstream_status == status
    assert err.backend == adapter.name and err.model == MODEL
    assert err.message
    assert API_KEY not in f"{err} {err.describe()} {err.to_body()}"
    if case == "rate_limited":
        retry_after = (fixture(provider.name, "errors")[case].get("headers") or {}).get("retry-after")
        assert isinstance(err, UpstreamRateLimited)
        assert err.retry_after == (float(retry_after) if retry_after else None)
    if case == "rejected":
        assert not err.may_fall_over and not err.retryable
    if case in ("context", "model_not_found"):
        assert err.may_fall_over


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_connection_refused_is_unavailable(provider: Provider, mode: str) -> None:
    adapter = build_adapter("down", provider.config(f"http://127.0.0.1:{closed_port()}"))
    try:
        with pytest.raises(UpstreamUnavailable):
            if mode == "complete":
                await adapter.complete(call())
            else:
                await collect(adapter, call(stream=True))
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("body", [b'{"id": "x", "choices": [{"index": 0, ', b"<html>502 Bad Gateway</html>", b"[1, 2]"])
async def test_malformed_answer_is_bad_response(upstream: FakeUpstream, adapter: Adapter, body: bytes) -> None:
    upstream.raw(body)
    with pytest.raises(UpstreamBadResponse):
        await adapter.complete(call())


async def test_malformed_stream_event_is_bad_response(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.stream(fixture(provider.name, "stream_malformed"), terminate=False)
    chunks: list[ChatChunk] = []
    with pytest.raises(UpstreamBadResponse):
        await collect(adapter, call(stream=True), chunks)
    assert content(chunks).startswith("Hello")


async def test_error_inside_a_stream_is_a_server_error(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter
) -> None:
    upstream.stream(fixture(provider.name, "stream_error"), terminate=False)
    chunks: list[ChatChunk] = []
    with pytest.raises(UpstreamServerError):
        await collect(adapter, call(stream=True), chunks)
    assert content(chunks).startswith("Hello")


@pytest.mark.parametrize("drop", [False, True], ids=["ends-early", "connection-dropped"])
async def test_stream_cut_midway_is_unavailable(
    provider: Provider, upstream: FakeUpstream, adapter: Adapter, drop: bool
) -> None:
    events = fixture(provider.name, "stream")
    upstream.stream(events[: len(events) // 2], terminate=False, drop=drop)
    chunks: list[ChatChunk] = []
    with pytest.raises(UpstreamUnavailable):
        await collect(adapter, call(stream=True), chunks)
    assert content(chunks) and ANSWER.startswith(content(chunks))
    assert finishes(chunks) == []
