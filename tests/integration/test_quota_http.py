"""Budgets and rate limits of keys and teams from the config, through a real gateway on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import openai
import pytest

from polyroute.tenancy.quota import usd
from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute, wait_until

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B1_KEY": "sk-b1-0123456789abcdef", "B2_KEY": "sk-b2-0123456789abcd",
       "POOR_KEY": "sk-poor-0123456789abcdef", "FREE_KEY": "sk-free-0123456789abcdef",
       "RICH_KEY": "sk-rich-0123456789abcdef"}
RAW = {
    "backends": {"f": {"type": "fake"}},
    # A price high enough that one answer spends a visible share of a budget.
    "models": {"echo": {"backend": "f", "input_per_mtok": 1000.0, "output_per_mtok": 2000.0},
               "broken": {"backend": "f", "upstream": "error-503"}},
    "teams": {"blue": {"rpm": 3}},
    "keys": {
        "a": {"secret": "env:A_KEY", "rpm": 2, "tpm": 100000},
        "b1": {"secret": "env:B1_KEY", "team": "blue"},
        "b2": {"secret": "env:B2_KEY", "team": "blue"},
        "poor": {"secret": "env:POOR_KEY", "budget_usd": 0.01, "budget_period": "day"},
        "free": {"secret": "env:FREE_KEY"},
        "rich": {"secret": "env:RICH_KEY", "budget_usd": 100.0, "tpm": 1_000_000},
    },
}


@pytest.fixture
def live() -> Iterator[Live]:
    with live_gateway(RAW, env=ENV) as g:
        yield g


def chat(live: Live, key: str, text: str = "hi") -> httpx.Response:
    body = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV[key]}"})


def test_rpm_refuses_with_429_and_retry_after_and_counts_down_in_headers(live: Live) -> None:
    room_in_this_minute()
    first, second = chat(live, "A_KEY"), chat(live, "A_KEY")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert (first.headers["x-ratelimit-remaining-requests"], second.headers["x-ratelimit-remaining-requests"]) == (
        "1", "0")
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 100000
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    # Both limits count by the minute, so both reset together (OpenAI's header names).
    assert first.headers["x-ratelimit-reset-tokens"] == first.headers["x-ratelimit-reset-requests"]
    third = chat(live, "A_KEY")
    assert third.status_code == 429
    err = third.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "rate_limit_error"
    assert "key 'a'" in err["message"] and "2 requests per minute" in err["message"]
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert ENV["A_KEY"] not in third.text
    # The refusal carries the same limit headers as an answer (OpenAI's 429s do).
    assert third.headers["x-ratelimit-limit-requests"] == "2"
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-ratelimit-reset-requests"].endswith("s")


def test_the_openai_sdk_sees_a_rate_limit_error(live: Live) -> None:
    room_in_this_minute()
    client = openai.OpenAI(base_url=live.base_url, api_key=ENV["A_KEY"], max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "rate_limit_exceeded"


def test_a_team_limit_is_shared_by_its_keys(live: Live) -> None:
    room_in_this_minute()
    statuses = [chat(live, k).status_code for k in ("B1_KEY", "B2_KEY", "B1_KEY", "B2_KEY")]
    assert statuses == [200, 200, 200, 429]
    refused = chat(live, "B1_KEY").json()["error"]
    assert "team 'blue'" in refused["message"]


def test_a_spent_budget_is_refused_with_402_saying_budget_spend_and_reset(live: Live) -> None:
    ok = chat(live, "POOR_KEY")
    assert ok.status_code == 200
    assert float(ok.headers["x-polyroute-budget-remaining-usd"]) < 0.01
    # Settlement counted the true cost: the next one is refused whatever it would cost.
    refused = chat(live, "POOR_KEY")
    assert refused.status_code == 402
    err = refused.json()["error"]
    assert err["code"] == "budget_exceeded"
    assert "$0.01" in err["message"] and "per day" in err["message"] and "resets at" in err["message"]
    assert "spent or held by requests in flight" in err["message"] and "a lower max_tokens" in err["message"]
    spent = float(ok.headers["x-polyroute-cost-usd"])
    assert usd(spent) in err["message"]
    assert float(refused.headers["x-polyroute-budget-remaining-usd"]) == 0.0


def test_a_prompt_that_alone_costs_more_than_the_budget_left_is_never_sent(live: Live) -> None:
    """At $1000 per million input tokens, 20,000 words cost about $20 before any answer: far past $0.01."""
    seen: list[int] = []
    live.gateway.observers.add(type("Count", (), {"finished": lambda self, c, r, o: seen.append(o.status)})())
    refused = chat(live, "POOR_KEY", "hi " * 20000)
    assert refused.status_code == 402
    err = refused.json()["error"]
    assert err["code"] == "budget_exceeded"
    assert "prompt alone costs about $" in err["message"] and "key 'poor'" in err["message"]
    assert "$0.01 left" in err["message"]
    assert 0 < float(refused.headers["x-polyroute-budget-remaining-usd"]) <= 0.01  # what is left, as any answer says
    # Nothing was spent, nor kept reserved: a small request still fits, with the whole budget left.
    ok = chat(live, "POOR_KEY")
    assert ok.status_code == 200
    left = float(ok.headers["x-polyroute-budget-remaining-usd"])
    assert left == pytest.approx(0.01 - float(ok.headers["x-polyroute-cost-usd"]), abs=1e-6)
    wait_until(lambda: len(seen) >= 2, what="both answers to be recorded")
    assert seen == [402, 200]


def test_the_openai_sdk_does_not_retry_a_spent_budget(live: Live) -> None:
    seen: list[int] = []
    live.gateway.observers.add(type("Count", (), {"finished": lambda self, c, r, o: seen.append(o.status)})())
    assert chat(live, "POOR_KEY").status_code == 200
    client = openai.OpenAI(base_url=live.base_url, api_key=ENV["POOR_KEY"], max_retries=3)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 402
    wait_until(lambda: len(seen) >= 2, what="both answers to be recorded")
    assert seen == [200, 402]  # one try: the SDK retries 408, 409, 429 and 5xx only


def test_a_key_without_limits_gets_no_limit_headers(live: Live) -> None:
    resp = chat(live, "FREE_KEY")
    assert resp.status_code == 200 and "x-ratelimit-limit-requests" not in resp.headers


def test_streams_are_admitted_and_settled_too(live: Live) -> None:
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    h = {"authorization": f"Bearer {ENV['A_KEY']}"}
    with httpx.stream("POST", f"{live.base_url}/chat/completions", json=body, headers=h, timeout=10) as r:
        r.read()
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(live, "A_KEY").status_code == 200
    with httpx.stream("POST", f"{live.base_url}/chat/completions", json=body, headers=h, timeout=10) as r:
        r.read()
        assert r.status_code == 429


def test_the_access_log_names_key_and_team_never_the_secret(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.access")
    assert chat(live, "B1_KEY").status_code == 200
    wait_until(lambda: "key=b1" in caplog.text, what="the access line")
    assert "key=b1 team=blue" in caplog.text and "status=200" in caplog.text
    assert all(secret not in caplog.text for secret in ENV.values())


def test_a_whole_answer_says_what_is_left_after_its_true_cost_a_stream_after_its_worst_case(live: Live) -> None:
    """max_tokens 2000 reserves about $4 at this price; the answer costs cents, and that is what a whole answer's
    headers count. A stream's headers leave before its cost is known, and carry no cost that would say 0."""
    auth = {"authorization": f"Bearer {ENV['RICH_KEY']}"}
    body = {"model": "echo", "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]}
    whole = httpx.post(f"{live.base_url}/chat/completions", json=body, headers=auth, timeout=10)
    cost, usage = float(whole.headers["x-polyroute-cost-usd"]), whole.json()["usage"]
    assert 0 < cost < 1
    assert float(whole.headers["x-polyroute-budget-remaining-usd"]) == pytest.approx(100.0 - cost, abs=1e-6)
    assert int(whole.headers["x-ratelimit-remaining-tokens"]) == 1_000_000 - usage["total_tokens"]
    with httpx.stream("POST", f"{live.base_url}/chat/completions", headers=auth, timeout=10,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        assert streamed.status_code == 200 and "x-polyroute-cost-usd" not in streamed.headers
        worst_left = float(streamed.headers["x-polyroute-budget-remaining-usd"])
        text = streamed.read().decode()
    assert worst_left < 100.0 - cost - 3.0  # the worst case of 2000 tokens at $2000 per million was held
    assert '"cost_usd":' in text


def test_usage_without_a_ledger_says_why_it_shows_none(live: Live) -> None:
    doc = httpx.get(f"{live.base_url}/usage", headers={"authorization": f"Bearer {ENV['RICH_KEY']}"}, timeout=10).json()
    assert doc["usage"] is None and "keeps no usage ledger" in doc["note"]
    assert doc["budget"] and doc["key"] == "rich"


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_answer_carries_the_keys_limits_too(live: Live, stream: bool) -> None:
    """After what its attempts cost, here nothing: the worst case held while it ran has been given back."""
    body = {"model": "broken", "stream": stream, "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV['RICH_KEY']}"})
    assert resp.status_code >= 500 and resp.json()["error"]["code"]
    assert resp.headers["x-ratelimit-limit-tokens"] == "1000000"
    assert resp.headers["x-ratelimit-remaining-tokens"] == "1000000"
    assert float(resp.headers["x-polyroute-budget-remaining-usd"]) == pytest.approx(100.0)
