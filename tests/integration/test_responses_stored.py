"""Stored responses through a real gateway and the unchanged ``openai`` SDK: ``previous_response_id``,
``item_reference``, retrieve, delete and input items, one key apart from another, ``store: false``, and the
SQLite store across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def config(db: Path | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "tooly": {"backend": "f", "upstream": "tools"}},
        "keys": {"a": {"secret": "env:A_KEY"}, "b": {"secret": "env:B_KEY"}},
    }
    if db is not None:
        raw["store"] = {"url": f"sqlite:///{db}", "flush_interval": 0.05, "ledger_writer": "thread"}
    return raw


def tokens(*texts: str) -> int:
    """What the fake backend counts as a prompt of these messages: each one's words and 3."""
    return sum(len(t.split()) + 3 for t in texts)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stored") / "store.db"


@pytest.fixture(scope="module")
def live(db: Path) -> Iterator[Live]:
    with live_gateway(config(db), env=ENV) as g:
        yield g


def client_of(live: Live, key: str = "A_KEY") -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=ENV[key], max_retries=0)


@pytest.fixture
def a(live: Live) -> openai.OpenAI:
    return client_of(live)


@pytest.fixture
def b(live: Live) -> openai.OpenAI:
    return client_of(live, "B_KEY")


def test_previous_response_id_puts_the_conversation_before_the_input(a: openai.OpenAI) -> None:
    first = a.responses.create(model="echo", input="my name is Ann", instructions="Be brief.")
    assert first.store is True and first.previous_response_id is None
    second = a.responses.create(model="echo", input="what is my name", previous_response_id=first.id)
    assert second.output_text == "You said: what is my name" and second.previous_response_id == first.id
    # The instructions of the first are not carried over, as OpenAI's are not.
    assert second.usage is not None and second.usage.input_tokens == tokens(
        "my name is Ann", "You said: my name is Ann", "what is my name")
    third = a.responses.create(model="echo", input="and now", previous_response_id=second.id)
    assert third.usage is not None and third.usage.input_tokens == tokens(
        "my name is Ann", "You said: my name is Ann", "what is my name", "You said: what is my name", "and now")


def test_an_item_reference_is_the_stored_item(a: openai.OpenAI) -> None:
    first = a.responses.create(model="echo", input="hello there")
    [message] = first.output
    assert message.id.startswith("msg_")
    second = a.responses.create(model="echo", input=[
        {"type": "item_reference", "id": message.id}, {"role": "user", "content": "again"}])
    assert second.usage is not None and second.usage.input_tokens == tokens("You said: hello there", "again")
    [given, asked] = a.responses.input_items.list(second.id, order="asc").data
    assert given.type == "message" and given.id == message.id and given.role == "assistant"
    assert asked.type == "message" and asked.id.startswith("msg_") and asked.role == "user"


def test_a_tool_loop_goes_on_from_its_call(a: openai.OpenAI) -> None:
    first = a.responses.create(model="tooly", input="weather in Paris?", tools=TOOLS)
    [call] = first.output
    assert call.type == "function_call" and call.id.startswith("fc_")
    second = a.responses.create(model="echo", tools=TOOLS, previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.status == "completed"
    by_reference = a.responses.create(model="echo", tools=TOOLS, input=[
        {"role": "user", "content": "weather in Paris?"}, {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert by_reference.usage is not None and second.usage is not None
    assert by_reference.usage.input_tokens == second.usage.input_tokens


def test_retrieve_delete_and_input_items(a: openai.OpenAI) -> None:
    first = a.responses.create(model="echo", input="keep me")
    got = a.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == "You said: keep me" and got.store is True
    page = a.responses.input_items.list(first.id)
    assert [item.type for item in page.data] == ["message"]
    a.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as caught:
        a.responses.retrieve(first.id)
    assert "not found" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        a.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError) as refused:
        a.responses.create(model="echo", input="hi", previous_response_id=first.id)
    assert refused.value.param == "previous_response_id"


def test_delete_answers_in_openais_shape(live: Live, a: openai.OpenAI) -> None:
    first = a.responses.create(model="echo", input="bye")
    r = httpx.delete(f"{live.base_url}/responses/{first.id}", headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    assert r.status_code == 200 and r.json() == {"id": first.id, "object": "response", "deleted": True}


def test_one_key_never_reaches_anothers_responses(a: openai.OpenAI, b: openai.OpenAI) -> None:
    mine = a.responses.create(model="echo", input="a secret of a")
    with pytest.raises(openai.NotFoundError) as hidden:
        b.responses.retrieve(mine.id)
    unknown = "resp_" + "0" * 24
    with pytest.raises(openai.NotFoundError) as never:
        b.responses.retrieve(unknown)
    assert hidden.value.message == never.value.message.replace(unknown, mine.id)  # says nothing more
    with pytest.raises(openai.BadRequestError) as chained:
        b.responses.create(model="echo", input="go on", previous_response_id=mine.id)
    assert chained.value.param == "previous_response_id" and "a secret" not in chained.value.message
    with pytest.raises(openai.BadRequestError) as referenced:
        b.responses.create(model="echo", input=[{"type": "item_reference", "id": mine.output[0].id}])
    assert referenced.value.param == "input[0].id"
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.input_items.list(mine.id)
    assert a.responses.retrieve(mine.id).output_text == "You said: a secret of a"


def test_store_false_stores_nothing(a: openai.OpenAI) -> None:
    kept_not = a.responses.create(model="echo", input="forget me", store=False)
    assert kept_not.store is False
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(kept_not.id)
    with pytest.raises(openai.BadRequestError) as caught:
        a.responses.create(model="echo", input=[{"type": "item_reference", "id": kept_not.output[0].id}])
    assert caught.value.param == "input[0].id" and "not found" in caught.value.message


def test_a_stream_is_stored_before_it_completes(a: openai.OpenAI) -> None:
    events = a.responses.create(model="echo", input="stream me", stream=True)
    for event in events:
        if event.type == "response.completed":
            # Not a byte after response.completed is read: the response must already be there.
            assert event.response.store is True
            follow = a.responses.create(model="echo", input="next", previous_response_id=event.response.id)
            assert follow.usage is not None and follow.usage.input_tokens == tokens(
                "stream me", "You said: stream me", "next")
    assert a.responses.retrieve(follow.previous_response_id or "").output_text == "You said: stream me"


def test_a_stream_that_fails_is_not_stored(tmp_path: Path) -> None:
    raw = config(None)
    raw["models"]["cut"] = {"backend": "f", "upstream": "cut-2"}
    with live_gateway(raw, env=ENV) as live:
        client = client_of(live)
        events = list(client.responses.create(model="cut", input="one two three four", stream=True))
        assert events[-1].type == "response.failed"
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(events[-1].response.id)


def test_background_is_still_refused(a: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as background:
        a.responses.create(model="echo", input="hi", background=True)
    assert background.value.param == "background"


def test_a_key_is_needed_to_read_them(live: Live, a: openai.OpenAI) -> None:
    first = a.responses.create(model="echo", input="hi")
    assert httpx.get(f"{live.base_url}/responses/{first.id}").status_code == 401
    assert httpx.get(f"{live.base_url}/responses/{first.id}",
                     headers={"authorization": "Bearer sk-wrong"}).status_code == 401


def test_the_sqlite_store_keeps_them_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    with live_gateway(config(db), env=ENV) as live:
        first = client_of(live).responses.create(model="echo", input="remember this")
    with live_gateway(config(db), env=ENV) as live:
        client = client_of(live)
        assert client.responses.retrieve(first.id).output_text == "You said: remember this"
        second = client.responses.create(model="echo", input="and this", previous_response_id=first.id)
        assert second.usage is not None and second.usage.input_tokens == tokens(
            "remember this", "You said: remember this", "and this")
        with pytest.raises(openai.NotFoundError):
            client_of(live, "B_KEY").responses.retrieve(first.id)


def test_without_a_store_they_are_kept_in_the_process(tmp_path: Path) -> None:
    with live_gateway(config(None), env=ENV) as live:
        assert live.gateway.tenancy.store is None
        client = client_of(live)
        first = client.responses.create(model="echo", input="in memory")
        second = client.responses.create(model="echo", input="still", previous_response_id=first.id)
        assert second.usage is not None and second.usage.input_tokens == tokens(
            "in memory", "You said: in memory", "still")
        with pytest.raises(openai.NotFoundError):
            client_of(live, "B_KEY").responses.retrieve(first.id)


def test_input_items_page_as_openais_list(live: Live, a: openai.OpenAI) -> None:
    asked = a.responses.create(model="echo", input=[
        {"role": "developer", "content": "rules"}, {"role": "user", "content": "one"},
        {"role": "user", "content": "two"}])
    newest = a.responses.input_items.list(asked.id, limit=2)
    assert len(newest.data) == 2 and all(item.type == "message" for item in newest.data)
    raw = httpx.get(f"{live.base_url}/responses/{asked.id}/input_items", params={"limit": 2},
                    headers={"authorization": f"Bearer {ENV['A_KEY']}"}).json()
    assert raw["object"] == "list" and raw["has_more"] is True and len(raw["data"]) == 2
    assert [i["content"] for i in raw["data"]] == ["two", "one"]  # newest first
    rest = httpx.get(f"{live.base_url}/responses/{asked.id}/input_items", params={"after": raw["last_id"]},
                     headers={"authorization": f"Bearer {ENV['A_KEY']}"}).json()
    assert [i["content"] for i in rest["data"]] == ["rules"] and rest["has_more"] is False
    bad = httpx.get(f"{live.base_url}/responses/{asked.id}/input_items", params={"limit": 0},
                    headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_store_must_be_true_or_false(live: Live) -> None:
    r = httpx.post(f"{live.base_url}/responses", json={"model": "echo", "input": "hi", "store": "yes"},
                   headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "store"


def test_more_input_items_than_a_request_may_have_messages_are_refused_before_any_is_read(a: openai.OpenAI) -> None:
    """An ``item_reference`` costs the store a read: a body packed with them (a few bytes each, so hundreds of
    thousands within the body limit) is refused at once, as a chat request with that many messages would be."""
    kept = a.responses.create(model="echo", input="remember me")
    refs = [{"type": "item_reference", "id": kept.output[0].id}] * 2049
    with pytest.raises(openai.BadRequestError) as caught:
        a.responses.create(model="echo", input=refs)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("input", "array_above_max_length")
    assert "2048" in error["message"]


def test_an_error_in_an_input_item_after_previous_response_id_names_it_as_sent(a: openai.OpenAI) -> None:
    """The stored conversation goes before the request's own items; an error in one of those names the item by
    the client's own numbering, not by its place after the stored ones."""
    first = a.responses.create(model="echo", input="one")
    with pytest.raises(openai.BadRequestError) as caught:
        a.responses.create(model="echo", previous_response_id=first.id,
                           input=[{"role": "user", "content": "two"}, "not an item"])  # type: ignore[list-item]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "input[1]" and "'input[1]'" in error["message"]
