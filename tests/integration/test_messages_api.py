"""``POST /v1/messages`` through a real gateway, read by the unchanged ``anthropic`` SDK."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.http11_app import Wire
from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute

ENV = {"A_KEY": "sk-a-0123456789abcdef", "SLOW_KEY": "sk-slow-0123456789abcdef"}
WEATHER: Any = {"name": "get_weather", "description": "weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def config(db: Path) -> dict[str, Any]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {
            "echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "down": {"backend": "f", "upstream": "error-503"},
            "tooly": {"backend": "f", "upstream": "tools"},
            "cut": {"backend": "f", "upstream": "cut-3"},
        },
        "routes": {"main": {"models": ["down", "echo"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"a": {"secret": "env:A_KEY"}, "slow": {"secret": "env:SLOW_KEY", "rpm": 1}},
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("messages") / "ledger.db"


@pytest.fixture(scope="module")
def live(db: Path) -> Iterator[Live]:
    with live_gateway(config(db), env=ENV) as g:
        yield g


@pytest.fixture
def client(live: Live) -> anthropic.Anthropic:
    # What ANTHROPIC_BASE_URL names: the gateway's root, under which the SDK asks for /v1/messages.
    return anthropic.Anthropic(base_url=live.root, api_key=ENV["A_KEY"], max_retries=0)


def test_a_text_answer_with_a_system_prompt_fails_over_and_keeps_the_gateway_headers(
        client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="main", max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello there"}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "echo"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == "You said: hello there"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    request_id = raw.headers["x-polyroute-request-id"]
    assert message.id == "msg_" + request_id and message._request_id == request_id
    assert message.usage.output_tokens == 4 and message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    assert raw.headers["x-polyroute-attempts"] == "2"  # the dead first candidate, then echo
    expected = (message.usage.input_tokens * 1.0 + message.usage.output_tokens * 2.0) / 1e6
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(expected)


def test_a_stream_reads_as_the_sdk_expects(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="main", max_tokens=64, messages=[{"role": "user", "content": "stream me"}]) \
            as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].type == "text" and final.content[0].text == "You said: stream me"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4 and final.model == "echo"
    assert final.id.startswith("msg_req_")


def test_a_cut_short_answer_stops_at_max_tokens(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="echo", max_tokens=2,
                                     messages=[{"role": "user", "content": "one two three four"}])
    assert message.stop_reason == "max_tokens"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_use_and_its_result_make_a_round_trip(client: anthropic.Anthropic, streamed: bool) -> None:
    ask: Any = {"role": "user", "content": "weather in Paris?"}
    first: anthropic.types.Message
    if streamed:
        with client.messages.stream(model="tooly", max_tokens=64, messages=[ask], tools=[WEATHER]) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(model="tooly", max_tokens=64, messages=[ask], tools=[WEATHER],
                                       tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {} and call.id
    history: Any = [ask, {"role": "assistant", "content": first.content},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    second = client.messages.create(model="echo", max_tokens=64, messages=history, tools=[WEATHER])
    assert second.content[0].type == "text" and second.content[0].text == "You said: weather in Paris?"


def test_a_stream_broken_after_its_first_tokens_raises_in_the_sdk(client: anthropic.Anthropic) -> None:
    seen: list[str] = []
    ask: Any = [{"role": "user", "content": "one two three four five"}]
    with pytest.raises(anthropic.APIStatusError) as caught, \
            client.messages.stream(model="cut", max_tokens=64, messages=ask) as stream:
        seen.extend(stream.text_stream)
    assert seen and caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_an_unknown_model_is_the_sdks_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "'nope' does not exist" in body["error"]["message"]
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}], stream=True)


def test_bad_input_is_a_400_in_anthropics_shape(live: Live) -> None:
    headers = {"x-api-key": ENV["A_KEY"], "anthropic-version": "2023-06-01"}
    for body, words in [
        ({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, "'max_tokens'"),
        ({"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]},
         "'server_tool_use'"),
        ({"model": "echo", "max_tokens": 8, "messages": "hi"}, "'messages'"),
    ]:
        r = httpx.post(f"{live.root}/v1/messages", json=body, headers=headers, timeout=10)
        assert r.status_code == 400
        doc = r.json()
        assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
        assert words in doc["error"]["message"] and r.headers["request-id"] == doc["request_id"]
    r = httpx.post(f"{live.root}/v1/messages", content=b"{not json", headers=headers, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_a_wrong_key_is_the_sdks_authentication_error_and_a_bearer_token_is_taken(live: Live) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=live.root, api_key="sk-wrong", max_retries=0).messages.create(
            model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    # Claude Code's ANTHROPIC_AUTH_TOKEN: sent as Authorization: Bearer.
    bearer = anthropic.Anthropic(base_url=live.root, auth_token=ENV["A_KEY"], max_retries=0)
    assert bearer.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).content


def test_a_keys_rate_limit_is_the_sdks_rate_limit_error_with_its_wait(live: Live) -> None:
    room_in_this_minute()
    client = anthropic.Anthropic(base_url=live.root, api_key=ENV["SLOW_KEY"], max_retries=0)
    client.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert caught.value.response.headers["retry-after"]
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_count_tokens_is_the_gateways_estimate(client: anthropic.Anthropic, live: Live) -> None:
    short = client.messages.count_tokens(model="main", messages=[{"role": "user", "content": "hi"}])
    assert short._request_id is not None and short._request_id.startswith("req_")
    long = client.messages.count_tokens(model="main", system="Be brief.", tools=[WEATHER],
                                        messages=[{"role": "user", "content": "hi " * 200}])
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=live.root, api_key="sk-wrong", max_retries=0).messages.count_tokens(
            model="main", messages=[{"role": "user", "content": "hi"}])


def test_a_refused_key_waiting_to_send_its_body_gets_anthropics_401_first(live: Live) -> None:
    body = json.dumps({"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).encode()
    w = Wire(int(live.root.rsplit(":", 1)[1]))
    try:
        w.send((f"POST /v1/messages HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                f"x-api-key: sk-wrong\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
        answered = w.answer()
    finally:
        w.close()
    assert answered.status == 401
    doc = json.loads(answered.body)
    assert doc["type"] == "error" and doc["error"]["type"] == "authentication_error"
    assert answered.headers["request-id"].startswith("req_")


def test_a_message_is_billed_like_the_same_chat(live: Live, db: Path) -> None:
    headers = {"authorization": f"Bearer {ENV['A_KEY']}"}
    chat = httpx.post(f"{live.base_url}/chat/completions", headers=headers, timeout=10,
                      json={"model": "main", "messages": [{"role": "user", "content": "bill me"}]})
    msg = httpx.post(f"{live.root}/v1/messages", headers=headers, timeout=10,
                     json={"model": "main", "max_tokens": 64, "messages": [{"role": "user", "content": "bill me"}]})
    assert chat.status_code == msg.status_code == 200
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM usage")}
    a, b = rows[chat.headers["x-polyroute-request-id"]], rows[msg.headers["x-polyroute-request-id"]]
    same = ("key", "route", "model", "backend", "status", "tokens_in", "tokens_out", "cost_usd")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    usage = msg.json()["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (b["tokens_in"], b["tokens_out"])


def test_turns_that_all_vanish_are_a_400_even_with_a_cache_mark(live: Live) -> None:
    r = httpx.post(f"{live.root}/v1/messages", timeout=10, headers={"x-api-key": ENV["A_KEY"]}, json={
        "model": "echo", "max_tokens": 8, "messages": [{"role": "system", "content": ""}],
        "cache_control": {"type": "ephemeral"}})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "'messages'" in r.json()["error"]["message"]
