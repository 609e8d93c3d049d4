"""A Messages client's ``anthropic-beta`` reaches Claude, and only Claude; what an endpoint refuses is left out.

Clients of Anthropic's API turn Claude's features on with betas (a million tokens of context, interleaved thinking).
The gateway sends them to a Claude upstream with the backend's own and the one it adds itself, never to an
OpenAI-compatible one (neither as a header nor as a field of the body), and leaves out Anthropic's sign-in betas.
An endpoint that lacks one (Claude on Vertex AI, a relay) answers 400 naming it: the same model is asked again
without exactly those, and later requests to it leave them out at once. Fixture:
``tests/fixtures/anthropic/errors/400_unexpected_beta_client.json``.
"""

from __future__ import annotations

from typing import Any

import anthropic

from tests.integration.test_cache_marks import ENV, refuse
from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream, load

ASK: Any = [{"role": "user", "content": "Hello"}]
# What Claude Code signed in with a Claude account sends, less what it adds per request.
CLAUDE_CODE = "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,context-1m-2025-08-07"


def config(claude: FakeUpstream, fallback: FakeUpstream | None = None, **backend: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "backends": {"claude": {"type": "anthropic", "base_url": claude.url, "api_key": "env:TEST_KEY", **backend}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"}},
    }
    if fallback is not None:
        cfg["backends"]["other"] = {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"}
        cfg["models"]["other"] = {"backend": "other", "upstream": "other-model"}
        cfg["routes"] = {"agent": {"models": ["sonnet", "other"]}}
    return cfg


def betas(headers: dict[str, str]) -> list[str]:
    return headers["anthropic-beta"].split(",") if "anthropic-beta" in headers else []


def test_a_clients_betas_reach_claude_and_never_an_openai_fallback(
        claude: FakeUpstream, fallback: FakeUpstream) -> None:
    claude.json(load("anthropic", "completion"))
    claude.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    fallback.json(load("openai", "completion"))
    with live_gateway(config(claude, fallback), env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        first = client.messages.create(model="agent", max_tokens=64, messages=ASK,
                                       extra_headers={"anthropic-beta": CLAUDE_CODE})
        raw = client.beta.messages.with_raw_response.create(
            model="agent", max_tokens=64, messages=ASK,
            betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
    assert first.content[0].type == "text" and raw.headers["x-polyroute-model"] == "other"
    assert raw.parse().content[0].type == "text"
    # Anthropic's sign-in betas name the client's credentials, not a feature: the gateway calls with its own key.
    for sent in claude.received:
        assert betas(sent.headers) == ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    (other,) = fallback.received
    assert "anthropic-beta" not in other.headers
    assert "beta" not in other.body.decode()  # nor any field of the body an OpenAI-compatible server would read


def test_a_beta_the_endpoint_refuses_is_left_out_of_this_request_and_the_next(claude: FakeUpstream) -> None:
    refuse(claude, "anthropic/400_unexpected_beta_client")
    claude.stream(load("anthropic", "stream"))
    claude.json(load("anthropic", "completion"))
    asked = {"anthropic-beta": "web-search-2025-03-05,interleaved-thinking-2025-05-14"}
    with live_gateway(config(claude), env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        with client.messages.stream(model="sonnet", max_tokens=64, messages=ASK, extra_headers=asked) as s:
            streamed = s.get_final_message()
            attempts = s.response.headers["x-polyroute-attempts"]
        again = client.messages.with_raw_response.create(model="sonnet", max_tokens=64, messages=ASK,
                                                         extra_headers=asked)
    assert streamed.content[0].type == "text" and streamed.content[0].text
    assert attempts == "2" and again.headers["x-polyroute-attempts"] == "1"
    assert again.parse().content[0].type == "text"
    sent = [betas(r.headers) for r in claude.received]
    assert sent == [["web-search-2025-03-05", "interleaved-thinking-2025-05-14"],
                    ["interleaved-thinking-2025-05-14"], ["interleaved-thinking-2025-05-14"]]


SIGNED = load("anthropic", "thinking_tool_use")
WEATHER: Any = {"name": "get_weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}


def test_the_gateways_binding_beta_and_the_backends_merge_with_the_clients(claude: FakeUpstream) -> None:
    """Thinking sent back to a Claude that checks its prefix asks for the binding with its beta: the header holds the
    backend's betas, then the client's, then that one, each once."""
    cfg = config(claude, headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
    cfg["models"]["sonnet"]["upstream"] = "claude-opus-5-5"
    claude.json(load("anthropic", "completion"))
    call = next(b for b in SIGNED["content"] if b["type"] == "tool_use")
    history = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": SIGNED["content"]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}]}]
    with live_gateway(cfg, env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        answer = client.messages.create(
            model="sonnet", max_tokens=1024, messages=history, tools=[WEATHER],
            extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14,token-efficient-tools-2025-02-19"})
    assert answer.content[0].type == "text"
    (sent,) = claude.received
    assert betas(sent.headers) == ["token-efficient-tools-2025-02-19", "fine-grained-tool-streaming-2025-05-14",
                                   "thinking-binding-controls-2026-08-01"]
    assert sent.json()["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}


def test_an_endpoint_refusing_the_binding_and_a_clients_beta_at_once_is_asked_once_more(
        claude: FakeUpstream) -> None:
    """Vertex AI names every beta it lacks in one answer: the same model is asked again without all of them, the
    binding's (the gateway's own choice) and the client's, and the next turn goes without them at once."""
    body = load("anthropic", "errors/400_unexpected_beta_binding")
    both = "`thinking-binding-controls-2026-08-01`, `web-search-2025-03-05`"
    body["body"]["error"]["message"] = body["body"]["error"]["message"].replace(
        "`thinking-binding-controls-2026-08-01`", both)
    claude.json(body["body"], body["status"])
    claude.json(load("anthropic", "completion"))
    claude.json(load("anthropic", "completion"))
    cfg = config(claude)
    cfg["models"]["sonnet"]["upstream"] = "claude-opus-5-5"
    call = next(b for b in SIGNED["content"] if b["type"] == "tool_use")
    history = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": SIGNED["content"]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}]}]
    asked = {"anthropic-beta": "web-search-2025-03-05,interleaved-thinking-2025-05-14"}
    with live_gateway(cfg, env=ENV) as g:
        client = anthropic.Anthropic(base_url=g.root, api_key="unused", max_retries=0)
        for _ in range(2):
            answer = client.messages.create(model="sonnet", max_tokens=1024, messages=history, tools=[WEATHER],
                                            extra_headers=asked)
            assert answer.content[0].type == "text"
    sent = [(betas(r.headers), r.json()) for r in claude.received]
    assert sent[0][0] == ["web-search-2025-03-05", "interleaved-thinking-2025-05-14",
                          "thinking-binding-controls-2026-08-01"]
    for headers, payload in sent[1:]:
        assert headers == ["interleaved-thinking-2025-05-14"] and "block_binding" not in str(payload.get("thinking"))
    assert len(sent) == 3
