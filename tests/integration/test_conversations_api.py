"""Conversations through a real gateway and the unchanged ``openai`` SDK: the Conversations API's routes, the
Responses API's ``conversation`` (whole and streamed), one key apart from another, OpenAI's limits, and the
SQLite store across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.http11_app import Wire
from tests.support.live import Live, live_gateway

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}
CAP = 12  # [gateway] max_messages: the most items a conversation holds


def nested(levels: int) -> list[Any]:
    doc: list[Any] = []
    for _ in range(levels):
        doc = [doc]
    return doc


DEEP = nested(70)  # past [gateway] max_json_depth


def config(db: Path | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "gateway": {"max_messages": CAP},
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "broken": {"backend": "f", "upstream": "error-400"},
                   "cut": {"backend": "f", "upstream": "cut-2"}},
        "keys": {"a": {"secret": "env:A_KEY"}, "b": {"secret": "env:B_KEY"}},
    }
    if db is not None:
        raw["store"] = {"url": f"sqlite:///{db}", "flush_interval": 0.05, "ledger_writer": "thread"}
    return raw


def tokens(*texts: str) -> int:
    """What the fake backend counts as a prompt of these messages: each one's words and 3."""
    return sum(len(t.split()) + 3 for t in texts)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(config(tmp_path_factory.mktemp("conversations") / "store.db"), env=ENV) as g:
        yield g


def client_of(live: Live, key: str = "A_KEY") -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=ENV[key], max_retries=0)


@pytest.fixture
def a(live: Live) -> openai.OpenAI:
    return client_of(live)


@pytest.fixture
def b(live: Live) -> openai.OpenAI:
    return client_of(live, "B_KEY")


def texts_of(client: openai.OpenAI, conversation_id: str) -> list[tuple[str, str]]:
    """Each item's role and text, oldest first."""
    out = []
    for item in client.conversations.items.list(conversation_id, order="asc", limit=100):
        assert item.type == "message"
        out.append((item.role, "".join(getattr(part, "text", "") for part in item.content)))
    return out


def test_two_turns_go_on_one_conversation(a: openai.OpenAI) -> None:
    conv = a.conversations.create(metadata={"topic": "names"})
    assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "names"}
    first = a.responses.create(model="echo", input="my name is Ann", conversation=conv.id)
    assert first.conversation is not None and first.conversation.id == conv.id
    second = a.responses.create(model="echo", input="what is my name", conversation={"id": conv.id})
    assert second.output_text == "You said: what is my name"
    assert second.usage is not None and second.usage.input_tokens == tokens(
        "my name is Ann", "You said: my name is Ann", "what is my name")
    assert texts_of(a, conv.id) == [("user", "my name is Ann"), ("assistant", "You said: my name is Ann"),
                                    ("user", "what is my name"), ("assistant", "You said: what is my name")]
    newest = a.conversations.items.list(conv.id, limit=1)
    assert newest.data[0].id == second.output[0].id and newest.has_more is True
    assert a.conversations.retrieve(conv.id).id == conv.id


def test_a_streamed_turn_is_added_before_it_completes(a: openai.OpenAI) -> None:
    conv = a.conversations.create(items=[{"role": "developer", "content": "be brief"}])
    events = a.responses.create(model="echo", input="stream me", conversation=conv.id, stream=True)
    seen = []
    for event in events:
        if event.type == "response.created":
            assert event.response.conversation is not None and event.response.conversation.id == conv.id
        if event.type == "response.completed":
            # Not a byte after response.completed is read: the turn must already be there.
            seen = texts_of(a, conv.id)
    assert seen == [("developer", "be brief"), ("user", "stream me"), ("assistant", "You said: stream me")]


def test_a_response_that_failed_adds_nothing(a: openai.OpenAI) -> None:
    conv = a.conversations.create(items=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.APIStatusError):
        a.responses.create(model="broken", input="fails whole", conversation=conv.id)
    events = list(a.responses.create(model="cut", input="one two three four", conversation=conv.id, stream=True))
    assert events[-1].type == "response.failed"
    assert texts_of(a, conv.id) == [("user", "hello")]


def test_one_key_never_reaches_anothers_conversation(a: openai.OpenAI, b: openai.OpenAI) -> None:
    conv = a.conversations.create(items=[{"role": "user", "content": "a secret of a"}])
    [item] = a.conversations.items.list(conv.id).data
    unknown = "conv_" + "0" * 48
    with pytest.raises(openai.NotFoundError) as hidden:
        b.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError) as never:
        b.conversations.retrieve(unknown)
    assert hidden.value.message == never.value.message.replace(unknown, conv.id)  # says nothing more
    for attempt in (lambda: b.conversations.items.list(conv.id),
                    lambda: b.conversations.items.retrieve(item.id, conversation_id=conv.id),
                    lambda: b.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
                    lambda: b.conversations.items.delete(item.id, conversation_id=conv.id),
                    lambda: b.conversations.update(conv.id, metadata={"x": "y"}),
                    lambda: b.conversations.delete(conv.id),
                    lambda: b.responses.create(model="echo", input="go on", conversation=conv.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert "a secret" not in caught.value.message
    assert texts_of(a, conv.id) == [("user", "a secret of a")]


def test_items_are_added_paged_read_and_deleted(live: Live, a: openai.OpenAI) -> None:
    conv = a.conversations.create(items=[{"role": "user", "content": f"item {n}"} for n in range(2)])
    added = a.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "item 2"}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "done"}])
    assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]
    assert added.first_id == added.data[0].id and added.has_more is False
    first = a.conversations.items.list(conv.id, order="asc", limit=2)
    assert len(first.data) == 2 and first.has_more is True
    rest = a.conversations.items.list(conv.id, order="asc", after=first.data[-1].id)
    assert [i.id for i in rest.data] == [i.id for i in added.data] and rest.has_more is False
    every = [i.id for i in a.conversations.items.list(conv.id, limit=2)]  # the SDK follows the pages
    assert len(every) == 5 and every[0] == added.data[-1].id
    got = a.conversations.items.retrieve(added.data[1].id, conversation_id=conv.id)
    assert got.type == "function_call" and got.call_id == "call_1"
    after_delete = a.conversations.items.delete(added.data[1].id, conversation_id=conv.id)
    assert after_delete.id == conv.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):
        a.conversations.items.retrieve(added.data[1].id, conversation_id=conv.id)
    bad = httpx.get(f"{live.base_url}/conversations/{conv.id}/items", params={"after": "msg_nope"},
                    headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"


def test_an_item_reference_names_an_item_added_to_a_conversation(a: openai.OpenAI, b: openai.OpenAI) -> None:
    conv = a.conversations.create()
    [added] = a.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "the word is plum"}]}]).data
    reference: Any = {"type": "item_reference", "id": added.id}
    answer = a.responses.create(model="echo", input=[reference, {"role": "user", "content": "which word"}])
    assert answer.usage is not None and answer.usage.input_tokens == tokens("the word is plum", "which word")
    listed = a.responses.input_items.list(answer.id, order="asc").data
    assert listed[0].id == added.id and listed[0].type == "message"
    copied = a.conversations.create(items=[reference])  # into another conversation, as a response's output would
    assert texts_of(a, copied.id) == [("user", "the word is plum")]
    unknown = "msg_" + "0" * 48
    refused = []
    for wanted in (added.id, unknown):
        with pytest.raises(openai.BadRequestError) as caught:
            b.responses.create(model="echo", input=[{"type": "item_reference", "id": wanted}])
        with pytest.raises(openai.BadRequestError) as adding:
            b.conversations.create(items=[{"type": "item_reference", "id": wanted}])
        refused.append([(e.value.param, e.value.code, e.value.message.replace(wanted, "ID")) for e in (caught, adding)])
    assert refused[0] == refused[1], "another key's item reads exactly as an unknown one"
    assert [param for param, _, _ in refused[0]] == ["input[0].id", "items[0].id"]
    assert "plum" not in str(refused)


def test_update_and_delete(a: openai.OpenAI) -> None:
    conv = a.conversations.create()
    assert conv.metadata == {}
    assert a.conversations.update(conv.id, metadata={"stage": "two"}).metadata == {"stage": "two"}
    assert a.conversations.retrieve(conv.id).metadata == {"stage": "two"}
    deleted = a.conversations.delete(conv.id)
    assert deleted.id == conv.id and deleted.deleted is True and deleted.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError):
        a.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError) as caught:
        a.responses.create(model="echo", input="hi", conversation=conv.id)
    assert caught.value.param == "conversation"


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata", "object_above_max_properties"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "string_above_max_length"),
    ({"metadata": {"k": 1}}, "metadata.k", "invalid_request"),
    ({"items": [{"role": "user", "content": "x"}] * 21}, "items", "array_above_max_length"),
    ({"items": "hello"}, "items", "invalid_request"),
    ({"items": [{"type": "web_search_call"}]}, "items[0].type", "invalid_request"),
    ({"items": [{"role": "user", "content": "x"}, "not an item"]}, "items[1]", "invalid_request"),
    ({"items": [{"role": ["user"], "content": "x"}]}, "items[0].role", "invalid_request"),
    ({"items": [{"type": "item_reference", "id": "msg_nope"}]}, "items[0].id", "invalid_request"),
    ({"metadata": {"k": "v"}, "deep": DEEP}, "deep[0][0][0]", "nesting_too_deep"),
])
def test_bad_bodies_are_openais_400s(live: Live, body: dict[str, Any], param: str, code: str) -> None:
    r = httpx.post(f"{live.base_url}/conversations", json=body, headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    error = r.json()["error"]
    assert r.status_code == 400 and (error["param"], error["code"]) == (param, code), error


@pytest.mark.parametrize(("body", "code"), [({"items": []}, "empty_array"), ({}, "invalid_request"),
                                            ({"items": None}, "invalid_request")])
def test_adding_no_items_is_a_400(live: Live, a: openai.OpenAI, body: dict[str, Any], code: str) -> None:
    conv = a.conversations.create()
    r = httpx.post(f"{live.base_url}/conversations/{conv.id}/items", json=body,
                   headers={"authorization": f"Bearer {ENV['A_KEY']}"})
    error = r.json()["error"]
    assert r.status_code == 400 and (error["param"], error["code"]) == ("items", code), error
    assert a.conversations.create(items=[]).id.startswith("conv_"), "a conversation may begin empty"


def test_a_conversation_holds_at_most_max_messages_items(a: openai.OpenAI) -> None:
    conv = a.conversations.create(items=[{"role": "user", "content": f"item {n}"} for n in range(CAP - 1)])
    with pytest.raises(openai.BadRequestError) as adding:
        a.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}] * 2)
    assert adding.value.param == "items" and str(CAP) in adding.value.message
    with pytest.raises(openai.BadRequestError) as asking:
        a.responses.create(model="echo", conversation=conv.id, input=[{"role": "user", "content": "x"}] * 2)
    assert asking.value.param == "conversation"
    answered = a.responses.create(model="echo", conversation=conv.id, input="last one")
    assert answered.status == "completed"
    with pytest.raises(openai.BadRequestError) as full:
        a.responses.create(model="echo", conversation=conv.id, input="one more")
    assert full.value.param == "conversation" and "start a new conversation" in full.value.message


def test_conversation_and_previous_response_id_together_are_refused(a: openai.OpenAI) -> None:
    conv = a.conversations.create()
    first = a.responses.create(model="echo", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        a.responses.create(model="echo", input="hi", conversation=conv.id, previous_response_id=first.id)
    assert caught.value.param == "conversation" and "previous_response_id" in caught.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        a.responses.create(model="echo", input="hi", conversation={"name": "x"})  # type: ignore[typeddict-item]
    assert bad.value.param == "conversation"


def test_a_key_is_needed_and_unknown_paths_are_404s(live: Live) -> None:
    assert httpx.post(f"{live.base_url}/conversations", json={}).status_code == 401
    assert httpx.get(f"{live.base_url}/conversations/conv_x").status_code == 401
    headers = {"authorization": f"Bearer {ENV['A_KEY']}"}
    r = httpx.get(f"{live.base_url}/conversations/conv_x/other", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.post(f"{live.base_url}/conversations/conv_x", content=b"{not json", headers=headers)
    assert r.status_code == 400
    r = httpx.get(f"{live.base_url.removesuffix('/v1')}/conversations/conv_x", headers=headers)
    assert r.status_code == 404 and "conv_x" in r.json()["error"]["message"]  # the paths without /v1 too


def test_the_sqlite_store_keeps_them_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    with live_gateway(config(db), env=ENV) as live:
        client = client_of(live)
        conv = client.conversations.create(metadata={"k": "v"})
        client.responses.create(model="echo", input="remember this", conversation=conv.id)
    with live_gateway(config(db), env=ENV) as live:
        client = client_of(live)
        went_on = client.responses.create(model="echo", input="and this", conversation=conv.id)
        assert went_on.usage is not None and went_on.usage.input_tokens == tokens(
            "remember this", "You said: remember this", "and this")
        assert len(texts_of(client, conv.id)) == 4
        with pytest.raises(openai.NotFoundError):
            client_of(live, "B_KEY").conversations.retrieve(conv.id)


def test_without_a_store_they_are_kept_in_the_process() -> None:
    with live_gateway(config(None), env=ENV) as live:
        assert live.gateway.tenancy.store is None
        client = client_of(live)
        conv = client.conversations.create()
        client.responses.create(model="echo", input="in memory", conversation=conv.id)
        assert texts_of(client, conv.id) == [("user", "in memory"), ("assistant", "You said: in memory")]


def test_expect_continue_on_a_conversation_path_is_refused_by_its_head(live: Live) -> None:
    """A client uploading items with ``Expect: 100-continue`` and a wrong key gets its 401 before the body."""
    port = int(live.base_url.rsplit(":", 1)[1].split("/")[0])
    for path in ("/v1/conversations", "/v1/conversations/conv_x/items"):
        w = Wire(port)
        w.send((f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer sk-wrong-123\r\nContent-Length: 100000\r\n"
                "Expect: 100-continue\r\n\r\n").encode())
        answer = w.answer()
        assert answer.status == 401 and answer.error()["type"] == "authentication_error"
        assert b"100 Continue" not in w.buf
        w.close()
