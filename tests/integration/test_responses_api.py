"""``POST /v1/responses`` through a real gateway, read by the unchanged ``openai`` SDK's Responses client."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute

ENV = {"A_KEY": "sk-a-0123456789abcdef", "SLOW_KEY": "sk-slow-0123456789abcdef"}
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def config(db: Path) -> dict[str, Any]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {
            "echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "down": {"backend": "f", "upstream": "error-503"},
            "tooly": {"backend": "f", "upstream": "tools"},
            "cut": {"backend": "f", "upstream": "cut-3"},
            "city": {"backend": "f", "upstream": 'text-{"city":"Paris"}'},
        },
        "routes": {"main": {"models": ["down", "echo"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"a": {"secret": "env:A_KEY"}, "slow": {"secret": "env:SLOW_KEY", "rpm": 1}},
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("responses") / "ledger.db"


@pytest.fixture(scope="module")
def live(db: Path) -> Iterator[Live]:
    with live_gateway(config(db), env=ENV) as g:
        yield g


@pytest.fixture
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=ENV["A_KEY"], max_retries=0)


def test_a_text_answer_with_instructions_fails_over_and_keeps_the_gateway_headers(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="main", input="hello there", instructions="Be brief.")
    resp = raw.parse()
    assert resp.output_text == "You said: hello there"
    assert resp.status == "completed" and resp.object == "response" and resp.model == "echo"
    assert resp.id == "resp_" + raw.headers["x-polyroute-request-id"]
    assert resp.usage is not None and resp.usage.output_tokens == 4
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert raw.headers["x-polyroute-attempts"] == "2"  # the dead first candidate, then echo
    assert raw.headers["x-polyroute-model"] == "echo"
    expected = (resp.usage.input_tokens * 1.0 + resp.usage.output_tokens * 2.0) / 1e6
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(expected)


def test_a_tool_call_and_its_output_make_a_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model="tooly", input="weather in Paris?", tools=TOOLS, tool_choice="auto")
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == "{}"
    assert call.call_id and call.id
    assert first.tools[0].type == "function" and first.tools[0].name == "get_weather"
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"},
                          {"type": "function_call", "call_id": call.call_id, "name": call.name,
                           "arguments": call.arguments},
                          {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = client.responses.create(model="echo", input=history, tools=TOOLS)
    assert second.output_text == "You said: weather in Paris?"


def test_a_json_schema_answer_is_parsed_by_the_sdk(client: openai.OpenAI) -> None:
    class City(BaseModel):
        city: str

    resp = client.responses.parse(model="city", input="where?", text_format=City)
    assert resp.output_parsed == City(city="Paris")
    assert resp.text is not None and resp.text.format is not None and resp.text.format.type == "json_schema"


def test_a_cut_short_answer_is_incomplete(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="echo", input="one two three four", max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "You said:"


def test_a_stream_reads_as_the_sdk_expects(client: openai.OpenAI) -> None:
    with client.responses.stream(model="main", input="stream me") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert kinds.count("response.output_text.delta") == 4
    assert final.output_text == "You said: stream me" and final.model == "echo"
    assert final.usage is not None and final.usage.output_tokens == 4


def test_a_raw_stream_numbers_its_events_and_streams_a_tool_call(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="tooly", input="weather?", tools=TOOLS, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    done = events[-1]
    assert done.type == "response.completed"
    [call] = done.response.output
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == "{}"


def test_a_stream_broken_after_its_first_tokens_ends_failed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="cut", input="one two three four five", stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.message


def test_an_error_before_the_stream_is_plain_json(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi", stream=True)


def test_an_unknown_previous_response_id_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input="hi", previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id"
    assert "'resp_123' not found" in caught.value.message and "'input'" in caught.value.message


def test_a_built_in_tool_is_refused_naming_its_type(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input="hi", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools" and "web_search" in caught.value.message


def test_a_wrong_key_is_refused_with_401(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.responses.create(model="echo", input="hi")


def test_a_keys_rate_limit_applies(live: Live) -> None:
    room_in_this_minute()
    client = openai.OpenAI(base_url=live.base_url, api_key=ENV["SLOW_KEY"], max_retries=0)
    client.responses.create(model="echo", input="hi")
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="echo", input="hi")
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_response_is_billed_like_the_same_chat(live: Live, db: Path) -> None:
    headers = {"authorization": f"Bearer {ENV['A_KEY']}"}
    chat = httpx.post(f"{live.base_url}/chat/completions", headers=headers, timeout=10,
                      json={"model": "main", "messages": [{"role": "user", "content": "bill me"}]})
    resp = httpx.post(f"{live.base_url}/responses", headers=headers, timeout=10,
                      json={"model": "main", "input": "bill me"})
    assert chat.status_code == resp.status_code == 200
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM usage")}
    a, b = rows[chat.headers["x-polyroute-request-id"]], rows[resp.headers["x-polyroute-request-id"]]
    same = ("key", "route", "model", "backend", "status", "tokens_in", "tokens_out", "cost_usd")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert [x["outcome"] for x in json.loads(str(b["attempts"]))] == ["server_error", "ok"]
    usage = resp.json()["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (b["tokens_in"], b["tokens_out"])
    assert usage["cost_usd"] == pytest.approx(b["cost_usd"])
