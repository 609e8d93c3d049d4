"""GET /v1/models is behind the same door as chat when keys are configured."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.test_policy_http import ENV, RAW
from tests.support.live import Live, live_gateway


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_gateway(RAW, env=ENV) as g:
        yield g


def test_models_needs_a_key(live: Live) -> None:
    resp = httpx.get(f"{live.base_url}/models")
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{live.base_url}/models", headers={"authorization": "Bearer sk-wrong"}).status_code == 401


def test_models_lists_only_what_the_key_may_use(live: Live) -> None:
    partner = openai.OpenAI(base_url=live.base_url, api_key=ENV["PARTNER_KEY"], max_retries=0)
    assert sorted(m.id for m in partner.models.list()) == ["cheap", "main"]
    acme = openai.OpenAI(base_url=live.base_url, api_key=ENV["ACME_KEY"], max_retries=0)
    assert {"main", "doomed", "cheap", "local-qwen", "cloud-ds"} <= {m.id for m in acme.models.list()}
