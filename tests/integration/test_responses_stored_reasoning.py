"""Stored reasoning: a response keeps its reasoning items whole (Claude's signed thinking included) even when
the client did not ask for ``encrypted_content``, so a tool loop that names the response, or its reasoning
item, gives Claude its thinking back as a stateless client with ``include`` does."""

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


def result_of(output: list[Any]) -> dict[str, Any]:
    call = next(i for i in output if i.type == "function_call")
    return {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}


def test_previous_response_id_gives_claude_its_signed_thinking_back(claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        turn = client.responses.create(model="sonnet", input=[ASK], tools=WEATHER)  # type: ignore[list-item]
        assert turn.output[0].type == "reasoning" and turn.output[0].encrypted_content is None
        client.responses.create(model="sonnet", input=[result_of(turn.output)], tools=WEATHER,
                                previous_response_id=turn.id)
        shown = httpx.get(f"{g.base_url}/responses/{turn.id}").json()
        sealed = httpx.get(f"{g.base_url}/responses/{turn.id}",
                           params={"include[]": "reasoning.encrypted_content"}).json()
    assert claude.received[1].json()["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}
    assert "encrypted_content" not in shown["output"][0]
    assert sealed["output"][0]["encrypted_content"].startswith("pr1.")


def test_item_references_give_it_back_too(claude: FakeUpstream) -> None:
    claude.json(SIGNED)
    claude.json(load("anthropic", "completion"))
    with live_gateway(config(claude), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        turn = client.responses.create(model="sonnet", input=[ASK], tools=WEATHER)  # type: ignore[list-item]
        named: list[Any] = [ASK, *({"type": "item_reference", "id": i.id} for i in turn.output),
                            result_of(turn.output)]
        client.responses.create(model="sonnet", input=named, tools=WEATHER)
    assert claude.received[1].json()["messages"][1] == {"role": "assistant", "content": SIGNED["content"]}


def test_a_streamed_turn_is_stored_with_its_signature(claude: FakeUpstream) -> None:
    claude.stream(load("anthropic", "thinking_stream"))
    with live_gateway(config(claude), env=ENV) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with client.responses.stream(model="sonnet", input="Hi") as s:
            final = s.get_final_response()
        assert final.output[0].type == "reasoning" and final.output[0].encrypted_content is None
        sealed = httpx.get(f"{g.base_url}/responses/{final.id}",
                           params={"include[]": "reasoning.encrypted_content"}).json()
    assert sealed["output"][0]["encrypted_content"].startswith("pr1.")
    assert sealed["output"][0]["content"][0]["text"] == "The user greets me. A short greeting back fits."
