"""An ``item_reference`` may name an input item of a stored response (as ``input_items`` lists it), in every
``ResponseStore`` and through a real gateway: found by id and key together, since a client chooses input items'
ids, so an id two keys both gave finds each its own and another key's is the same 400 as an unknown one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import openai
import pytest

from polyroute.tenancy.responses import ResponseStore
from tests.integration.test_responses_stores import store, stored
from tests.support.live import Live, live_gateway

__all__ = ["store"]  # the fixture, shared with test_responses_stores

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}


def asked(text: str, item_id: str = "msg_in") -> list[dict[str, Any]]:
    return [{"id": item_id, "type": "message", "role": "user", "content": text}]


def test_an_input_item_is_found_by_id_among_the_keys_own_responses(store: ResponseStore) -> None:
    store.put(replace(stored("resp_1"), input=asked("a's first")))
    store.put(replace(stored("resp_2"), input=asked("a's second")))
    store.put(replace(stored("resp_3", key="b"), input=asked("b's")))
    store.put(replace(stored("resp_4", key=None), input=asked("open door")))
    found = {key: store.input_item("msg_in", key, 1500.0) for key in ("a", "b", None, "c")}
    assert {k: v["content"] if v else None for k, v in found.items()} == {
        "a": "a's second", "b": "b's", None: "open door", "c": None}, "the one stored last wins"
    assert store.delete("resp_2")
    again = store.input_item("msg_in", "a", 1500.0)
    assert again is not None and again["content"] == "a's first"
    assert store.input_item("msg_in", "a", 2000.0) is None, "past its response's end"
    store.put(replace(stored("resp_1"), input=asked("replaced", "msg_other")))
    assert store.input_item("msg_in", "a", 1500.0) is None, "a response stored again replaces its inputs"
    store.expire(2500.0)
    assert store.input_item("msg_other", "a", 0.0) is None


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "keys": {"a": {"secret": "env:A_KEY"}, "b": {"secret": "env:B_KEY"}}}
    with live_gateway(raw, env=ENV) as g:
        yield g


def test_an_item_reference_names_an_input_item_of_a_stored_response(live: Live) -> None:
    a = openai.OpenAI(base_url=live.base_url, api_key=ENV["A_KEY"], max_retries=0)
    b = openai.OpenAI(base_url=live.base_url, api_key=ENV["B_KEY"], max_retries=0)
    first = a.responses.create(model="echo", input=[{"role": "user", "content": "the word is fig"}])
    [given] = a.responses.input_items.list(first.id).data
    reference: Any = [{"type": "item_reference", "id": given.id}]
    again = a.responses.create(model="echo", input=reference)
    assert again.output_text == "You said: the word is fig"
    with pytest.raises(openai.BadRequestError) as caught:
        b.responses.create(model="echo", input=reference)
    with pytest.raises(openai.BadRequestError) as unknown:
        b.responses.create(model="echo", input=[{"type": "item_reference", "id": "msg_unknown"}])
    assert caught.value.param == unknown.value.param == "input[0].id"
    assert caught.value.message.replace(given.id, "ID") == unknown.value.message.replace("msg_unknown", "ID")
    a.responses.delete(first.id)  # ``again`` holds the item too, as it was put in: deleted, nothing holds it
    assert a.responses.create(model="echo", input=reference, store=False).output_text == again.output_text
    a.responses.delete(again.id)
    with pytest.raises(openai.BadRequestError):
        a.responses.create(model="echo", input=reference)
