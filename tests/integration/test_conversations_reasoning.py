"""A conversation keeps a turn's reasoning items whole (Claude's signed thinking included, shown only when
``include`` asks for it), so a tool loop that goes on through ``conversation`` gives Claude its thinking back."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.integration.test_responses_reasoning import ASK, SIGNED, WEATHER
from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ENV = {"TEST_KEY": "sk-test"}


def config(claude: FakeUpstream) -> dict[str, Any]:
    return {"backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}},
            "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"}}}


def test_a_tool_loop_through_a_conversation_gives_claude_its_signed_thinking_back(claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        conv = client.conversations.create()
        turn = client.responses.create(model="sonnet", input=[ASK], tools=WEATHER,  # type: ignore[list-item]
                                       conversation=conv.id)
        assert turn.output[0].type == "reasoning" and turn.output[0].encrypted_content is None
        call = next(i for i in turn.output if i.type == "function_call")
        client.responses.create(model="sonnet", tools=WEATHER, conversation=conv.id, input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
        shown = httpx.get(f"{g.base_url}/conversations/{conv.id}/items", params={"order": "asc"}).json()
        sealed = httpx.get(f"{g.base_url}/conversations/{conv.id}/items/{turn.output[0].id}",
                           params={"include[]": "reasoning.encrypted_content"}).json()
    assert claude.received[1].json()["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}
    assert shown["data"][1]["type"] == "reasoning" and "encrypted_content" not in shown["data"][1]
    assert sealed["encrypted_content"].startswith("pr1.")
