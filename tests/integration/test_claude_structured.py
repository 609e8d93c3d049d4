"""OpenAI's structured outputs on Claude, end to end: ``response_format`` reaches Claude as ``output_config.format``.

Before, a Claude model was passed over for any request with a ``response_format``, so a route of Claude models
answered every ``client.chat.completions.parse(...)`` with a 400. Now a model with structured outputs (4.5 and
later) is sent the client's schema narrowed to Claude's subset (polyroute.adapters.claude_schema); an older model,
JSON mode without a schema, or a model that says it cannot, leaves the request to the next candidate.
"""

from __future__ import annotations

import copy
from typing import Any

import openai
import pydantic

from tests.integration.test_cache_marks import ENV, refuse
from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ASK = [{"role": "user", "content": "Extract: John Smith (john@example.com) wants the Enterprise plan."}]


class Contact(pydantic.BaseModel):
    name: str
    email: str
    plan: str
    seats: int = pydantic.Field(ge=1, le=500)


def claude_json(text: str) -> dict[str, Any]:
    doc = copy.deepcopy(load("anthropic", "completion"))
    doc["content"] = [{"type": "text", "text": text}]
    return doc


def config(claude: FakeUpstream, fallback: FakeUpstream, model: str) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"c": {"backend": "claude", "upstream": model},
                   "o": {"backend": "other", "upstream": "gpt-4.1-mini"}},
        "routes": {"r": {"models": ["c", "o"]}},
    }


def test_parse_with_a_pydantic_model_is_answered_by_claude(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    answer = '{"name": "John Smith", "email": "john@example.com", "plan": "Enterprise", "seats": 12}'
    claude.json(claude_json(answer))
    with live_gateway(config(claude, fallback, "claude-sonnet-4-5-20250929"), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.parse(model="r", messages=ASK, response_format=Contact)
    parsed = raw.parse().choices[0].message.parsed
    assert parsed == Contact(name="John Smith", email="john@example.com", plan="Enterprise", seats=12)
    assert raw.headers["x-polyroute-model"] == "c" and fallback.received == []
    fmt = claude.received[0].json()["output_config"]["format"]
    schema = fmt["schema"]
    assert fmt["type"] == "json_schema" and schema["additionalProperties"] is False
    assert schema["required"] == ["name", "email", "plan", "seats"]
    seats = schema["properties"]["seats"]  # what Claude cannot enforce is read as a hint
    assert "minimum" not in seats and '"minimum":1' in seats["description"] and '"maximum":500' in seats["description"]


def test_a_stream_with_a_schema_and_an_effort_keeps_both(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.stream(load("anthropic", "stream"))
    with live_gateway(config(claude, fallback, "claude-opus-4-6"), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        chunks = list(client.chat.completions.create(
            model="r", messages=ASK, stream=True, reasoning_effort="low",
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}))
    assert chunks and fallback.received == []
    sent = claude.received[0].json()["output_config"]
    assert sent["format"]["schema"]["additionalProperties"] is False and sent["effort"] == "low"


def test_what_claude_cannot_do_goes_to_the_next_candidate(claude: FakeUpstream, fallback: FakeUpstream) -> None:
    """JSON mode without a schema, and a model from before structured outputs: the fallback answers, Claude is
    never sent the request."""
    for _ in range(2):
        fallback.json(load("openai", "completion"))
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with live_gateway(config(claude, fallback, "claude-opus-4-5"), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        mode = client.chat.completions.with_raw_response.create(
            model="r", messages=ASK, response_format={"type": "json_object"})
    with live_gateway(config(claude, fallback, "claude-sonnet-4-20250514"), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        old = client.chat.completions.with_raw_response.create(model="r", messages=ASK,
                                                                response_format=schema)  # type: ignore[arg-type]
    assert mode.headers["x-polyroute-model"] == "o" and old.headers["x-polyroute-model"] == "o"
    assert claude.received == [] and len(fallback.received) == 2


def test_a_claude_that_refuses_the_format_is_passed_over_from_then_on(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    refuse(claude, "anthropic/400_output_config_format_extra_inputs")
    for _ in range(2):
        fallback.json(load("openai", "completion"))
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with live_gateway(config(claude, fallback, "claude-haiku-4-5"), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.with_raw_response.create(model="r", messages=ASK,
                                                                  response_format=schema)  # type: ignore[arg-type]
        then = client.chat.completions.with_raw_response.create(model="r", messages=ASK,
                                                                 response_format=schema)  # type: ignore[arg-type]
    assert first.headers["x-polyroute-model"] == "o" and first.headers["x-polyroute-attempts"] == "2"
    assert then.headers["x-polyroute-model"] == "o" and then.headers["x-polyroute-attempts"] == "1"
    assert len(claude.received) == 1
