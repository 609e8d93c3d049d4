"""Prompt-cache breakpoints a server refuses do not fail the request, end to end (polyroute.cache_marks).

Claude Code, the anthropic SDK and applications written for Claude mark cache breakpoints with ``cache_control``.
A server that takes no such mark (Azure OpenAI, a strict relay, Claude on a cloud that takes none on that block)
answers 400. The same model is asked again with every mark taken off, later requests go without them at once, and
the client is told in ``x-polyroute-dropped-params``. Fixtures: ``tests/fixtures/*/errors/*cache_control*``.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ENV = {"TEST_KEY": "sk-test-0123456789"}
MARK = {"type": "ephemeral", "ttl": "1h"}
# A schema property that happens to be called cache_control: the client's data, never taken off.
TOOL: Any = {"type": "function", "cache_control": MARK, "function": {
    "name": "set_cache", "parameters": {"type": "object", "properties": {"cache_control": {"type": "string"}}}}}
MESSAGES: Any = [
    {"role": "system", "content": [{"type": "text", "text": "You are terse.", "cache_control": MARK}]},
    {"role": "user", "content": "Spell the NATO alphabet", "cache_control": {"type": "ephemeral"}},
]


def refuse(up: FakeUpstream, fixture: str) -> None:
    provider, _, case = fixture.partition("/")
    doc = load(provider, f"errors/{case}")
    up.json(doc["body"], doc["status"])


def openai_config(first: FakeUpstream, fallback: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {
            "azure": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"},
            "fb": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"},
        },
        "models": {"m": {"backend": "azure", "upstream": "gpt-4o-mini"}, "f": {"backend": "fb", "upstream": "fb"}},
        "routes": {"r": {"models": ["m", "f"]}},
    }


def marks_in(sent: dict[str, Any]) -> list[str]:
    """Where a request body carries a cache_control as a mark: top level, a message, a part or block, a tool."""
    found = ["top"] if "cache_control" in sent else []
    for i, m in enumerate(sent.get("messages") or []):
        if "cache_control" in m:
            found.append(f"messages[{i}]")
        for j, part in enumerate(m["content"] if isinstance(m.get("content"), list) else []):
            if "cache_control" in part:
                found.append(f"messages[{i}].content[{j}]")
    for i, block in enumerate(sent["system"] if isinstance(sent.get("system"), list) else []):
        if "cache_control" in block:
            found.append(f"system[{i}]")
    found += [f"tools[{i}]" for i, t in enumerate(sent.get("tools") or []) if "cache_control" in t]
    return found


def test_a_server_refusing_cache_marks_is_asked_again_without_them_and_remembers(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    refuse(first, "openai/400_unrecognized_argument_cache_control")
    first.json(load("openai", "completion"))
    first.json(load("openai", "completion"))
    with live_gateway(openai_config(first, fallback), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raws = [client.chat.completions.with_raw_response.create(model="r", messages=MESSAGES, tools=[TOOL])
                for _ in range(2)]
    for raw in raws:
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-polyroute-model"] == "m"
        assert raw.headers["x-polyroute-dropped-params"] == "cache_control"
    assert raws[0].headers["x-polyroute-attempt-log"].split("; ")[0].startswith("azure/m param_refused ")
    assert raws[1].headers["x-polyroute-attempts"] == "1"  # learned: sent without them at once
    sent = [r.json() for r in first.received]
    assert len(sent) == 3 and fallback.received == []
    assert marks_in(sent[0]) == ["messages[0].content[0]", "messages[1]", "tools[0]"]
    assert marks_in(sent[1]) == [] and marks_in(sent[2]) == []
    # Everything else went as it came: the text, the roles, the schema's own property called cache_control.
    assert sent[1]["messages"] == [{"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
                                   {"role": "user", "content": "Spell the NATO alphabet"}]
    assert sent[1]["tools"][0]["function"] == TOOL["function"]


def test_a_request_without_marks_still_carries_what_the_server_refused_nothing_of(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    """A refusal of cache marks learned from one request says nothing about a request that has none."""
    refuse(first, "openai/400_unrecognized_argument_cache_control")
    first.json(load("openai", "completion"))
    first.json(load("openai", "completion"))
    with live_gateway(openai_config(first, fallback), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="r", messages=MESSAGES)
        plain = client.chat.completions.with_raw_response.create(
            model="r", messages=[{"role": "user", "content": "hi"}], temperature=0.5)
    assert "x-polyroute-dropped-params" not in plain.headers
    assert first.received[-1].json()["temperature"] == 0.5


def test_claude_code_through_the_messages_api_reaches_a_server_that_takes_no_marks(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    """What Claude Code sends (a system prompt and the last turn marked for an hour's cache) to a route of
    OpenAI-compatible models: answered, not a 400 on every turn."""
    refuse(first, "openai/400_unrecognized_argument_cache_control")
    first.json(load("openai", "completion"))
    with live_gateway(openai_config(first, fallback), env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        raw = client.messages.with_raw_response.create(
            model="r", max_tokens=256,
            system=[{"type": "text", "text": "You are a coding agent.", "cache_control": MARK}],  # type: ignore[typeddict-item]
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "list the files", "cache_control": MARK}]}])  # type: ignore[typeddict-item]
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text
    assert raw.headers["x-polyroute-dropped-params"] == "cache_control"
    sent = [r.json() for r in first.received]
    assert marks_in(sent[0]) and marks_in(sent[1]) == [] and fallback.received == []


def test_an_anthropic_wire_endpoint_refusing_a_blocks_mark_is_sent_none(claude: FakeUpstream) -> None:
    refuse(claude, "anthropic/400_cache_control_extra_inputs")
    claude.json(load("anthropic", "completion"))
    config = {
        "backends": {"vertex": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
        "models": {"c": {"backend": "vertex", "upstream": "claude-sonnet-4-5-20250929"}},
    }
    with live_gateway(config, env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="c", messages=MESSAGES, tools=[TOOL])
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-polyroute-dropped-params"] == "cache_control"
    sent = [r.json() for r in claude.received]
    assert marks_in(sent[0]) and marks_in(sent[1]) == []
    # The tool's input schema is the client's: its property called cache_control is still there.
    assert "cache_control" in sent[1]["tools"][0]["input_schema"]["properties"]
    assert json.dumps(sent[1]["system"]).count("You are terse.") == 1
