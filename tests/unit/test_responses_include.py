"""``include`` read from a body or a query, what it shows of stored items, and the list query of item lists."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from polyroute.errors import InvalidRequest
from polyroute.server.conversations_paging import listed, paging
from polyroute.server.responses_include import KNOWN, include_of, include_query, shown_items

TOKENS = [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]
ITEMS: list[dict[str, Any]] = [
    {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "pr1.e30"},
    {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": TOKENS}]},
    {"id": "msg_2", "type": "message", "role": "user", "status": "completed",
     "content": [{"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}]},
]


def test_a_read_shows_sealed_reasoning_and_logprobs_only_when_asked_and_leaves_the_stored_items_alone() -> None:
    before = copy.deepcopy(ITEMS)
    plain = shown_items(ITEMS, frozenset())
    assert "encrypted_content" not in plain[0] and plain[1]["content"][0]["logprobs"] == []
    assert plain[2] == ITEMS[2], "an image's URL is always shown"
    assert before == ITEMS
    assert shown_items(ITEMS, frozenset(KNOWN)) is ITEMS, "nothing to hide: nothing copied"
    only_sealed = shown_items(ITEMS, frozenset({"reasoning.encrypted_content"}))
    assert only_sealed[0]["encrypted_content"] == "pr1.e30" and only_sealed[1]["content"][0]["logprobs"] == []


def test_include_from_a_body_and_from_a_query() -> None:
    assert include_of(None) == frozenset()
    assert include_of(["file_search_call.results", "file_search_call.results"]) == {"file_search_call.results"}
    assert include_query({"include": ["reasoning.encrypted_content"], "include[]": ["web_search_call.results"]}) == {
        "reasoning.encrypted_content", "web_search_call.results"}
    for given, param, code in ((["nope"], "include[0]", "invalid_value"),
                               ([KNOWN[0], 7], "include[1]", "invalid_value"),
                               ("reasoning.encrypted_content", "include", "invalid_type")):
        with pytest.raises(InvalidRequest) as caught:
            include_of(given)
        assert (caught.value.param, caught.value.code) == (param, code)


@pytest.mark.parametrize(("query", "after", "limit", "newest_first"), [
    ({}, None, 20, True),
    ({"limit": ["+5"], "order": ["asc"], "after": ["msg_1"]}, "msg_1", 5, False),
    ({"limit": [" 7 "], "after": [""]}, None, 7, True),
    ({"limit": ["100"], "order": ["desc"]}, None, 100, True),
])
def test_a_list_query(query: dict[str, list[str]], after: str | None, limit: int, newest_first: bool) -> None:
    asked = paging(query)
    assert (asked.after, asked.limit, asked.newest_first) == (after, limit, newest_first)


def test_a_list_object() -> None:
    assert listed([{"id": "a"}, {"id": "b"}], True) == {"object": "list", "data": [{"id": "a"}, {"id": "b"}],
                                                         "first_id": "a", "last_id": "b", "has_more": True}
    assert listed([], False)["first_id"] is None
