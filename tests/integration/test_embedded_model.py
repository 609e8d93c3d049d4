"""One real generation with the bundled SmolLM2 model through the whole stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from polyroute.settings import effective_config
from tests.support.live import Live, live_gateway


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    # The embedded default with an empty environment: no keys, so only the local model.
    with live_gateway(effective_config(None, env={})) as g:
        yield g


def test_default_route_answers_with_the_bundled_model(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "Which city is the capital of France?"}],
        max_tokens=24, temperature=0, seed=1,
    )
    resp = raw.parse()
    text = resp.choices[0].message.content or ""
    assert "Paris" in text  # a real model answering, not an echo
    assert resp.model == "smollm2-135m"
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 24
    assert raw.headers["x-polyroute-backend"] == "local"
    assert float(raw.headers["x-polyroute-cost-usd"]) == 0.0


def test_stream_from_the_bundled_model(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0


def test_models_lists_the_local_model(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids == ["default", "smollm2-135m"]


def test_models_report_the_context_window_served_not_the_catalogs(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    local = client.models.retrieve("smollm2-135m")
    served = live.gateway.fleet.config.backends["local"]
    assert served.type == "llamacpp"
    # The catalog says 8192 for SmolLM2; the embedded default loads it with n_ctx 2048.
    assert local.model_extra is not None and local.model_extra["polyroute"]["context_window"] == served.n_ctx == 2048


def test_a_tools_request_on_the_default_route_is_answered_without_the_tools(live: Live) -> None:
    # SmolLM2 cannot use tools; tool_choice leaves the call optional, so it answers in text.
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    tools: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
        max_tokens=8, temperature=0, seed=1,
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-polyroute-dropped-params"] == "tools"
