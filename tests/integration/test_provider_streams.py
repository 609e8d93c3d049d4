"""Providers' own stream shapes, end to end: a real gateway, the openai SDK, fake upstreams on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import OPENAI, FakeUpstream, load


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(OPENAI) as up:
        yield up


def config(url: str, provider: str) -> dict[str, object]:
    return {
        "backends": {provider: {"type": "openai", "base_url": url + "/v1", "api_key": "env:TEST_KEY",
                                "provider": provider}},
        "models": {"m": {"backend": provider, "upstream": "test-model", "input_per_mtok": 1.0,
                         "output_per_mtok": 2.0}},
    }


def test_moonshot_usage_in_the_choice_reaches_the_client_and_the_bill(upstream: FakeUpstream) -> None:
    upstream.stream(load("moonshot", "stream"))  # usage only inside choices[0] of the last chunk
    with live_gateway(config(upstream.url, "moonshot"), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True,
            stream_options={"include_usage": True},
        ))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (12, 9, 21)
    extra = last.usage.model_extra or {}
    assert "estimated" not in extra  # the bill used the upstream's own count
    assert extra["cost_usd"] == pytest.approx((12 * 1.0 + 9 * 2.0) / 1e6)


def test_openrouter_reasoning_reaches_the_client_as_reasoning_content(upstream: FakeUpstream) -> None:
    upstream.stream(load("openrouter", "reasoning_stream"))
    with live_gateway(config(upstream.url, "openrouter"), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True,
        ))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == "The user greets me. A short greeting back fits."
    assert "".join(d.content or "" for d in deltas) == "Hello! How can I help you today?"
