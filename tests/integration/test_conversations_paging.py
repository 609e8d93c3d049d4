"""A conversation's items paged as OpenAI documents it, through a real gateway: the ``openai`` SDK's paginators
(sync and async) walk every page in both orders, each page's ``first_id``, ``last_id`` and ``has_more`` say what
it holds, and bad ``limit``, ``order`` and ``after`` values are OpenAI's 400s naming them, here and on a stored
response's ``input_items``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway

KEY = "sk-a-0123456789abcdef"
HELD = 130  # past one page of the largest limit


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"gateway": {"max_messages": 200}, "backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "keys": {"a": {"secret": "env:A_KEY"}}}
    with live_gateway(raw, env={"A_KEY": KEY}) as g:
        yield g


@pytest.fixture(scope="module")
def held(live: Live) -> tuple[str, list[str]]:
    """A conversation of ``HELD`` items, and their ids oldest first."""
    client = openai.OpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)
    conv = client.conversations.create()
    ids: list[str] = []
    for start in range(0, HELD, 20):
        added = client.conversations.items.create(conv.id, items=[
            {"role": "user", "content": f"item {n}"} for n in range(start, min(start + 20, HELD))])
        ids.extend(item.id for item in added.data)
    return conv.id, ids


def client_of(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)


def get(live: Live, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{live.base_url}{path}", params=params, headers={"authorization": f"Bearer {KEY}"})


@pytest.mark.parametrize(("order", "limit"), [("asc", 7), ("desc", 7), ("asc", 100), ("desc", None)])
def test_the_sdks_paginator_walks_every_item_once_in_order(
        live: Live, held: tuple[str, list[str]], order: str, limit: int | None) -> None:
    conv, ids = held
    pages = client_of(live).conversations.items.list(conv, order=order,  # type: ignore[arg-type]
                                                     **({"limit": limit} if limit else {}))
    walked = [item.id for item in pages]
    assert walked == (ids if order == "asc" else ids[::-1])


def test_the_async_paginator_too(live: Live, held: tuple[str, list[str]]) -> None:
    conv, ids = held

    async def walk() -> list[str]:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)
        try:
            return [item.id async for item in client.conversations.items.list(conv, order="asc", limit=33)]
        finally:
            await client.close()
    assert asyncio.run(walk()) == ids


def test_each_page_says_what_it_holds_and_whether_more_follow(live: Live, held: tuple[str, list[str]]) -> None:
    conv, ids = held
    first = get(live, f"/conversations/{conv}/items").json()
    assert [i["id"] for i in first["data"]] == ids[::-1][:20], "20 newest first by default"
    assert (first["object"], first["first_id"], first["last_id"], first["has_more"]) == (
        "list", ids[-1], ids[-20], True)
    last = get(live, f"/conversations/{conv}/items", order="asc", after=ids[-4], limit=3).json()
    assert [i["id"] for i in last["data"]] == ids[-3:] and last["has_more"] is False, "an exact last page"
    beyond = get(live, f"/conversations/{conv}/items", order="asc", after=ids[-1]).json()
    assert beyond == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    repeated = get(live, f"/conversations/{conv}/items", limit=["50", "2"]).json()
    assert len(repeated["data"]) == 2, "the last of a repeated parameter counts"


def test_an_empty_conversation_is_an_empty_page(live: Live) -> None:
    client = client_of(live)
    conv = client.conversations.create()
    page = client.conversations.items.list(conv.id)
    assert page.data == [] and page.has_more is False and page.last_id is None and list(page) == []


@pytest.mark.parametrize(("params", "param", "code"), [
    ({"limit": "0"}, "limit", "integer_below_min_value"),
    ({"limit": "-3"}, "limit", "integer_below_min_value"),
    ({"limit": "101"}, "limit", "integer_above_max_value"),
    ({"limit": "9" * 40}, "limit", "integer_above_max_value"),
    ({"limit": "ten"}, "limit", "invalid_type"),
    ({"limit": "2.5"}, "limit", "invalid_type"),
    ({"order": "newest"}, "order", "invalid_value"),
    ({"order": "ASC"}, "order", "invalid_value"),
    ({"after": "msg_not_here"}, "after", "invalid_request"),
])
def test_bad_values_are_openais_400s_naming_them(
        live: Live, held: tuple[str, list[str]], params: dict[str, str], param: str, code: str) -> None:
    client = client_of(live)
    answer = client.responses.create(model="echo", input=[{"role": "user", "content": "one"}])
    conv, _ = held
    for path in (f"/conversations/{conv}/items", f"/responses/{answer.id}/input_items"):
        r = get(live, path, **params)
        error = r.json()["error"]
        assert r.status_code == 400 and (error["param"], error["code"]) == (param, code), (path, error)
    assert get(live, f"/conversations/{conv}/items", limit="100").status_code == 200
    assert get(live, f"/conversations/{conv}/items", limit="1").status_code == 200
