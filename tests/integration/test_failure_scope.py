"""Failure scope, account states and retired models through the real gateway on loopback.

The fault upstream answers with each provider's documented error body (the fixtures in
``tests/fixtures/PROVIDER/errors``); the client is the openai SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.faults import Fleet, upstream
from tests.support.fault_upstream import ANSWER, FaultUpstream
from tests.support.live import Live

RATE_LIMITED = "status-429+retry-60"
RELAY_BLOCK = "errfile-openrouter/403_provider_region_block"


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    fleet = Fleet(up)
    fleet.route("billing", "errfile-deepseek/402_insufficient_balance", "ok")
    fleet.route("retired", "errfile-openai/404_model_not_found", "ok")
    fleet.route("retired-ds", "errfile-deepseek/400_model_not_exist", "ok")
    fleet.route("schema", "errfile-openai/400_invalid_value", "ok")
    fleet.route("only-429", RATE_LIMITED)
    # One backend serving two models: "shared-0" is rate-limited, "shared-sibling" is healthy.
    fleet.route("shared", RATE_LIMITED, "ok")
    fleet.models["shared-sibling"] = {"backend": "shared-b0", "upstream": upstream("shared", 9, "ok")}
    fleet.routes["sibling"] = {"models": ["shared-sibling"]}
    # A relay whose provider blocks one model in our region: the relay's other models serve.
    fleet.route("relay", RELAY_BLOCK, "ok")
    fleet.models["relay-sibling"] = {"backend": "relay-b0", "upstream": upstream("relay", 9, "ok")}
    fleet.routes["relay-other"] = {"models": ["relay-sibling"]}
    with fleet.serve() as g:
        yield g


@pytest.fixture(scope="module")
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def ask() -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": "Spell the NATO alphabet"}]


def answer(client: openai.OpenAI, route: str) -> httpx.Headers:
    raw = client.chat.completions.with_raw_response.create(model=route, messages=ask())
    assert raw.parse().choices[0].message.content == ANSWER
    return raw.headers


def health(live: Live) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{live.root}/v1/health/backends").json()
    return doc


def test_billing_fails_over_and_takes_the_backend_out(
    live: Live, client: openai.OpenAI, up: FaultUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute")
    headers = answer(client, "billing")
    assert headers["x-polyroute-attempts"] == "2" and headers["x-polyroute-model"] == "billing-1"
    assert headers["x-polyroute-attempt-log"].startswith("billing-b0/billing-0 billing ")
    # The second request does not call the unpaid account again.
    assert answer(client, "billing")["x-polyroute-attempts"] == "1"
    assert up.count(upstream("billing", 0, "errfile-deepseek/402_insufficient_balance")) == 1
    words = "billing-b0: account balance exhausted (402 Insufficient Balance); top up the account"
    assert words in caplog.text and "scope backend: account-wide" in caplog.text
    backend = health(live)["backends"]["billing-b0"]
    assert (backend["state"], backend["scope"], backend["reason"]) == ("open", "backend", "billing")
    assert backend["detail"].startswith(words) and backend["why"].startswith("account-wide")
    assert backend["next_probe_in"] > 800  # billing_cooldown (900 s by default), not a probe interval


@pytest.mark.parametrize(
    ("route", "fault", "upstream_id"),
    [
        ("retired", "errfile-openai/404_model_not_found", "errfile-openai/404_model_not_found+id-retired-0"),
        ("retired-ds", "errfile-deepseek/400_model_not_exist", "errfile-deepseek/400_model_not_exist+id-retired-ds-0"),
    ],
)
def test_a_retired_model_fails_over_and_stays_out(
    live: Live, client: openai.OpenAI, up: FaultUpstream, caplog: pytest.LogCaptureFixture,
    route: str, fault: str, upstream_id: str,
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute")
    headers = answer(client, route)
    assert headers["x-polyroute-attempts"] == "2"
    assert f"{route}-b0/{route}-0 model_not_found " in headers["x-polyroute-attempt-log"]
    assert answer(client, route)["x-polyroute-attempts"] == "1"
    assert up.count(upstream(route, 0, fault)) == 1
    advice = (f"model {upstream_id} on backend {route}-b0: the provider says it does not exist")
    assert advice in caplog.text and f"update the catalog or [models.{route}-0].upstream" in caplog.text
    doc = health(live)
    model = doc["models"][f"{route}-0"]
    assert (model["state"], model["scope"], model["reason"]) == ("open", "model", "model_not_found")
    assert model["next_probe_in"] > 3000  # retired_cooldown (an hour by default)
    assert doc["backends"][f"{route}-b0"]["state"] == "closed"


def test_a_schema_error_does_not_fail_over(client: openai.OpenAI, up: FaultUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="schema", messages=ask())
    assert info.value.code == "invalid_value"
    assert up.count(upstream("schema", 1, "ok")) == 0


def test_a_429_stays_with_its_model_and_the_sibling_serves_with_one_attempt(
    live: Live, client: openai.OpenAI, up: FaultUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute")
    headers = answer(client, "shared")
    assert headers["x-polyroute-attempt-log"].startswith("shared-b0/shared-0 rate_limited ")
    sibling = answer(client, "sibling")
    assert (sibling["x-polyroute-attempts"], sibling["x-polyroute-backend"]) == ("1", "shared-b0")
    assert "breaker model:shared-0 open: rate_limited" in caplog.text
    assert "scope model: this model only" in caplog.text
    doc = health(live)
    assert doc["backends"]["shared-b0"]["state"] == "closed"
    model = doc["models"]["shared-0"]
    assert (model["state"], model["scope"], model["reason"]) == ("open", "model", "rate_limited")
    assert doc["models"]["shared-sibling"]["state"] == "closed"


def test_a_region_block_of_one_model_behind_a_relay_stays_with_that_model(live: Live, client: openai.OpenAI) -> None:
    headers = answer(client, "relay")
    assert headers["x-polyroute-attempt-log"].startswith("relay-b0/relay-0 blocked ")
    assert answer(client, "relay-other")["x-polyroute-attempts"] == "1"
    doc = health(live)
    assert doc["backends"]["relay-b0"]["state"] == "closed"
    model = doc["models"]["relay-0"]
    assert (model["state"], model["scope"], model["reason"]) == ("open", "model", "blocked")
    assert model["detail"].startswith("OpenAI: Provider returned error")


def test_a_rate_limited_candidate_is_not_called_again_within_its_retry_after(
    client: openai.OpenAI, up: FaultUpstream
) -> None:
    for attempts in ("1", "0"):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="only-429", messages=ask())
        # Every candidate rate limited: a 429 saying when the soonest may be tried again.
        assert info.value.status_code == 429
        assert int(info.value.response.headers["retry-after"]) >= 1
        assert info.value.response.headers.get("x-polyroute-attempts", "0") == attempts
    # The second request found every candidate cooling down: it was not panic-retried.
    assert "skipped: rate limited" in info.value.message
    assert up.count(upstream("only-429", 0, RATE_LIMITED)) == 1
