"""Every ``ResponseStore`` alike (in the process, SQLite, PostgreSQL), and two gateways that share a
PostgreSQL store: a conversation begun on one goes on through the other. PostgreSQL's tests are skipped
when there is no server at 127.0.0.1:5432."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from polyroute.tenancy.responses import MemoryResponses, ResponseStore, StoredResponse
from polyroute.tenancy.responses_sqlite import SqliteResponses
from tests.support.live import live_gateway

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}


def stored(rid: str, key: str | None = "a", expires_at: float = 2000.0, text: str = "hi") -> StoredResponse:
    output = [{"id": f"msg_{rid}_0", "type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]},
              {"id": f"fc_{rid}_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}]
    return StoredResponse(rid, key, "team", 1000.0, expires_at, None,
                          [{"id": "msg_in", "type": "message", "role": "user", "content": "q"}],
                          {"id": rid, "object": "response", "output": output})


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResponseStore]:
    if request.param == "memory":
        yield MemoryResponses()
        return
    if request.param == "sqlite":
        s: ResponseStore = SqliteResponses(tmp_path / "store.db")
        yield s
        s.close()
        return
    from tests.support.postgres import database, shared_or_skip

    shared_or_skip()
    from polyroute.tenancy.responses_postgres import PostgresResponses

    with database() as url:
        s = PostgresResponses(url)
        yield s
        s.close()


def test_a_response_and_its_items_are_found_by_id_until_their_end(store: ResponseStore) -> None:
    store.put(stored("resp_1", text="caf\u00e9 \u0000 done"))
    got = store.get("resp_1", 1500.0)
    assert got is not None and got.key == "a" and got.team == "team" and got.input[0]["content"] == "q"
    assert got.response["output"][0]["content"][0]["text"] in ("caf\u00e9 \u0000 done", "caf\u00e9 \ufffd done")
    item = store.item("fc_resp_1_1", 1500.0)
    assert item is not None and item.key == "a" and item.response_id == "resp_1" and item.item["call_id"] == "call_1"
    assert store.get("resp_1", 2000.0) is None and store.item("msg_resp_1_0", 2000.0) is None
    assert store.get("resp_2", 1500.0) is None and store.item("msg_resp_2_0", 1500.0) is None


def test_delete_takes_its_items_and_expire_the_old(store: ResponseStore) -> None:
    store.put(stored("resp_1"))
    store.put(stored("resp_2", key=None, expires_at=1200.0))
    assert store.delete("resp_1") and not store.delete("resp_1")
    assert store.get("resp_1", 1100.0) is None and store.item("msg_resp_1_0", 1100.0) is None
    found = store.get("resp_2", 1100.0)
    assert found is not None and found.key is None
    store.expire(1300.0)
    assert store.get("resp_2", 0.0) is None and store.item("msg_resp_2_0", 0.0) is None


def test_a_response_stored_again_replaces_itself(store: ResponseStore) -> None:
    store.put(stored("resp_1", text="first"))
    store.put(stored("resp_1", text="second"))
    got = store.get("resp_1", 1500.0)
    assert got is not None and got.response["output"][0]["content"][0]["text"] == "second"
    item = store.item("msg_resp_1_0", 1500.0)
    assert item is not None and item.item["content"][0]["text"] == "second"


def _config(url: str) -> dict[str, Any]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}},
        "keys": {"a": {"secret": "env:A_KEY"}, "b": {"secret": "env:B_KEY"}},
        "store": {"url": url, "flush_interval": 0.05, "ledger_writer": "thread", "spool": "SPOOL"},
    }


def test_replicas_sharing_postgresql_share_the_conversation(tmp_path: Path) -> None:
    from tests.support.postgres import database, shared_or_skip

    shared_or_skip()
    with database() as url:
        one, two = _config(url), _config(url)
        one["store"]["spool"] = str(tmp_path / "one.jsonl")
        two["store"]["spool"] = str(tmp_path / "two.jsonl")
        with live_gateway(one, env=ENV) as first, live_gateway(two, env=ENV) as second:
            a1 = openai.OpenAI(base_url=first.base_url, api_key=ENV["A_KEY"], max_retries=0)
            a2 = openai.OpenAI(base_url=second.base_url, api_key=ENV["A_KEY"], max_retries=0)
            b2 = openai.OpenAI(base_url=second.base_url, api_key=ENV["B_KEY"], max_retries=0)
            begun = a1.responses.create(model="echo", input="begun on one")
            went_on = a2.responses.create(model="echo", input="went on", previous_response_id=begun.id)
            assert went_on.usage is not None and went_on.usage.input_tokens == (3 + 3) + (5 + 3) + (2 + 3)
            referenced = a2.responses.create(model="echo", input=[{"type": "item_reference",
                                                                    "id": begun.output[0].id}])
            assert referenced.status == "completed"
            assert a2.responses.retrieve(begun.id).output_text == "You said: begun on one"
            with pytest.raises(openai.NotFoundError):
                b2.responses.retrieve(begun.id)
            with pytest.raises(openai.BadRequestError):
                b2.responses.create(model="echo", input="x", previous_response_id=begun.id)
            a2.responses.delete(begun.id)
            with pytest.raises(openai.NotFoundError):
                a1.responses.retrieve(begun.id)


def test_memory_keeps_responses_within_its_bytes_the_least_recently_used_going_first() -> None:
    """Without a store, long answers (or images sent as input) cannot grow the process without end."""
    memory = MemoryResponses(limit=100, max_bytes=40_000)
    for i in range(10):
        memory.put(stored(f"resp_{i}", text="x" * 9_000))
    memory.get("resp_6", 1500.0)  # the oldest still held, read lately: kept over a newer one
    memory.put(stored("resp_10", text="x" * 9_000))
    kept = [f"resp_{i}" for i in range(11) if memory.get(f"resp_{i}", 1500.0) is not None]
    assert memory.held_bytes <= 40_000 and len(kept) == 4
    assert kept == ["resp_6", "resp_8", "resp_9", "resp_10"]
    assert memory.item("msg_resp_0_0", 1500.0) is None  # a dropped response's items go with it
    memory.put(stored("resp_huge", text="x" * 50_000))  # larger than all it may hold: not kept
    assert memory.get("resp_huge", 1500.0) is None and memory.held_bytes <= 40_000
    memory.close()
    assert memory.held_bytes == 0
