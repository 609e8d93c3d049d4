"""``stop_reason: "stop_sequence"`` through a live gateway, read by the ``anthropic`` SDK: said only when the upstream
names the sequence it stopped on (Claude's ``stop_sequence``, vLLM's ``stop_reason``), whole or streamed; an upstream
of OpenAI's wire that says only "stop" ended its turn, whatever stop sequences the request had."""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

HI: Any = [{"role": "user", "content": "count to ten"}]
STOPS = ["###", "END"]


def config(claude: FakeUpstream, other: FakeUpstream) -> dict[str, Any]:
    return {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"},
                     "other": {"type": "openai", "base_url": other.url + "/v1", "api_key": "env:TEST_KEY"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"},
                   "other": {"backend": "other", "upstream": "other-model"}},
    }


def claude_stopped(sequence: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Claude's whole answer and its stream, ended on ``sequence`` (None: its turn ended)."""
    whole = {**load("anthropic", "completion"), "stop_reason": "stop_sequence" if sequence else "end_turn",
             "stop_sequence": sequence}
    events = copy.deepcopy(load("anthropic", "stream"))
    for e in events:
        if e["data"]["type"] == "message_delta":
            e["data"]["delta"] = {"stop_reason": whole["stop_reason"], "stop_sequence": sequence}
    return whole, events


def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "other-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **more}]}


def openai_stream(**ending: Any) -> list[dict[str, Any]]:
    return [chunk({"role": "assistant", "content": "1 2 3"}), chunk({}, "stop", **ending),
            {**chunk({}), "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}]


def ask(client: anthropic.Anthropic, model: str, streamed: bool) -> anthropic.types.Message:
    if streamed:
        with client.messages.stream(model=model, max_tokens=64, messages=HI, stop_sequences=STOPS) as s:
            return s.get_final_message()
    return client.messages.create(model=model, max_tokens=64, messages=HI, stop_sequences=STOPS)


@pytest.mark.parametrize("streamed", [False, True])
def test_claudes_stop_sequence_reaches_the_client(claude: FakeUpstream, fallback: FakeUpstream,
                                                   streamed: bool) -> None:
    for sequence in ("END", None):
        whole, events = claude_stopped(sequence)
        if streamed:
            claude.stream([{"event": e["event"], "data": e["data"]} for e in events])
        else:
            claude.json(whole)
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        stopped, ended = ask(client, "sonnet", streamed), ask(client, "sonnet", streamed)
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")
    assert (ended.stop_reason, ended.stop_sequence) == ("end_turn", None)
    assert claude.received[0].json()["stop_sequences"] == STOPS


@pytest.mark.parametrize("streamed", [False, True])
def test_an_upstream_that_names_the_sequence_is_believed_and_one_that_does_not_ended_its_turn(
        claude: FakeUpstream, fallback: FakeUpstream, streamed: bool) -> None:
    fallback.stream(openai_stream(stop_reason="###"))  # vLLM: the sequence it stopped on
    fallback.stream(openai_stream(stop_reason=None))  # vLLM at the end of the sequence (EOS)
    fallback.stream(openai_stream())  # OpenAI: "stop" for a stop sequence and a natural end alike
    fallback.stream(openai_stream(stop_reason="not-one-of-the-requests"))
    with live_gateway(config(claude, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        got = [ask(client, "other", streamed) for _ in range(4)]
    assert [(m.stop_reason, m.stop_sequence) for m in got] == [
        ("stop_sequence", "###"), ("end_turn", None), ("end_turn", None), ("end_turn", None)]
    assert all(r.json()["stop"] == STOPS for r in fallback.received)
