"""Reasoning fields of the wrong type, from an OpenAI-compatible relay or from Claude, are a bad answer of that
upstream: the next candidate answers, never a 500 and never a client left holding a stream it cannot join.

These fields (``reasoning_content``, ``reasoning_details``, Claude's thinking and signature pieces) are passed to
clients that join them (OpenAI's SDK concatenates text and merges list entries by ``index``), so a number where
text belongs or a list entry that is not an object would break the client rather than the gateway.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_malformed_answers import ASK, chunk, config
from tests.support.live import live_gateway
from tests.support.upstreams import ANTHROPIC, FakeUpstream, load

BAD_OPENAI = {
    "reasoning-content-is-a-number": [chunk({"reasoning_content": 7})],
    "reasoning-details-not-a-list": [chunk({"reasoning_details": {"type": "reasoning.text", "text": "x"}})],
    "reasoning-details-entry-not-an-object": [chunk({"reasoning_details": ["x"]})],
    "reasoning-details-text-is-a-number": [chunk({"reasoning_details": [{"type": "reasoning.text", "text": 5,
                                                                          "index": 0}]})],
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_OPENAI))
def test_a_relay_s_reasoning_of_the_wrong_type_fails_over(first: FakeUpstream, fallback: FakeUpstream, case: str,
                                                          stream: bool) -> None:
    first.stream([*BAD_OPENAI[case], chunk({"content": "Alfa"}, "stop")])
    fallback.stream(load("openai", "stream"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", timeout=30,
                          json={"model": "r", "messages": ASK, "stream": stream})
        body = resp.text
    assert resp.status_code == 200, body
    assert resp.headers["x-polyroute-model"] == "f", case
    assert resp.headers["x-polyroute-attempt-log"].startswith("prov/m bad_response "), case


def claude_events(*blocks: tuple[dict[str, Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    start = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude",
             "usage": {"input_tokens": 5, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for i, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": i, "content_block": block})
        events += [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
    return [{"event": e["type"], "data": e} for e in events]


BAD_CLAUDE = {
    "thinking-is-a-number": claude_events(({"type": "thinking", "thinking": ""},
                                           [{"type": "thinking_delta", "thinking": 42}])),
    "signature-is-an-object": claude_events(({"type": "thinking", "thinking": ""},
                                             [{"type": "signature_delta", "signature": {"x": 1}}])),
    "redacted-data-is-a-list": claude_events(({"type": "redacted_thinking", "data": ["x"]}, [])),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_CLAUDE))
def test_claude_s_thinking_of_the_wrong_type_fails_over(fallback: FakeUpstream, case: str, stream: bool) -> None:
    """Before anything was sent on; after a first piece, a bad one cuts the stream, which is rescued as any cut."""
    fallback.stream(load("openai", "stream"))
    with FakeUpstream(ANTHROPIC) as claude:
        claude.stream(BAD_CLAUDE[case], terminate=False)
        raw = config(claude, fallback)
        raw["backends"]["prov"] = {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY"}
        with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions", timeout=30,
                              json={"model": "r", "messages": ASK, "stream": stream})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-polyroute-model"] == "f", case
    assert resp.headers["x-polyroute-attempt-log"].startswith("prov/m bad_response "), case
