"""A parameter a backend cannot honour is dropped or refused as the config says."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import ANTHROPIC, FakeUpstream, load


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(ANTHROPIC) as up:
        yield up


def config(url: str, mode: str) -> dict[str, object]:
    return {
        "gateway": {"unsupported_params": mode},
        "backends": {"claude": {"type": "anthropic", "base_url": url, "api_key": "env:ANTHROPIC_API_KEY"}},
        "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5", "family": "claude-sonnet-4-5"}},
    }


def before_structured_outputs(raw: dict[str, object]) -> dict[str, object]:
    """The same config on a Claude from before structured outputs, which takes no ``response_format`` at all (a
    later one takes a JSON schema: tests/integration/test_claude_structured.py)."""
    return {**raw, "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-20250514"}}}


BODY = {
    "model": "sonnet",
    "messages": [{"role": "user", "content": "hi"}],
    "seed": 42,
    "temperature": 0.2,
    "response_format": {"type": "json_object"},
}


def test_drop_mode_drops_and_says_which(upstream: FakeUpstream) -> None:
    upstream.json(load("anthropic", "completion"))
    with live_gateway(config(upstream.url, "drop"), env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={**BODY, "response_format": None})
    assert resp.status_code == 200
    assert resp.headers["x-polyroute-dropped-params"] == "seed"
    sent = upstream.received[-1].json()
    assert "seed" not in sent
    assert sent["temperature"] == 0.2  # what it can honour still goes through


@pytest.mark.parametrize("param", [{"response_format": {"type": "json_object"}}, {"logprobs": True},
                                   {"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}])
def test_drop_mode_never_drops_what_the_answer_is_read_by(upstream: FakeUpstream, param: dict[str, object]) -> None:
    """A JSON format or log probabilities are what the client reads the answer by (the openai SDK's ``parse``
    fails on prose): a backend that cannot carry them is passed over even in drop mode, and with no other
    candidate the client hears a 400 naming the parameter, not an answer without it."""
    raw = before_structured_outputs(config(upstream.url, "drop"))
    with live_gateway(raw, env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json={**BODY, "response_format": None, **param})
    assert resp.status_code == 400
    err = resp.json()["error"]
    [name] = param
    assert err["param"] == name and f"no candidate of 'sonnet' supports: {name}" in err["message"]
    assert upstream.received == []


@pytest.mark.parametrize("mode", ["drop", "refuse"])
def test_a_parameter_sent_at_its_default_asks_for_nothing(upstream: FakeUpstream, mode: str) -> None:
    """LangChain sends ``logprobs: false``, SDKs send nulls, OpenAI's Playground exports ``response_format:
    {"type": "text"}``: none of them asks for anything a backend must carry, so none passes the backend over."""
    defaults = {"logprobs": False, "top_logprobs": None, "logit_bias": {}, "response_format": {"type": "text"},
                "stop": [], "metadata": None}
    for _ in range(2):
        upstream.json(load("anthropic", "completion"))
    with live_gateway(config(upstream.url, mode), env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        base = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
        resp = httpx.post(f"{g.base_url}/chat/completions", json={**base, **defaults})
        null_bias = httpx.post(f"{g.base_url}/chat/completions", json={**base, "logprobs": None, "logit_bias": None})
    assert resp.status_code == null_bias.status_code == 200, resp.text
    assert "x-polyroute-dropped-params" not in resp.headers
    assert "stop_sequences" not in upstream.received[0].json()


def test_refuse_mode_refuses_naming_the_parameter(upstream: FakeUpstream) -> None:
    raw = before_structured_outputs(config(upstream.url, "refuse"))
    with live_gateway(raw, env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json=BODY)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "response_format"
    assert "no candidate of 'sonnet' supports: response_format, seed" in err["message"]
    assert upstream.received == []  # refused before anything was sent


@pytest.mark.parametrize(
    ("upstream_model", "dropped"),
    [("claude-sonnet-4-5", "top_p"), ("claude-opus-4-1-20250805", "top_p"), ("claude-3-7-sonnet-20250219", None)],
)
def test_claude_models_that_refuse_both_samplers_get_temperature_only(
    upstream: FakeUpstream, upstream_model: str, dropped: str | None
) -> None:
    # Newer Claude models answer both with the 400 of tests/fixtures/anthropic/sampler_error.json.
    upstream.json(load("anthropic", "completion"))
    raw = config(upstream.url, "drop")
    raw["models"] = {"sonnet": {"backend": "claude", "upstream": upstream_model}}
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.9}
    with live_gateway(raw, env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json=body)
    assert resp.status_code == 200
    assert resp.headers.get("x-polyroute-dropped-params") == dropped
    sent = upstream.received[-1].json()
    assert sent["temperature"] == 0.2
    assert ("top_p" in sent) is (dropped is None)


def test_the_sampler_refusal_is_the_clients_error_not_a_failover(upstream: FakeUpstream) -> None:
    spec = load("anthropic", "sampler_error")
    upstream.json(spec["body"], spec["status"])
    raw = config(upstream.url, "drop")
    raw["models"] = {"sonnet": {"backend": "claude", "upstream": "claude-3-7-sonnet-20250219"}}
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.9}
    with live_gateway(raw, env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json=body)
    assert resp.status_code == 400
    assert "cannot both be specified" in resp.json()["error"]["message"]


def test_refuse_mode_refuses_both_samplers_for_a_model_that_takes_one(upstream: FakeUpstream) -> None:
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.9}
    with live_gateway(config(upstream.url, "refuse"), env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "top_p"
    assert upstream.received == []


@pytest.mark.parametrize("mode", ["drop", "refuse"])
def test_fields_outside_the_schema_a_wire_format_has_no_place_for_are_named(upstream: FakeUpstream, mode: str) -> None:
    """Another SDK's ``system``, a typo such as ``max_token``: never lost without a word."""
    upstream.json(load("anthropic", "completion"))
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "system": "Answer in French",
            "max_token": 5, "top_k": 3}
    with live_gateway(config(upstream.url, mode), env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions", json=body)
    if mode == "drop":
        assert resp.status_code == 200 and resp.headers["x-polyroute-dropped-params"] == "max_token,system"
        sent = upstream.received[0].json()
        assert sent["top_k"] == 3 and "max_token" not in sent  # Anthropic's own knob goes through
    else:
        assert resp.status_code == 400 and upstream.received == []
        assert "max_token" in resp.json()["error"]["message"] and "system" in resp.json()["error"]["message"]
        assert "'max_token' is not a field of OpenAI's request (did you mean 'max_tokens'?)" in resp.text


def test_audio_claude_cannot_hear_goes_to_a_model_that_can(upstream: FakeUpstream) -> None:
    """An input_audio part is not dropped on the way to Claude (it would answer as if it had heard it): the next
    candidate answers, and parallel_tool_calls, which Claude carries, is not named as dropped."""
    from tests.support.upstreams import OPENAI

    with FakeUpstream(OPENAI) as other:
        other.json(load("openai", "completion"))
        raw = config(upstream.url, "drop")
        raw["backends"]["gpt"] = {"type": "openai", "base_url": other.url + "/v1", "api_key": "env:ANTHROPIC_API_KEY"}
        raw["models"]["hears"] = {"backend": "gpt", "upstream": "gpt-audio"}
        raw["routes"] = {"r": {"models": ["sonnet", "hears"]}}
        content = [{"type": "text", "text": "What is said?"},
                   {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
        with live_gateway(raw, env={"ANTHROPIC_API_KEY": "sk-ant-test"}) as g:
            resp = httpx.post(f"{g.base_url}/chat/completions", json={
                "model": "r", "messages": [{"role": "user", "content": content}], "parallel_tool_calls": False})
    assert resp.status_code == 200 and resp.headers["x-polyroute-model"] == "hears", resp.text
    assert resp.headers["x-polyroute-attempt-log"].startswith("claude/sonnet param_refused ")
    assert "x-polyroute-dropped-params" not in resp.headers
    assert upstream.received == [] and other.received[0].json()["messages"][0]["content"][1]["type"] == "input_audio"
