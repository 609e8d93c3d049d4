"""What ``previous_response_id`` and ``item_reference`` items name, put in from stored responses and
conversations; a key reads only its own, and nothing past its retention."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from polyroute.errors import InvalidRequest
from polyroute.server.responses_references import item_finder, names_stored, resolve, resolve_input
from polyroute.tenancy.conversations import ConversationKeeper, MemoryConversations
from polyroute.tenancy.responses import MemoryResponses, ResponseKeeper

USER = {"type": "message", "role": "user", "content": "hi"}


def answer(rid: str, text: str) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": "completed", "output": [
        {"id": f"msg_{rid}_0", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kept(clock: Clock) -> ResponseKeeper:
    return ResponseKeeper(MemoryResponses(limit=3), retention_s=60.0, clock=clock)


@pytest.fixture
def conversations(clock: Clock) -> ConversationKeeper:
    return ConversationKeeper(MemoryConversations(), retention_s=60.0, clock=clock)


def put(kept: ResponseKeeper, rid: str, text: str, previous: str | None = None, key: str | None = "a",
        given: list[dict[str, Any]] | None = None) -> None:
    asyncio.run(kept.put(answer(rid, text), given or [USER], previous, key, None))


def resolved_for(kept: ResponseKeeper, raw: dict[str, Any], key: str | None = "a",
                 conversations: ConversationKeeper | None = None) -> Any:
    conversations = conversations or ConversationKeeper(MemoryConversations(), 60.0, clock=kept.clock)
    return resolve_input(raw, kept.lookup(key), item_finder(kept, conversations, key))


def test_previous_response_id_puts_the_whole_chain_first_oldest_first(kept: ResponseKeeper) -> None:
    put(kept, "resp_1", "one")
    put(kept, "resp_2", "two", previous="resp_1", given=[{"type": "message", "role": "user", "content": "more"}])
    got = resolved_for(kept, {"input": "last", "previous_response_id": "resp_2"})
    assert got.previous_id == "resp_2" and got.given == "last"
    texts = [item["content"] if isinstance(item["content"], str) else item["content"][0]["text"]
             for item in got.input()]
    assert texts == ["hi", "one", "more", "two", "last"]


def test_an_item_reference_becomes_the_item_and_a_request_without_any_is_left_alone(kept: ResponseKeeper) -> None:
    put(kept, "resp_1", "one")
    raw = {"input": [{"type": "item_reference", "id": "msg_resp_1_0"}, {"id": "msg_resp_1_0"}, USER]}
    assert names_stored(raw) and not names_stored({"input": [USER]}) and not names_stored({"input": "x"})
    got = resolved_for(kept, raw)
    assert [item["role"] for item in got.input()] == ["assistant", "assistant", "user"]
    assert got.input()[0]["content"][0]["text"] == "one"


@pytest.mark.parametrize(("raw", "param"), [
    ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
    ({"input": "x", "previous_response_id": 7}, "previous_response_id"),
    ({"input": [USER, {"type": "item_reference", "id": "msg_nope"}]}, "input[1].id"),
    ({"input": [{"type": "item_reference"}]}, "input[0].id"),
])
def test_what_names_nothing_stored_is_a_400_naming_the_field(
        kept: ResponseKeeper, raw: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolved_for(kept, raw)
    assert caught.value.param == param


def test_another_keys_responses_read_as_unknown_ones(kept: ResponseKeeper) -> None:
    put(kept, "resp_1", "secret", key="a")
    for raw, param in (({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
                       ({"input": [{"type": "item_reference", "id": "msg_resp_1_0"}]}, "input[0].id")):
        with pytest.raises(InvalidRequest) as caught:
            resolved_for(kept, raw, key="b")
        assert caught.value.param == param and "secret" not in caught.value.message
        with pytest.raises(InvalidRequest):
            resolved_for(kept, raw, key=None)  # nor does a gateway's open door
    assert asyncio.run(kept.get("resp_1", "b")) is None
    assert not asyncio.run(kept.delete("resp_1", "b"))
    assert asyncio.run(kept.get("resp_1", "a")) is not None


def test_a_chain_whose_earlier_response_is_gone_says_which(kept: ResponseKeeper) -> None:
    put(kept, "resp_1", "one")
    put(kept, "resp_2", "two", previous="resp_1")
    assert asyncio.run(kept.delete("resp_1", "a"))
    with pytest.raises(InvalidRequest) as caught:
        resolved_for(kept, {"input": "x", "previous_response_id": "resp_2"})
    assert "resp_1" in caught.value.message and caught.value.param == "previous_response_id"


def test_past_its_retention_a_response_is_gone(kept: ResponseKeeper, clock: Clock) -> None:
    put(kept, "resp_1", "one")
    clock.now += 59
    assert asyncio.run(kept.get("resp_1", "a")) is not None
    clock.now += 2
    assert asyncio.run(kept.get("resp_1", "a")) is None
    with pytest.raises(InvalidRequest):
        resolved_for(kept, {"input": [{"type": "item_reference", "id": "msg_resp_1_0"}]})


def test_the_memory_store_drops_the_least_recently_used(kept: ResponseKeeper) -> None:
    for n in range(1, 4):
        put(kept, f"resp_{n}", str(n))
    assert asyncio.run(kept.get("resp_1", "a")) is not None  # used: resp_2 is now the oldest
    put(kept, "resp_4", "4")
    assert asyncio.run(kept.get("resp_2", "a")) is None
    assert kept.store.item("msg_resp_2_0", 0.0) is None  # its items go with it
    assert all(asyncio.run(kept.get(f"resp_{n}", "a")) is not None for n in (1, 3, 4))


def test_a_chain_that_loops_ends(kept: ResponseKeeper) -> None:
    put(kept, "resp_1", "one", previous="resp_2")
    put(kept, "resp_2", "two", previous="resp_1")
    got = resolved_for(kept, {"input": "x", "previous_response_id": "resp_2"})
    assert len(got.earlier) == 4


def converse(conversations: ConversationKeeper, key: str | None, *texts: str) -> tuple[str, list[str]]:
    """A conversation of ``key``'s holding a user message per text (each with an id the client chose): its id and
    the items' ids."""
    items = [{"id": f"msg_{text}", "type": "message", "role": "user", "status": "completed",
              "content": [{"type": "input_text", "text": text}]} for text in texts]
    made, stored = asyncio.run(conversations.create({}, items, key, None))
    return made.id, [item["id"] for item in stored]


def test_an_item_reference_names_an_item_of_one_of_the_keys_conversations(
        kept: ResponseKeeper, conversations: ConversationKeeper) -> None:
    put(kept, "resp_1", "answered")
    _, [added] = converse(conversations, "a", "added")
    raw = {"input": [{"type": "item_reference", "id": added}, {"type": "item_reference", "id": "msg_resp_1_0"}]}
    got = asyncio.run(resolve(raw, kept, conversations, "a"))
    assert [item["content"][0]["text"] for item in got.input()] == ["added", "answered"]
    assert got.given[0] == {"id": added, "type": "message", "role": "user", "status": "completed",
                            "content": [{"type": "input_text", "text": "added"}]}


def test_another_keys_conversation_item_is_the_same_400_as_an_unknown_id(
        kept: ResponseKeeper, conversations: ConversationKeeper) -> None:
    converse(conversations, "a", "secret")
    errors = []
    for key, wanted in (("b", "msg_secret"), (None, "msg_secret"), ("b", "msg_never")):
        with pytest.raises(InvalidRequest) as caught:
            resolved_for(kept, {"input": [{"type": "item_reference", "id": wanted}]}, key, conversations)
        errors.append((caught.value.param, caught.value.code, caught.value.message.replace(wanted, "ID")))
    assert errors[0] == errors[1] == errors[2] and errors[0][0] == "input[0].id"


def test_an_id_two_keys_both_gave_finds_each_its_own(kept: ResponseKeeper, conversations: ConversationKeeper) -> None:
    converse(conversations, "a", "same")
    asyncio.run(conversations.create({}, [{"id": "msg_same", "type": "message", "role": "user",
                                           "content": [{"type": "input_text", "text": "b's"}]}], "b", None))
    for key, text in (("a", "same"), ("b", "b's")):
        got = resolved_for(kept, {"input": [{"type": "item_reference", "id": "msg_same"}]}, key, conversations)
        assert got.given[0]["content"][0]["text"] == text


def test_a_deleted_or_expired_conversations_items_are_gone(
        kept: ResponseKeeper, conversations: ConversationKeeper, clock: Clock) -> None:
    gone, _ = converse(conversations, "a", "deleted")
    converse(conversations, "a", "expiring")
    assert asyncio.run(conversations.delete(gone, "a"))
    clock.now += 61
    for wanted in ("msg_deleted", "msg_expiring"):
        with pytest.raises(InvalidRequest):
            resolved_for(kept, {"input": [{"type": "item_reference", "id": wanted}]}, "a", conversations)
