"""Claude's classifier refusals through a real gateway, as OpenAI's Python SDK reads them.

A request Claude's classifiers decline before any output reaches the client as a finished answer with
``finish_reason: "content_filter"`` and the reason in ``message.refusal``, streamed or not, and costs nothing;
the route's other candidates are not asked (a refusal is an answer, not an outage).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conformance.test_claude_refusals import before_output_stream
from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream


def config(claude: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"opus": {"backend": "claude", "upstream": "claude-opus-5-5"},
                   "other": {"backend": "other", "upstream": "other-model"}},
        "routes": {"agent": {"models": ["opus", "other"]}},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_the_sdk_reads_a_classifier_refusal_and_it_costs_nothing(claude: FakeUpstream, fallback: FakeUpstream,
                                                                 stream: bool) -> None:
    claude.stream(before_output_stream())
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        ask: dict[str, Any] = {"model": "agent", "messages": [{"role": "user", "content": "Scan this host."}]}
        if stream:
            with client.chat.completions.stream(**ask, stream_options={"include_usage": True}) as events:
                for _ in events:
                    pass
                # The SDK's stream helper raises on a content filter, with the completion it assembled.
                with pytest.raises(openai.ContentFilterFinishReasonError) as caught:
                    events.get_final_completion()
            done = caught.value.completion
            cost = done.usage.model_extra["cost_usd"] if done.usage and done.usage.model_extra else None
        else:
            raw = client.chat.completions.with_raw_response.create(**ask)
            done, cost = raw.parse(), float(raw.headers["x-polyroute-cost-usd"])
    choice = done.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.refusal == "This request was declined by a safety classifier. (category: cyber)"
    assert not choice.message.content
    assert cost == 0.0
    assert done.model == "opus" and not fallback.received  # an answer: the other candidate is not asked


@pytest.mark.parametrize("stream", [False, True])
def test_on_refusal_next_asks_the_next_candidate_and_charges_no_breaker(claude: FakeUpstream, fallback: FakeUpstream,
                                                                       stream: bool) -> None:
    """What Anthropic's own fallback does, by the route's choice: the refused attempt is in the attempt log as
    ``declined``, costs nothing, and the model stays in service."""
    from tests.support.upstreams import load

    claude.stream(before_output_stream())
    fallback.stream(load("openai", "stream"))
    raw = config(claude, fallback)
    raw["routes"]["agent"]["on_refusal"] = "next"
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        ask: dict[str, Any] = {"model": "agent", "messages": [{"role": "user", "content": "Scan this host."}]}
        if stream:
            raw_resp = client.chat.completions.with_raw_response.create(**ask, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in raw_resp.parse() if c.choices)
        else:
            raw_resp = client.chat.completions.with_raw_response.create(**ask)
            text = raw_resp.parse().choices[0].message.content or ""
        health = client.get("/health/backends", cast_to=object)
    assert text == "Hello! How can I help you today?"
    assert raw_resp.headers["x-polyroute-model"] == "other"
    assert raw_resp.headers["x-polyroute-attempt-log"].startswith("claude/opus declined ")
    assert "claude" not in str(health) or "open" not in str(health)


@pytest.mark.parametrize("stream", [False, True])
def test_the_responses_api_gives_the_refusal_as_a_refusal_part(claude: FakeUpstream, fallback: FakeUpstream,
                                                               stream: bool) -> None:
    """Through ``/v1/responses`` the reason is the message's ``refusal`` content part, and the response is
    ``incomplete`` for ``content_filter``, as OpenAI's SDK reads them."""
    claude.stream(before_output_stream())
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        if stream:
            with client.responses.stream(model="agent", input="Scan this host.") as events:
                seen = list(events)
            kinds = [e.type for e in seen]
            assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
            # The SDK's get_final_response() wants response.completed; an incomplete one ends response.incomplete.
            assert kinds[-1] == "response.incomplete"
            done = seen[-1].response  # type: ignore[union-attr]
        else:
            done = client.responses.create(model="agent", input="Scan this host.")
    assert done.status == "incomplete" and done.incomplete_details is not None
    assert done.incomplete_details.reason == "content_filter"
    [message] = [item for item in done.output if item.type == "message"]
    refusals = [part.refusal for part in message.content if part.type == "refusal"]
    assert refusals == ["This request was declined by a safety classifier. (category: cyber)"]
