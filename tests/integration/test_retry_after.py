"""A 429's wait through a real gateway: ``Retry-After`` and ``retry-after-ms``, as the SDKs read them.

The Vercel AI SDK (``getRetryDelayInMs``) and openai-node wait as told only below 60 000 ms, reading
``retry-after-ms`` first; openai-python reads it first too and waits as told up to 60 s. A refusal in the first
second of a rate-limit minute said ``Retry-After: 60`` alone, which the first two ignore for a backoff of a
few seconds that runs into the same refusal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}
RAW = {
    "backends": {"f": {"type": "fake"}, "g": {"type": "fake"}},
    "models": {"echo": {"backend": "f"}, "limited": {"backend": "g", "upstream": "error-429"}},
    "routes": {"main": {"models": ["echo"]}, "busy": {"models": ["limited"]}},
    "keys": {"a": {"secret": "env:A_KEY", "rpm": 1}, "b": {"secret": "env:B_KEY"}},
}


@pytest.fixture
def live() -> Iterator[Live]:
    with live_gateway(RAW, env=ENV) as g:
        yield g


def chat(live: Live, model: str = "main", key: str = "A_KEY") -> httpx.Response:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV[key]}"})


def _sdk_wait(headers: httpx.Headers) -> float:
    """How long openai-python waits before its retry, given these headers (its own reading of them)."""
    client = openai.OpenAI(base_url="http://127.0.0.1:1/v1", api_key="sk-unused")
    return client._calculate_retry_timeout(2, openai._models.FinalRequestOptions(method="post", url="/x"), headers)


def test_a_key_over_its_rpm_is_told_the_wait_in_ms_too(live: Live) -> None:
    room_in_this_minute(2)
    assert chat(live).status_code == 200
    refused = chat(live)
    until_minute = 60 - time.time() % 60  # the rpm window ends with the minute
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    ms = float(refused.headers["retry-after-ms"])
    assert int(refused.headers["retry-after"]) == math.ceil(ms / 1000)
    # Never earlier than the window's end (a retry then would be refused again), and at most a second later.
    assert until_minute * 1000 - 100 <= ms <= until_minute * 1000 + 1000
    assert _sdk_wait(refused.headers) == pytest.approx(ms / 1000)  # openai-python waits exactly that


def test_an_upstream_rate_limit_passed_on_tells_what_is_left_of_its_wait(live: Live) -> None:
    first = chat(live, "busy", "B_KEY")  # the fake upstream says Retry-After: 1
    assert first.status_code == 429 and first.json()["error"]["code"] == "all_backends_failed"
    assert first.headers["retry-after"] == "1" and 0 < float(first.headers["retry-after-ms"]) <= 1000
    time.sleep(0.3)
    # Its breaker keeps the backend out for that second: the next request is told what is left of it.
    second = chat(live, "busy", "B_KEY")
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert 0 < float(second.headers["retry-after-ms"]) <= 750
    assert _sdk_wait(second.headers) == pytest.approx(float(second.headers["retry-after-ms"]) / 1000)
