"""How providers end an answer, as they document it, end to end: a real gateway, fake upstreams on loopback.

A provider that cuts an answer short for its own trouble (DeepSeek's ``insufficient_system_resource``,
Z.ai's ``network_error``, OpenRouter's ``error``) has failed the attempt: the next model continues the
answer or answers afresh, and the bill keeps what the first one charged. A provider's moderation
(Z.ai's ``sensitive`` and code 1301, DashScope's ``data_inspection_failed``) ends the answer with
OpenAI's ``content_filter``, and no other provider is asked to finish it. Errors inside a 200 stream
mean what their codes mean as statuses. Fixtures: ``tests/fixtures/<provider>/endings/``, each naming
its source.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.faults import Sse, stream
from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load

ASK = [{"role": "user", "content": "Spell the NATO alphabet"}]
# The fallback's answer, and its own count of tokens.
FALLBACK_USAGE = {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}



def chunk(delta: dict[str, Any], finish: object = None) -> dict[str, Any]:
    return {"id": "fb-1", "object": "chat.completion.chunk", "created": 1765000100, "model": "fb-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def fallback_says(up: FakeUpstream, *pieces: str) -> None:
    events = [chunk({"role": "assistant", "content": ""}), *(chunk({"content": p}) for p in pieces),
              chunk({}, "stop"), {**chunk({}), "choices": [], "usage": FALLBACK_USAGE}]
    up.stream(events)


def gateway(first: FakeUpstream, fallback: FakeUpstream, provider: str) -> Any:
    raw = {
        "backends": {
            "prov": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY", "provider": provider},
            "fb": {"type": "openai", "base_url": fallback.url + "/v1", "api_key": "env:TEST_KEY",
                   "continuation": "prefix"},
        },
        "models": {
            "m": {"backend": "prov", "upstream": "their-model", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "f": {"backend": "fb", "upstream": "fb-model", "input_per_mtok": 3.0, "output_per_mtok": 5.0},
        },
        "routes": {"r": {"models": ["m", "f"]}},
    }
    return live_gateway(raw, env={"TEST_KEY": "sk-test"})


def health(live: Live) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{live.root}/v1/health/backends").json()
    return doc


def cost(prompt: int, completion: int, per_in: float, per_out: float) -> float:
    return (prompt * per_in + completion * per_out) / 1e6


def finish_of(sse: Sse) -> list[str]:
    return [e["choices"][0]["finish_reason"] for e in sse.events
            if isinstance(e, dict) and e.get("choices") and e["choices"][0].get("finish_reason")]


# --- cut short by the provider: a failed attempt -------------------------------------------------


def test_deepseek_out_of_capacity_mid_stream_is_continued_by_the_next_model(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    first.stream(load("deepseek", "endings/insufficient_system_resource"))
    fallback_says(fallback, " can I help", " you today?")
    with gateway(first, fallback, "deepseek") as g:
        sse = stream(g, "r")
        states = health(g)
    assert sse.status == 200 and sse.done
    assert sse.text == "Hello! How can I help you today?"
    assert finish_of(sse) == ["stop"]  # the provider's word never reaches the client
    assert sse.trailer == {"attempts": 2, "rescued": True}
    # The next model was asked to continue what the client had read.
    assert fallback.received[0].json()["messages"][-1] == {"role": "assistant", "content": "Hello! How",
                                                            "prefix": True}
    # The bill: DeepSeek's own count for the cut attempt, and the fallback's.
    assert sse.usage is not None and "estimated" not in sse.usage
    assert (sse.usage["prompt_tokens"], sse.usage["completion_tokens"]) == (12 + 20, 3 + 4)
    assert sse.usage["cost_usd"] == pytest.approx(cost(12, 3, 1.0, 2.0) + cost(20, 4, 3.0, 5.0))
    # A failure of the model, counted as one.
    assert states["models"]["m"]["window"]["failures"] == 1


def test_deepseek_out_of_capacity_before_any_text_fails_over_and_keeps_its_bill(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    first.stream(load("deepseek", "endings/insufficient_system_resource_at_once"))
    fallback_says(fallback, "Alfa, Bravo")
    with gateway(first, fallback, "deepseek") as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="r", messages=ASK)  # type: ignore[arg-type]
    resp = raw.parse()
    assert resp.choices[0].message.content == "Alfa, Bravo" and resp.choices[0].finish_reason == "stop"
    log = raw.headers["x-polyroute-attempt-log"].split("; ")
    assert log[0].startswith("prov/m server_error ") and log[1].startswith("fb/f ok ")
    # The answer's usage is the answering model's; the request's cost also has the prompt DeepSeek
    # billed for the attempt it cut.
    assert resp.usage is not None and resp.usage.prompt_tokens == 20
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(cost(12, 0, 1.0, 2.0) + cost(20, 4, 3.0, 5.0),
                                                                        abs=1e-8)


@pytest.mark.parametrize(("provider", "fixture"), [("zai", "network_error"), ("openrouter", "error_finish_only")])
def test_other_providers_words_for_a_cut_answer_fail_the_attempt(
    first: FakeUpstream, fallback: FakeUpstream, provider: str, fixture: str
) -> None:
    first.stream(load(provider, f"endings/{fixture}"))
    fallback_says(fallback, " there!")
    with gateway(first, fallback, provider) as g:
        sse = stream(g, "r")
    assert sse.status == 200 and sse.done and sse.text.endswith(" there!")
    assert finish_of(sse) == ["stop"] and sse.trailer == {"attempts": 2, "rescued": True}


def test_openrouter_error_chunk_mid_stream_is_rescued(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.stream(load("openrouter", "endings/error_mid_stream"))
    fallback_says(fallback, " there!")
    with gateway(first, fallback, "openrouter") as g:
        sse = stream(g, "r")
    assert sse.done and sse.text == "Hello there!" and sse.trailer == {"attempts": 2, "rescued": True}


# --- another word for one of OpenAI's --------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "word"), [("sensitive", "content_filter"),
                                               ("model_context_window_exceeded", "length")])
def test_zai_finish_words_reach_the_client_as_openai_words(
    first: FakeUpstream, fallback: FakeUpstream, fixture: str, word: str
) -> None:
    for _ in range(2):
        first.stream(load("zai", f"endings/{fixture}"))
    with gateway(first, fallback, "zai") as g:
        sse = stream(g, "r")
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        whole = client.chat.completions.create(model="r", messages=ASK)  # type: ignore[arg-type]
    assert sse.done and sse.text == "Hello" and finish_of(sse) == [word]
    last = next(e for e in reversed(sse.events) if isinstance(e, dict) and e.get("choices"))
    assert last["choices"][0]["native_finish_reason"] == fixture
    assert whole.choices[0].finish_reason == word
    assert (whole.choices[0].model_extra or {})["native_finish_reason"] == fixture
    assert fallback.received == []  # an answer, not a failure: nobody else is asked


# --- moderation inside the stream ---------------------------------------------------------------


@pytest.mark.parametrize(("provider", "fixture", "text"), [
    ("zai", "1301_in_stream", "Step one:"),
    ("dashscope", "data_inspection_failed_in_stream", "Here is how to"),
])
def test_moderation_inside_the_stream_ends_the_answer_and_is_not_sent_on(
    first: FakeUpstream, fallback: FakeUpstream, provider: str, fixture: str, text: str
) -> None:
    for _ in range(2):
        first.stream(load(provider, f"endings/{fixture}"), terminate=False)
    with gateway(first, fallback, provider) as g:
        sse = stream(g, "r")
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        whole = client.chat.completions.create(model="r", messages=ASK)  # type: ignore[arg-type]
        states = health(g)
    assert sse.status == 200 and sse.done and sse.text == text
    assert finish_of(sse) == ["content_filter"] and sse.trailer == {"attempts": 1, "rescued": False}
    ids = {e["id"] for e in sse.events if isinstance(e, dict) and e.get("choices")}
    assert len(ids) == 1 and "" not in ids  # the ending the gateway writes is part of the same answer
    assert whole.choices[0].message.content == text and whole.choices[0].finish_reason == "content_filter"
    assert fallback.received == []  # flagged content is not handed to another provider to finish
    assert states["backends"]["prov"]["state"] == "closed"  # and it is no fault of the provider


# --- other errors inside a 200 stream mean what their codes mean -----------------------------------


def test_zai_arrears_inside_the_stream_takes_the_account_out(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.stream(load("zai", "endings/1113_in_stream"), terminate=False)
    fallback_says(fallback, "Alfa")
    with gateway(first, fallback, "zai") as g:
        sse = stream(g, "r")
        backend = health(g)["backends"]["prov"]
    assert sse.done and sse.text == "Alfa"
    assert (backend["state"], backend["scope"], backend["reason"]) == ("open", "backend", "billing")
    assert "balance exhausted or no resource package" in backend["detail"]


def test_zai_concurrency_limit_inside_the_stream_is_a_rate_limit(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.stream(load("zai", "endings/1302_in_stream"), terminate=False)
    raw = {
        "backends": {"prov": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY",
                              "provider": "zai"}},
        "models": {"m": {"backend": "prov", "upstream": "glm-4.6"}},
    }
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    assert "High concurrency" in info.value.message


def test_error_null_in_every_chunk_is_no_error(first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.stream(load("openai", "endings/error_null"))
    with gateway(first, fallback, "openai") as g:
        sse = stream(g, "r")
    assert sse.done and sse.text == "Hello!" and finish_of(sse) == ["stop"] and fallback.received == []


# --- the deprecated function_call --------------------------------------------------------------


def test_legacy_function_call_is_joined_and_streamed(first: FakeUpstream, fallback: FakeUpstream) -> None:
    for _ in range(2):
        first.stream(load("openai", "endings/function_call"))
    with gateway(first, fallback, "openai") as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        whole = client.chat.completions.create(model="r", messages=ASK)  # type: ignore[arg-type]
        sse = stream(g, "r")
    call = whole.choices[0].message.function_call
    assert call is not None and (call.name, call.arguments) == ("get_weather", '{"location":"Paris"}')
    assert whole.choices[0].finish_reason == "function_call"
    pieces = [e["choices"][0]["delta"].get("function_call") for e in sse.events
              if isinstance(e, dict) and e.get("choices")]
    assert "".join(p.get("arguments", "") for p in pieces if p) == '{"location":"Paris"}'
    assert finish_of(sse) == ["function_call"] and fallback.received == []


def test_a_whole_answer_cut_short_fails_over_and_keeps_its_bill(first: FakeUpstream, fallback: FakeUpstream) -> None:
    """A backend asked for whole answers (``assemble_from_stream = false``) that says it cut one short."""
    doc = load("deepseek", "completion")
    doc["choices"][0]["finish_reason"] = "insufficient_system_resource"
    first.json(doc)
    fallback.json({"id": "fb-2", "object": "chat.completion", "created": 1765000100, "model": "fb-model",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Alfa"},
                                "finish_reason": "stop"}], "usage": FALLBACK_USAGE})
    with gateway(first, fallback, "deepseek") as g:
        for backend in g.gateway.fleet.adapters.values():
            backend.assembles = False
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="r", messages=ASK)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "Alfa"
    assert raw.headers["x-polyroute-attempt-log"].startswith("prov/m server_error ")
    used = doc["usage"]
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(
        cost(used["prompt_tokens"], used["completion_tokens"], 1.0, 2.0) + cost(20, 4, 3.0, 5.0), abs=1e-8)


def test_a_finish_reason_that_is_not_a_word_passes_through(first: FakeUpstream, fallback: FakeUpstream) -> None:
    odd = {"type": "stop", "detail": "as some servers send it"}
    first.stream([chunk({"role": "assistant", "content": "Hi"}), chunk({}, odd)])
    with gateway(first, fallback, "openai") as g:
        sse = stream(g, "r")
    assert sse.status == 200 and sse.done and sse.text == "Hi" and fallback.received == []


# --- a model's own limits and failures, which the next model may not share --------------------------


@pytest.mark.parametrize(("fixture", "outcome"), [
    ("413_request_too_large_tpm", "param_refused"), ("400_tool_use_failed", "server_error"),
])
def test_groq_refusing_what_another_model_would_answer_falls_over(
    first: FakeUpstream, fallback: FakeUpstream, fixture: str, outcome: str
) -> None:
    """Groq's 413 for a request over one model's tokens per minute, and its 400 for a tool call the model wrote
    and it could not parse: before, each ended the request with the client's 4xx although another model answers."""
    spec = load("groq", f"errors/{fixture}")
    first.json(spec["body"], spec["status"])
    fallback_says(fallback, "Alfa")
    with gateway(first, fallback, "groq") as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="r", messages=ASK)  # type: ignore[arg-type]
        states = health(g)
    assert raw.parse().choices[0].message.content == "Alfa"
    log = raw.headers["x-polyroute-attempt-log"].split("; ")
    assert log[0].startswith(f"prov/m {outcome} ") and log[1].startswith("fb/f ok ")
    assert states["backends"]["prov"]["state"] == "closed"


def test_groq_413_is_what_the_client_hears_when_no_other_model_is_left(first: FakeUpstream) -> None:
    spec = load("groq", "errors/413_request_too_large_tpm")
    first.json(spec["body"], spec["status"])
    raw = {"backends": {"groq": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY",
                                 "provider": "groq"}},
           "models": {"m": {"backend": "groq", "upstream": "llama-3.3-70b-versatile"}}}
    with live_gateway(raw, env={"TEST_KEY": "sk-test"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    assert info.value.status_code == 413 and "Limit 12000, Requested 14137" in info.value.message


def test_openrouter_error_in_a_whole_answers_body_is_the_error_its_code_names(
    first: FakeUpstream, fallback: FakeUpstream
) -> None:
    """OpenRouter answers 200 with an error in the body when the provider behind it fails after taking the request:
    before, "answer has no choices" (a bad response) lost its words and its code."""
    first.json(load("openrouter", "endings/error_in_whole_answer"))
    fallback.json({"id": "fb-2", "object": "chat.completion", "created": 1765000100, "model": "fb-model",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Alfa"},
                                "finish_reason": "stop"}], "usage": FALLBACK_USAGE})
    with gateway(first, fallback, "openrouter") as g:
        for backend in g.gateway.fleet.adapters.values():
            backend.assembles = False
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="r", messages=ASK)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "Alfa"
    assert raw.headers["x-polyroute-attempt-log"].startswith("prov/m rate_limited ")
