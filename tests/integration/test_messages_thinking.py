"""A Messages request's thinking through a live gateway, sent by the ``anthropic`` SDK: Claude gets the client's
budget (and its ``metadata.user_id``) as written when the route leads only to Claude; a model of OpenAI's wire gets
the ``reasoning_effort`` of the budget's bucket."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

HI: Any = [{"role": "user", "content": "think about it"}]


def config(claude: FakeUpstream, other: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": other.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"},
                   "opus": {"backend": "claude", "upstream": "claude-opus-4-7"},
                   "haiku35": {"backend": "claude", "upstream": "claude-3-5-haiku-20241022"},
                   "other": {"backend": "other", "upstream": "other-model"}},
        "routes": {"claudes": {"models": ["sonnet", "opus"]}, "mixed": {"models": ["sonnet", "other"]}},
    }


def test_a_route_of_claudes_gets_the_budget_and_user_id_as_the_client_wrote_them(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        message = client.messages.create(model="claudes", max_tokens=20000, messages=HI,
                                         thinking={"type": "enabled", "budget_tokens": 12345},
                                         metadata={"user_id": "user-7"})
    assert message.content[0].type == "text"
    sent = claude.received[0].json()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 12345} and sent["max_tokens"] == 20000
    assert sent["metadata"] == {"user_id": "user-7"} and "output_config" not in sent


def test_a_claude_that_does_not_think_answers_without_it(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        raw = client.messages.with_raw_response.create(model="haiku35", max_tokens=2000, messages=HI,
                                                       thinking={"type": "enabled", "budget_tokens": 1024})
    assert raw.parse().content[0].type == "text"
    assert raw.headers["x-polyroute-dropped-params"] == "reasoning_effort"
    assert "thinking" not in claude.received[0].json()


def test_adaptive_thinking_at_an_effort_reaches_a_claude_that_takes_it(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        client.messages.create(model="opus", max_tokens=2000, messages=HI, thinking={"type": "adaptive"},
                               extra_body={"output_config": {"effort": "medium"}})
    sent = claude.received[0].json()
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "medium"}


def test_a_model_of_openais_wire_gets_the_effort_of_the_budgets_bucket(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    buckets = [(1, "low"), (1024, "low"), (4095, "low"), (4096, "medium"), (10000, "medium"), (16383, "medium"),
               (16384, "high"), (31999, "high"), (128000, "high")]
    for _ in buckets:
        fallback.json(load("openai", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0, timeout=30)
        for budget, _ in buckets:
            client.messages.create(model="other", max_tokens=200000, messages=HI, metadata={"user_id": "user-7"},
                                   thinking={"type": "enabled", "budget_tokens": budget})
    sent = [r.json() for r in fallback.received]
    assert [s["reasoning_effort"] for s in sent] == [effort for _, effort in buckets]
    assert all("thinking" not in s and "metadata" not in s and s["user"] == "user-7" for s in sent)


def test_claude_in_a_mixed_route_gets_the_budget_of_the_effort(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    # The other model takes no budget, so the request carries the effort; Claude gets that effort's budget, which
    # for the budgets Claude Code asks is the client's own.
    claude.json(load("anthropic", "completion"))
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        for budget in (10000, 12345):
            client.messages.create(model="mixed", max_tokens=16000, messages=HI,
                                   thinking={"type": "enabled", "budget_tokens": budget})
    assert [r.json()["thinking"] for r in claude.received] == [{"type": "enabled", "budget_tokens": 10000}] * 2
    assert fallback.received == []


@pytest.mark.parametrize("effort", [{}, [], 3, "extreme"])
def test_an_effort_that_is_none_is_a_400(claude: FakeUpstream, fallback: FakeUpstream, effort: Any) -> None:
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        r = httpx.post(f"{g.root}/v1/messages", timeout=10, json={
            "model": "other", "max_tokens": 8, "messages": HI, "output_config": {"effort": effort}})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "output_config.effort" in r.json()["error"]["message"] and fallback.received == []
