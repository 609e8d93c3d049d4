"""Text completions from servers that serve OpenAI's legacy endpoint, as they document it: DeepSeek's fill in the
middle at its beta base URL, and vLLM's stream."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load

FIB_PREFIX, FIB_SUFFIX = "def fib(a):", "    return fib(a-1) + fib(a-2)"  # DeepSeek's FIM guide


@pytest.fixture
def live(first: FakeUpstream) -> Iterator[Live]:
    raw = {
        "backends": {"deepseek": {"type": "openai", "base_url": f"{first.url}/beta", "api_key": "env:DEEPSEEK_KEY",
                                  "provider": "deepseek"},
                     "vllm": {"type": "openai", "base_url": f"{first.url}/v1"}},
        "models": {"coder": {"backend": "deepseek", "upstream": "deepseek-flash", "input_per_mtok": 0.3,
                             "output_per_mtok": 1.2},
                   "qwen-coder": {"backend": "vllm", "upstream": "Qwen/Qwen2.5-Coder-1.5B"}},
    }
    with live_gateway(raw, env={"DEEPSEEK_KEY": "sk-deepseek"}) as g:
        yield g


def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def test_deepseeks_fill_in_the_middle_at_its_beta_base_url(live: Live, first: FakeUpstream) -> None:
    first.json(load("deepseek", "fim_completion"))
    raw = client(live).completions.with_raw_response.create(model="coder", prompt=FIB_PREFIX, suffix=FIB_SUFFIX,
                                                            max_tokens=128)
    resp = raw.parse()
    assert resp.choices[0].text == load("deepseek", "fim_completion")["choices"][0]["text"] and resp.model == "coder"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (20, 16)
    sent = first.received[0]
    assert sent.path == "/beta/completions" and sent.headers["authorization"] == "Bearer sk-deepseek"
    assert sent.json() == {"model": "deepseek-flash", "prompt": FIB_PREFIX, "suffix": FIB_SUFFIX, "max_tokens": 128,
                           "stream": False}
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx((20 * 0.3 + 16 * 1.2) / 1e6)


def test_vllms_stream_with_its_stop_reason_and_usage(live: Live, first: FakeUpstream) -> None:
    first.stream(load("vllm", "text_completion_stream"))
    chunks = list(client(live).completions.create(model="qwen-coder", prompt="The capital of France is", stop=["\n"],
                                                  stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " Paris."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8
    assert first.received[0].path == "/v1/completions"
