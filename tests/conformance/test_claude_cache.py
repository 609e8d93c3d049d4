"""Claude's prompt-cache breakpoints, written as clients of OpenAI-compatible gateways write them, reach Claude.

``cache_control`` on a content part (a system message's included), on a tool, or on a whole message (its last
block): a breakpoint lost means every request pays the full input price instead of a tenth for the cached prefix.
"""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.adapters import Adapter
from tests.conformance.helpers import WEATHER_TOOL, call
from tests.conformance.providers import ANTHROPIC_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


@pytest.fixture
def provider() -> Provider:
    return ANTHROPIC_PROVIDER


async def sent(upstream: FakeUpstream, adapter: Adapter, **fields: Any) -> dict[str, Any]:
    upstream.json(load("anthropic", "completion"))
    await adapter.complete(call(**fields))
    body: dict[str, Any] = upstream.received[-1].json()
    return body


async def test_every_breakpoint_a_client_marks_reaches_claude(upstream: FakeUpstream, adapter: Adapter) -> None:
    manual = "A long manual. " * 50
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You answer support tickets."},
                                       {"type": "text", "text": manual, "cache_control": HOUR}]},
        {"role": "user", "content": [{"type": "text", "text": "Ticket 1: the app crashes.",
                                      "cache_control": EPHEMERAL}]},
        {"role": "assistant", "content": "Which version?", "cache_control": EPHEMERAL},  # the message's last block
        {"role": "user", "content": "4.2"},
    ]
    body = await sent(upstream, adapter, messages=messages,
                      tools=[{**WEATHER_TOOL, "cache_control": EPHEMERAL}])
    assert body["system"] == [{"type": "text", "text": "You answer support tickets."},
                              {"type": "text", "text": manual, "cache_control": HOUR}]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "Ticket 1: the app crashes.",
                                               "cache_control": EPHEMERAL}]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Which version?", "cache_control": EPHEMERAL}]
    assert body["messages"][2]["content"] == [{"type": "text", "text": "4.2"}]
    assert body["tools"][0]["cache_control"] == EPHEMERAL and body["tools"][0]["name"] == "get_weather"


async def test_a_tool_result_and_a_system_message_marked_whole(upstream: FakeUpstream, adapter: Adapter) -> None:
    calls = [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
    messages = [
        {"role": "system", "content": "Be terse.", "cache_control": EPHEMERAL},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C", "cache_control": EPHEMERAL},
    ]
    body = await sent(upstream, adapter, messages=messages, tools=[WEATHER_TOOL])
    assert body["system"] == [{"type": "text", "text": "Be terse.", "cache_control": EPHEMERAL}]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C",
                                               "cache_control": EPHEMERAL}]


async def test_without_breakpoints_the_request_is_as_before(upstream: FakeUpstream, adapter: Adapter) -> None:
    body = await sent(upstream, adapter, messages=[{"role": "system", "content": "Be terse."},
                                                   {"role": "developer", "content": "English."},
                                                   {"role": "user", "content": "Hi"}])
    assert body["system"] == "Be terse.\n\nEnglish."
    assert "cache_control" not in str(body)
