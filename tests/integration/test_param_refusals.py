"""A parameter one model refuses does not fail a valid request, end to end: a real gateway, fake upstreams.

The model is asked again without the parameter (named in ``x-polyroute-dropped-params``) and later
requests leave it out at once; a refusal that cannot be dropped moves the request to the next model;
``unsupported_params = "refuse"`` drops nothing. Fixtures: ``tests/fixtures/<provider>/errors/``.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.live import live_gateway
from tests.support.upstreams import ANTHROPIC, FakeUpstream, load

ASK = [{"role": "user", "content": "Spell the NATO alphabet"}]



def refusal(up: FakeUpstream, provider: str, case: str) -> None:
    doc = load(provider, f"errors/{case}")
    up.json(doc["body"], doc["status"])


def config(first: FakeUpstream, fallback: FakeUpstream, **gateway: Any) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "backends": {
            "prov": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"},
            "fb": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY"},
        },
        "models": {"m": {"backend": "prov", "upstream": "their-model"}, "f": {"backend": "fb", "upstream": "fb-model"}},
        "routes": {"r": {"models": ["m", "f"]}},
    }


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(model="r", messages=ASK, **extra)  # type: ignore[arg-type]


def refused_then_asked_twice(
    first: FakeUpstream, fallback: FakeUpstream, fixture: str, temperature: float, then: float
) -> tuple[Any, Any]:
    """The first model refuses once (``fixture``), then answers; two requests with these temperatures."""
    provider, _, case = fixture.partition("/")
    refusal(first, provider, case)
    for _ in range(2):
        first.json(load("openai", "completion"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        return ask(client, temperature=temperature, stream=False), ask(client, temperature=then, stream=False)


def test_a_refused_sampling_parameter_is_dropped_for_that_model_and_remembered(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    raw, again = refused_then_asked_twice(first, fallback, "openai/400_unsupported_value_temperature", 0.2, 0.2)
    assert raw.parse().choices[0].message.content and raw.headers["x-polyroute-dropped-params"] == "temperature"
    log = raw.headers["x-polyroute-attempt-log"].split("; ")
    assert log[0].startswith("prov/m param_refused ") and log[1].startswith("prov/m ok ")
    sent = [r.json() for r in first.received]
    assert sent[0]["temperature"] == 0.2 and "temperature" not in sent[1]
    # The next request is sent without it at once: one call, not a refusal and a call.
    assert again.headers["x-polyroute-attempts"] == "1" and again.headers["x-polyroute-dropped-params"] == "temperature"
    assert len(sent) == 3 and "temperature" not in sent[2]
    assert fallback.received == []


def test_with_refuse_nothing_is_dropped_and_the_next_model_answers(first: FakeUpstream, fallback: FakeUpstream) -> None:
    refusal(first, "openai", "400_unsupported_value_temperature")
    fallback.json(load("openai", "completion"))
    with live_gateway(config(first, fallback, unsupported_params="refuse"), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = ask(client, temperature=0.2, stream=False)
    assert raw.headers["x-polyroute-model"] == "f" and "x-polyroute-dropped-params" not in raw.headers
    assert len(first.received) == 1 and fallback.received[0].json()["temperature"] == 0.2


def test_a_refusal_that_cannot_be_dropped_moves_to_the_next_model(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """DeepSeek in thinking mode will not make a forced tool call: the next model will."""
    refusal(first, "deepseek", "400_tool_choice_in_thinking_mode")
    fallback.json(load("openai", "tool_call"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = ask(client, tools=tools, tool_choice="required", stream=False)
    assert raw.parse().choices[0].message.tool_calls and raw.headers["x-polyroute-model"] == "f"
    assert raw.headers["x-polyroute-attempt-log"].startswith("prov/m param_refused ")
    assert fallback.received[0].json()["tool_choice"] == "required"  # nothing was dropped on the way


@pytest.mark.parametrize(("param", "value"), [("logprobs", True), ("stop", ["END"]), ("logit_bias", {"50256": -100})])
def test_a_refused_parameter_the_answer_depends_on_is_never_dropped(
    first: FakeUpstream, fallback: FakeUpstream, param: str, value: Any,
) -> None:
    """An answer without the client's stop sequences, banned tokens or log probabilities is not the answer it asked
    for: a model refusing one leaves the request to the next candidate, which is sent it. A refusal of the
    parameter whatever its value (OpenAI's ``unsupported_parameter``) is remembered: later requests that carry it
    pass the model over rather than pay for the same refusal again."""
    first.json({"error": {"message": f"Unsupported parameter: '{param}' is not supported with this model.",
                          "type": "invalid_request_error", "param": param, "code": "unsupported_parameter"}}, 400)
    for _ in range(2):
        fallback.json(load("openai", "completion"))
    first.json(load("openai", "completion"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raws = [ask(client, stream=False, **{param: value}) for _ in range(2)]
        without = ask(client, stream=False)  # a request without it still goes to the model
    for raw in raws:
        assert raw.headers["x-polyroute-model"] == "f" and "x-polyroute-dropped-params" not in raw.headers
    assert raws[0].headers["x-polyroute-attempt-log"].startswith("prov/m param_refused ")
    assert raws[1].headers["x-polyroute-attempt-log"].startswith("fb/f ok")  # passed over: learned
    assert without.headers["x-polyroute-model"] == "m"
    assert [r.json().get(param) for r in first.received] == [value, None]
    assert [r.json()[param] for r in fallback.received] == [value, value]


def test_a_value_a_model_refuses_is_not_learned(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """OpenAI's ``unsupported_value`` is about this value, not the parameter: the next request is asked again."""
    for _ in range(2):
        first.json({"error": {"message": "Unsupported value: 'logprobs' does not support 20 with this model.",
                              "type": "invalid_request_error", "param": "top_logprobs",
                              "code": "unsupported_value"}}, 400)
        fallback.json(load("openai", "completion"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raws = [ask(client, stream=False, logprobs=True, top_logprobs=20) for _ in range(2)]
    assert all(r.headers["x-polyroute-attempt-log"].startswith("prov/m param_refused ") for r in raws)
    assert len(first.received) == 2


def test_when_every_model_refuses_the_client_hears_it_as_a_400(first: FakeUpstream, fallback: FakeUpstream) -> None:
    for up in (first, fallback):
        refusal(up, "deepseek", "400_json_schema_unavailable")
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            ask(client, response_format=schema)
    assert "response_format type is unavailable" in info.value.message
    assert info.value.response.headers["x-polyroute-attempts"] == "2"


def test_claude_from_opus_4_7_and_sonnet_4_6_on_is_sent_no_sampling_parameters() -> None:
    """The catalog's Claude Sonnet 5.5 refuses temperature: it is left out before it can cost a refusal."""
    with FakeUpstream(ANTHROPIC) as up:
        for _ in range(2):
            up.json(load("anthropic", "completion"))
        raw_config = {
            "backends": {"claude": {"type": "anthropic", "base_url": up.url, "api_key": "env:TEST_KEY"}},
            "models": {"new": {"backend": "claude", "upstream": "claude-sonnet-5-5"},
                       "old": {"backend": "claude", "upstream": "claude-sonnet-4-5-20250929"}},
        }
        with live_gateway(raw_config, env={"TEST_KEY": "sk-test"}) as g:
            client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
            new = client.chat.completions.with_raw_response.create(model="new", messages=ASK, temperature=0.3)  # type: ignore[arg-type]
            old = client.chat.completions.with_raw_response.create(model="old", messages=ASK, temperature=0.3)  # type: ignore[arg-type]
        sent_new, sent_old = (r.json() for r in up.received)
    assert "temperature" not in sent_new and new.headers["x-polyroute-dropped-params"] == "temperature"
    assert sent_old["temperature"] == 0.3 and "x-polyroute-dropped-params" not in old.headers


def test_a_refused_value_is_dropped_for_that_request_only(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """Z.ai refuses a temperature out of its range, not every temperature: the next request keeps its own."""
    raw, again = refused_then_asked_twice(first, fallback, "zai/400_1210_temperature_illegal", 1.5, 0.2)
    assert raw.headers["x-polyroute-dropped-params"] == "temperature"
    assert "x-polyroute-dropped-params" not in again.headers
    sent = [r.json() for r in first.received]
    assert [s.get("temperature") for s in sent] == [1.5, None, 0.2]


def test_a_server_that_refuses_stream_options_streams_without_them_and_its_usage_is_estimated(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    """The gateway adds stream_options itself, to bill a stream: a server that predates them is not the client's
    400. It is asked again without them (its cost then estimated, and said so), and later streams leave them out."""
    refusal(first, "openai", "400_unknown_parameter_stream_options")
    without_usage = load("openai", "stream")[:-1]
    first.stream(without_usage)
    first.stream(without_usage)
    first.json(load("openai", "completion"))
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        texts, usages = [], []
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="r", messages=ASK, stream=True, stream_options={"include_usage": True})  # type: ignore[arg-type]
            assert "x-polyroute-dropped-params" not in raw.headers  # not the client's to know
            chunks = list(raw.parse())
            texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
            usages.append(chunks[-1].usage)
        # A whole answer from that server is asked for whole, and billed by its own count.
        whole = ask(client, stream=False)
    assert texts == ["Hello! How can I help you today?"] * 2
    assert whole.parse().usage.model_extra.get("estimated") is None and whole.parse().usage.total_tokens > 0
    assert "x-polyroute-dropped-params" not in whole.headers
    assert all(u is not None and u.completion_tokens > 0 and u.model_extra["estimated"] is True for u in usages)
    sent = [r.json() for r in first.received]
    assert len(sent) == 4 and "stream_options" in sent[0]
    assert "stream_options" not in sent[1] and "stream_options" not in sent[2]  # learned: one call, not two
    assert sent[3]["stream"] is False and "stream_options" not in sent[3]
    assert fallback.received == []


def test_the_field_an_upstream_names_in_a_400_reaches_the_client(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.json({"error": {"message": "Invalid 'messages[0].content': string too long.", "type": "invalid_request_error",
                          "param": "messages[0].content", "code": "string_above_max_length_x"}}, 400)
    with live_gateway(config(first, fallback), env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="r", messages=ASK, stream=False)  # type: ignore[arg-type]
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == "messages[0].content" and "string too long" in err["message"]
    assert fallback.received == []  # the client's own error: not sent on
