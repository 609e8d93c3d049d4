"""GET /v1/models for Anthropic's SDKs: the models the OpenAI list shows, in Anthropic's shape, paged.

An Anthropic client sends ``anthropic-version`` with every request; it gets ``{"data": [{"type": "model", "id",
"display_name", "created_at"}], "has_more", "first_id", "last_id"}``, paged by ``limit``, ``after_id`` and
``before_id``, and its errors in Anthropic's shape (``NotFoundError`` for a model it may not see).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.integration.test_policy_http import ENV, RAW
from tests.support.live import Live, live_gateway


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_gateway(RAW, env=ENV) as g:
        yield g


def claude_client(live: Live, key: str = ENV["ACME_KEY"]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.root, api_key=key, max_retries=0)


def openai_ids(live: Live, key: str = ENV["ACME_KEY"]) -> list[str]:
    return [m.id for m in openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0).models.list()]


def test_the_list_shows_the_openai_lists_models_in_anthropics_shape(live: Live) -> None:
    page = claude_client(live).models.list()
    assert [m.id for m in page.data] == openai_ids(live) and len(page.data) > 3
    assert page.has_more is False and page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    for info in page.data:
        assert info.type == "model" and info.display_name == info.id
        assert isinstance(info.created_at, datetime.datetime) and info.created_at.tzinfo is not None
    partner = claude_client(live, ENV["PARTNER_KEY"]).models.list()
    assert sorted(m.id for m in partner.data) == ["cheap", "main"] == sorted(openai_ids(live, ENV["PARTNER_KEY"]))


def test_pages_follow_one_another_both_ways(live: Live) -> None:
    client = claude_client(live)
    every = openai_ids(live)
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == every[:2] and first.has_more is True
    assert [m.id for m in client.models.list(limit=2)] == every  # the SDK's auto-pagination, by after_id
    back = client.models.list(limit=2, before_id=every[3])
    assert [m.id for m in back.data] == every[1:3] and back.has_more is True
    assert [m.id for m in client.models.list(limit=5, before_id=every[1]).data] == every[:1]
    last = client.models.list(limit=1000, after_id=every[-2])
    assert [m.id for m in last.data] == every[-1:] and last.has_more is False


def test_one_model_and_the_errors_are_anthropics(live: Live) -> None:
    client = claude_client(live)
    info = client.models.retrieve("main")
    assert info.id == "main" and info.type == "model" and info.created_at.year >= 2026
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        claude_client(live, ENV["PARTNER_KEY"]).models.retrieve("doomed")  # a route this key may not use
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.models.list(limit=0)
    assert "limit" in bad.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        claude_client(live, "sk-wrong").models.list()
