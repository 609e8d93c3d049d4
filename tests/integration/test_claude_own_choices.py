"""What the gateway chooses to send Claude, refused by the endpoint, does not fail the request.

Claude Opus 4.8 and later take ``role: "system"`` in ``messages`` on the Claude API and Bedrock, so the gateway
sends a mid-conversation system message there (it keeps the prompt cache). Claude on Vertex AI, older relays and
a placement the API reads otherwise answer 400. The same model is asked again with every system message at the
top, later requests go to it that way at once, and nothing else changes for the client: the placement is the
gateway's own choice, so no ``x-polyroute-dropped-params``. The same holds for the binding the gateway asks for when
thinking goes back to a Claude that checks its prefix, whose beta Claude on Vertex AI lacks. Fixtures:
``tests/fixtures/anthropic/errors/400_unexpected_role_system.json``, ``400_system_must_precede_assistant.json`` and
``400_unexpected_beta_binding.json``.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.test_cache_marks import ENV, refuse
from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

LATE: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "Another."},
    {"role": "system", "content": "Answer in French from now on."},
]


def config(claude: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"vertex": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
        "models": {"c": {"backend": "vertex", "upstream": "claude-opus-4-8"}},
    }


def roles(sent: dict[str, Any]) -> list[str]:
    return [m["role"] for m in sent["messages"]]


@pytest.mark.parametrize("fixture", ["anthropic/400_unexpected_role_system",
                                     "anthropic/400_system_must_precede_assistant"])
def test_a_refused_mid_conversation_system_message_goes_to_the_top(claude: FakeUpstream, fixture: str) -> None:
    refuse(claude, fixture)
    for _ in range(2):
        claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="c", messages=LATE)
        again = client.chat.completions.with_raw_response.create(model="c", messages=LATE)
    assert raw.parse().choices[0].message.content and again.parse().choices[0].message.content
    assert raw.headers["x-polyroute-attempts"] == "2"
    assert "x-polyroute-dropped-params" not in raw.headers  # the gateway's placement, not the client's parameter
    sent = [r.json() for r in claude.received]
    assert roles(sent[0]) == ["user", "assistant", "user", "system"] and sent[0]["system"] == "Be brief."
    for body in sent[1:]:  # asked again at once, then sent that way from the start
        assert roles(body) == ["user", "assistant", "user"]
        assert body["system"] == "Be brief.\n\nAnswer in French from now on."
    assert again.headers["x-polyroute-attempts"] == "1" and len(sent) == 3


def test_claude_codes_system_reminder_through_the_messages_api_is_answered(claude: FakeUpstream) -> None:
    """What an Anthropic client sends (a system message after the user's turn) to a Claude behind an endpoint
    without the feature: answered, not a 400 on every turn."""
    refuse(claude, "anthropic/400_unexpected_role_system")
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude), env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        message = client.messages.create(
            model="c", max_tokens=64, system="You are a coding agent.",
            messages=[{"role": "user", "content": "list the files"},
                      {"role": "system", "content": "The user prefers short answers."}])  # type: ignore[typeddict-item]
    assert message.content[0].type == "text" and message.content[0].text
    sent = [r.json() for r in claude.received]
    assert roles(sent[0]) == ["user", "system"]
    assert roles(sent[1]) == ["user"] and "short answers" in str(sent[1]["system"])


WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def test_thinking_goes_back_without_the_binding_an_endpoint_lacks(claude: FakeUpstream) -> None:
    """A tool loop on Opus 5.5 behind an endpoint without the binding's beta: the turn with thinking sent back is
    asked again without ``block_binding`` and its header, and answered; the next turn goes without them at once."""
    claude.json(load("anthropic", "thinking_tool_use"))
    refuse(claude, "anthropic/400_unexpected_beta_binding")
    for _ in range(2):
        claude.json(load("anthropic", "completion"))
    cfg = {"backends": {"vertex": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
           "models": {"c": {"backend": "vertex", "upstream": "claude-opus-5-5"}}}
    ask = {"role": "user", "content": "Weather in Paris?"}
    with live_gateway(cfg, env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="c", messages=[ask], tools=[WEATHER])
        turn = first.choices[0].message.model_dump(exclude_none=True)
        history = [ask, turn, {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "18C"}]
        raw = client.chat.completions.with_raw_response.create(model="c", messages=history, tools=[WEATHER])
        again = client.chat.completions.with_raw_response.create(model="c", messages=history, tools=[WEATHER])
    assert raw.parse().choices[0].message.content and again.parse().choices[0].message.content
    assert "x-polyroute-dropped-params" not in raw.headers and raw.headers["x-polyroute-attempts"] == "2"
    sent = [(r.json(), r.headers) for r in claude.received]
    assert sent[1][0]["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}
    assert "thinking-binding-controls" in sent[1][1]["anthropic-beta"]
    for body, headers in sent[2:]:
        assert "block_binding" not in str(body.get("thinking")) and "anthropic-beta" not in headers
        assert body["messages"][1]["content"][0]["type"] == "thinking"  # the thinking itself still goes back
    assert again.headers["x-polyroute-attempts"] == "1" and len(sent) == 4
