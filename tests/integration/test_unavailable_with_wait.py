"""A 503 that says when to come back keeps that model out until then, through a real gateway.

llama-server answers 503 "Loading model" while it loads (tests/fixtures/llamacpp/errors/503_loading_model.json);
a provider shedding load may say ``Retry-After`` with its 503. Asking it again at once would only fail again and
add its latency to every request: the next candidate answers meanwhile, and the model is back once the wait is over.
"""

from __future__ import annotations

from typing import Any

import openai

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ENV = {"TEST_KEY": "sk-test-0123456789"}


def config(first: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"local": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"},
                     "fb": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"m": {"backend": "local", "upstream": "qwen"}, "f": {"backend": "fb", "upstream": "fb"}},
        "routes": {"r": {"models": ["m", "f"]}},
    }


def test_a_model_still_loading_is_left_out_for_the_wait_it_gave(first: FakeUpstream, fallback: FakeUpstream) -> None:
    loading = load("llamacpp", "errors/503_loading_model")
    first.json(loading["body"], 503, {"retry-after": "600"})
    for _ in range(2):
        fallback.json(load("openai", "completion"))
    with live_gateway(config(first, fallback), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raws = [client.chat.completions.with_raw_response.create(
            model="r", messages=[{"role": "user", "content": "hi"}]) for _ in range(2)]
        health = client.get("/health/backends", cast_to=object)
    assert [r.headers["x-polyroute-model"] for r in raws] == ["f", "f"]
    assert raws[0].headers["x-polyroute-attempt-log"].startswith("local/m server_error")
    assert raws[1].headers["x-polyroute-attempt-log"].startswith("fb/f ok ")
    assert raws[1].headers["x-polyroute-attempts"] == "1"  # the model loading was passed over, not asked
    assert len(first.received) == 1  # not asked again while it said it was loading
    assert "Loading model" in str(health)
