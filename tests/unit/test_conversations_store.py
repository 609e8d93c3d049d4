"""Every ``ConversationStore`` alike (in the process, SQLite, PostgreSQL), and the keeper in front of them: a key
reaches only its own conversations, and nothing past its end. PostgreSQL's cases are skipped when there is no
server at 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyroute.errors import InvalidRequest
from polyroute.tenancy.conversations import (
    ConversationKeeper,
    ConversationStore,
    MemoryConversations,
    StoredConversation,
)
from polyroute.tenancy.conversations_sqlite import SqliteConversations


def message(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": "user", "status": "completed",
                            "content": [{"type": "input_text", "text": text}]}
    if item_id is not None:
        item["id"] = item_id
    return item


def conversation(cid: str = "conv_1", key: str | None = "a", expires_at: float = 2000.0) -> StoredConversation:
    return StoredConversation(cid, key, "team", 1000.0, expires_at, {"topic": "tests"})


def texts(items: list[dict[str, Any]]) -> list[str]:
    return [item["content"][0]["text"] for item in items]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConversationStore]:
    if request.param == "memory":
        yield MemoryConversations()
        return
    if request.param == "sqlite":
        s: ConversationStore = SqliteConversations(tmp_path / "store.db")
        yield s
        s.close()
        return
    from tests.support.postgres import database, shared_or_skip

    shared_or_skip()
    from polyroute.tenancy.conversations_postgres import PostgresConversations

    with database() as url:
        s = PostgresConversations(url)
        yield s
        s.close()


def test_a_conversation_keeps_its_items_in_order_until_its_end(store: ConversationStore) -> None:
    made = store.create(conversation(), [message("one", "msg_given"), message("caf\u00e9")])
    assert made[0]["id"] == "msg_given" and made[1]["id"].startswith("msg_")
    got = store.get("conv_1", 1500.0)
    assert got is not None and got.key == "a" and got.team == "team" and got.size == 2
    assert got.metadata == {"topic": "tests"} and got.shown()["object"] == "conversation"
    added = store.append("conv_1", [message("three"), {"type": "function_call_output", "call_id": "c",
                                                        "output": "ok"}], 2500.0, None)
    assert added is not None and added.size == 4 and added.items[1]["id"].startswith("fco_")
    assert texts(store.items("conv_1")[:3]) == ["one", "caf\u00e9", "three"]
    assert store.get("conv_1", 2400.0) is not None, "a write pushes the end back"
    assert store.get("conv_1", 2500.0) is None
    assert store.get("conv_2", 1500.0) is None and store.append("conv_2", [message("x")], 3000.0, None) is None


def test_pages_go_both_ways_from_an_item(store: ConversationStore) -> None:
    store.create(conversation(), [message(str(n), f"msg_{n}") for n in range(5)])
    first, more = store.page("conv_1", None, 2, False) or ([], False)
    assert [i["id"] for i in first] == ["msg_0", "msg_1"] and more
    rest, more = store.page("conv_1", "msg_1", 10, False) or ([], True)
    assert [i["id"] for i in rest] == ["msg_2", "msg_3", "msg_4"] and not more
    newest, more = store.page("conv_1", None, 2, True) or ([], False)
    assert [i["id"] for i in newest] == ["msg_4", "msg_3"] and more
    older, more = store.page("conv_1", "msg_3", 3, True) or ([], True)
    assert [i["id"] for i in older] == ["msg_2", "msg_1", "msg_0"] and not more
    assert store.page("conv_1", "msg_none", 3, True) is None


def test_an_item_is_read_and_deleted_by_its_id(store: ConversationStore) -> None:
    store.create(conversation(), [message("one", "msg_a"), message("two", "msg_b")])
    found = store.item("conv_1", "msg_b")
    assert found is not None and texts([found]) == ["two"]
    assert store.delete_item("conv_1", "msg_a") and not store.delete_item("conv_1", "msg_a")
    assert store.item("conv_1", "msg_a") is None and texts(store.items("conv_1")) == ["two"]
    got = store.get("conv_1", 1500.0)
    assert got is not None and got.size == 1


def test_an_id_the_conversation_holds_is_given_anew(store: ConversationStore) -> None:
    store.create(conversation(), [message("one", "msg_a")])
    added = store.append("conv_1", [message("again", "msg_a"), message("twice", "msg_b"),
                                    message("thrice", "msg_b")], 2000.0, None)
    assert added is not None
    ids = [item["id"] for item in store.items("conv_1")]
    assert ids[0] == "msg_a" and ids[2] == "msg_b" and len(set(ids)) == 4


def test_an_item_is_found_by_its_id_alone_among_the_keys_live_conversations(store: ConversationStore) -> None:
    store.create(conversation("conv_1"), [message("first", "msg_x"), message("other", "msg_y")])
    store.create(conversation("conv_2"), [message("second", "msg_x")])
    store.create(conversation("conv_b", key="b"), [message("b's", "msg_x"), message("b's only", "msg_b")])
    store.create(conversation("conv_open", key=None), [message("open door", "msg_x")])
    found = [store.find_item("msg_x", key, 1500.0) for key in ("a", "b", None)]
    assert [texts([item])[0] for item in found if item is not None] == ["second", "b's", "open door"]
    assert store.find_item("msg_b", "a", 1500.0) is None and store.find_item("msg_b", None, 1500.0) is None
    assert store.find_item("msg_y", "a", 2000.0) is None, "past its conversation's end"
    assert store.delete_item("conv_2", "msg_x")
    got = store.find_item("msg_x", "a", 1500.0)
    assert got is not None and texts([got]) == ["first"]
    assert store.delete("conv_1") and store.find_item("msg_x", "a", 1500.0) is None
    assert store.find_item("msg_nope", "a", 1500.0) is None


def test_the_cap_refuses_the_whole_append(store: ConversationStore) -> None:
    store.create(conversation(), [message("one"), message("two")])
    refused = store.append("conv_1", [message("three"), message("four")], 2000.0, 3)
    assert refused is not None and refused.items == [] and refused.size == 2
    assert texts(store.items("conv_1")) == ["one", "two"]
    taken = store.append("conv_1", [message("three")], 2000.0, 3)
    assert taken is not None and taken.size == 3


def test_delete_metadata_and_expire(store: ConversationStore) -> None:
    store.create(conversation(), [message("one")])
    store.create(conversation("conv_2", key=None, expires_at=1200.0), [message("two", "msg_2")])
    store.update("conv_1", {"topic": "changed"}, 3000.0)
    got = store.get("conv_1", 2500.0)
    assert got is not None and got.metadata == {"topic": "changed"}
    store.expire(1300.0)
    assert store.get("conv_2", 0.0) is None and store.item("conv_2", "msg_2") is None
    assert store.delete("conv_1") and not store.delete("conv_1")
    assert store.get("conv_1", 1500.0) is None and store.items("conv_1") == []


def test_the_memory_store_drops_the_least_recently_used() -> None:
    store = MemoryConversations(limit=2)
    for n in range(2):
        store.create(conversation(f"conv_{n}"), [])
    assert store.get("conv_0", 1500.0) is not None
    store.create(conversation("conv_2"), [message("two", "msg_2")])
    assert store.get("conv_1", 1500.0) is None and store.get("conv_0", 1500.0) is not None
    assert store.find_item("msg_2", "a", 1500.0) is not None
    store.create(conversation("conv_3"), [])  # conv_0 was used last: conv_2 goes
    assert store.find_item("msg_2", "a", 1500.0) is None, "a dropped conversation's items go with it"


def test_the_memory_store_keeps_its_conversations_within_its_bytes() -> None:
    """Turns with images or long answers add up: the least recently used conversations go first."""
    store = MemoryConversations(limit=100, max_bytes=30_000)
    for n in range(3):
        store.create(conversation(f"conv_{n}"), [message("x" * 9_000)])
    store.get("conv_0", 1500.0)  # used last: kept
    grown = store.append("conv_2", [message("y" * 9_000, "msg_y")], 2000.0, None)
    assert grown is not None and grown.size == 2
    assert store.held_bytes <= 30_000
    assert store.get("conv_1", 1500.0) is None and store.get("conv_0", 1500.0) is not None
    assert store.find_item("msg_y", "a", 1500.0) is not None
    before = store.held_bytes
    assert store.delete_item("conv_2", "msg_y") and store.held_bytes < before
    store.append("conv_0", [message("z" * 40_000)], 2000.0, None)  # larger than all it may hold: dropped
    assert store.get("conv_0", 1500.0) is None and store.held_bytes <= 30_000
    store.delete("conv_2")
    assert store.held_bytes == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_keeper_hands_a_key_only_its_own(tmp_path: Path) -> None:
    clock = Clock()
    keeper = ConversationKeeper(SqliteConversations(tmp_path / "store.db"), retention_s=100.0, clock=clock)

    async def scenario() -> None:
        made, items = await keeper.create({"k": "v"}, [message("hello")], "a", "team")
        assert made.id.startswith("conv_") and made.size == 1 and items[0]["id"].startswith("msg_")
        assert await keeper.get(made.id, "b") is None and await keeper.get(made.id, None) is None
        assert await keeper.read(made.id, "b") is None
        assert await keeper.append(made.id, "b", [message("not mine")], None) is None
        assert await keeper.page(made.id, "b", None, 10, False) is None
        assert await keeper.item(made.id, "b", items[0]["id"]) is None
        assert await keeper.update(made.id, "b", {}) is None
        assert (await keeper.delete_item(made.id, "b", items[0]["id"]))[0] is None
        assert not await keeper.delete(made.id, "b")
        with pytest.raises(InvalidRequest):
            await keeper.page(made.id, "a", "msg_unknown", 10, False)
        clock.now = 1090.0
        assert await keeper.append(made.id, "a", [message("later")], None) is not None
        clock.now = 1150.0  # past the first end, not the end the append set
        found = await keeper.read(made.id, "a")
        assert found is not None and texts(found[1]) == ["hello", "later"]
        clock.now = 1191.0
        assert await keeper.get(made.id, "a") is None
    try:
        asyncio.run(scenario())
    finally:
        keeper.close()
