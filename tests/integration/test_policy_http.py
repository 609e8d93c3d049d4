"""Keys and policies through the real gateway on localhost, with the real ``openai`` SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway

ENV = {"ACME_KEY": "sk-acme-7f3a9c", "PARTNER_KEY": "sk-partner-51d2e8", "OLD_KEY": "sk-old-000111"}
SECRETS = list(ENV.values())
KEY_NAMES = ["acme", "partner", "old"]

RAW: dict[str, Any] = {
    "backends": {"box": {"type": "fake"}, "cloud": {"type": "fake", "locality": "remote"}},
    "models": {
        "local-down": {"backend": "box", "upstream": "error-503", "family": "qwen3-8b"},
        "cloud-gpt": {"backend": "cloud", "family": "gpt-4-1-mini"},
        "local-qwen": {"backend": "box", "family": "qwen3-8b"},
        "cloud-ds": {"backend": "cloud", "family": "deepseek-v4-flash"},
    },
    "policies": {"onprem": {"locality": "local"}, "us": {"origins_allow": ["US"]}, "open-door": {}},
    "keys": {
        "acme": {"secret": "env:ACME_KEY", "policy": "onprem", "team": "red"},
        "partner": {"secret": "env:PARTNER_KEY", "policy": "us", "routes": ["main", "cheap"]},
        "old": {"secret": "env:OLD_KEY", "revoked": True},
    },
    "routes": {
        "main": {"models": ["local-down", "cloud-gpt", "local-qwen", "cloud-ds"]},
        "doomed": {"models": ["local-down", "cloud-gpt"]},
        "cheap": {"models": ["cloud-ds", "local-qwen", "cloud-gpt"], "strategy": "cheapest"},
    },
}


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_gateway(RAW, env=ENV) as g:
        yield g


def client(live: Live, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)


def ask(text: str = "hello") -> list[Any]:
    return [{"role": "user", "content": text}]


def leaks(text: str) -> list[str]:
    """Secrets or key names that appear in ``text``."""
    return [s for s in [*SECRETS, *KEY_NAMES, "sk-wrong-123"] if s in text]


# --- who is asking --------------------------------------------------------------------------


def test_a_missing_key_is_401_in_the_openai_shape(live: Live) -> None:
    resp = httpx.post(f"{live.base_url}/chat/completions", json={"model": "main", "messages": ask()})
    assert resp.status_code == 401
    assert resp.json() == {"error": {
        "message": "No API key was sent. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        "type": "authentication_error", "param": None, "code": "invalid_api_key",
    }}
    assert not leaks(resp.text)


@pytest.mark.parametrize("key", ["sk-wrong-123", ENV["OLD_KEY"]], ids=["wrong", "revoked"])
def test_a_wrong_or_revoked_key_is_401_and_leaks_nothing(live: Live, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(live, key).chat.completions.create(model="main", messages=ask())
    err = info.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key"
    text = err.response.text + json.dumps(dict(err.response.headers))
    assert not leaks(text), leaks(text)
    # A revoked key reads exactly like one that never existed.
    assert err.message.endswith(
        "The API key sent is not valid. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
    )


def test_x_api_key_is_accepted(live: Live) -> None:
    resp = httpx.post(f"{live.base_url}/chat/completions", headers={"x-api-key": ENV["ACME_KEY"]},
                      json={"model": "main", "messages": ask()})
    assert resp.status_code == 200
    assert resp.headers["x-polyroute-model"] == "local-qwen"


def test_a_key_on_a_route_it_may_not_use_is_403_naming_only_the_route(live: Live) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(live, ENV["PARTNER_KEY"]).chat.completions.create(model="doomed", messages=ask())
    assert info.value.status_code == 403
    body = info.value.response.json()["error"]
    assert body["message"] == "This key may not use 'doomed'."
    assert "main" not in info.value.response.text and not leaks(info.value.response.text)


def test_the_plaintext_of_keys_is_not_kept(live: Live) -> None:
    for name in KEY_NAMES:
        assert live.gateway.fleet.config.keys[name].secret.get() is None


# --- a policy holds, even through failover ---------------------------------------------------


def test_a_local_only_key_fails_over_to_local_models_only() -> None:
    with live_gateway(RAW, env=ENV) as fresh:
        raw = client(fresh, ENV["ACME_KEY"]).chat.completions.with_raw_response.create(
            model="main", messages=ask("hi"))
    assert raw.parse().choices[0].message.content == "You said: hi"
    assert raw.headers["x-polyroute-model"] == "local-qwen"
    # The local model failed and the next one listed is hosted: it was skipped, not tried.
    tried = [a.split(" ")[0] for a in raw.headers["x-polyroute-attempt-log"].split("; ")]
    assert tried == ["box/local-down", "box/local-qwen"]


def test_when_every_local_model_fails_a_local_only_key_never_reaches_a_hosted_one() -> None:
    with live_gateway(RAW, env=ENV) as fresh, pytest.raises(openai.InternalServerError) as info:
        client(fresh, ENV["ACME_KEY"]).chat.completions.create(model="doomed", messages=ask())
    headers = info.value.response.headers
    assert info.value.status_code == 502  # the one local model answered 503 itself; cloud-gpt would have answered
    assert headers["x-polyroute-attempts"] == "1"
    assert headers["x-polyroute-attempt-log"].startswith("box/local-down server_error")
    assert "cloud-gpt" not in info.value.response.text


def test_an_origin_restricted_key_is_served_by_an_allowed_model_and_billed(live: Live) -> None:
    raw = client(live, ENV["PARTNER_KEY"]).chat.completions.with_raw_response.create(
        model="main", messages=ask("price me"))
    resp = raw.parse()
    assert raw.headers["x-polyroute-model"] == "cloud-gpt"
    assert resp.usage is not None
    gpt = live.gateway.fleet.models["cloud-gpt"]
    usage = resp.usage
    expected = (usage.prompt_tokens * gpt.input_per_mtok + usage.completion_tokens * gpt.output_per_mtok) / 1e6
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(expected)
    assert expected > 0


def test_narrowing_to_nothing_is_a_422_naming_the_policy_and_each_reason(live: Live) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client(live, ENV["PARTNER_KEY"]).chat.completions.create(
            model="main", messages=ask(), extra_headers={"x-polyroute-policy": "onprem"})
    err = info.value.response.json()["error"]
    assert err["code"] == "no_candidate_satisfies_policy" and err["type"] == "invalid_request_error"
    assert err["message"].startswith("No candidate of 'main' satisfies policy 'us + onprem' for this request. ")
    assert "cloud-gpt: backend 'cloud' is remote; policy 'onprem' allows local backends only" in err["message"]
    for name in ("local-down", "local-qwen", "cloud-ds"):
        assert f"{name}: " in err["message"]


def test_a_header_cannot_widen(live: Live) -> None:
    raw = client(live, ENV["ACME_KEY"]).chat.completions.with_raw_response.create(
        model="main", messages=ask(), extra_headers={"x-polyroute-policy": "open-door"})
    assert raw.headers["x-polyroute-model"] == "local-qwen"
    assert "cloud" not in raw.headers.get("x-polyroute-attempt-log", "")


def test_an_unknown_narrowing_policy_is_a_400(live: Live) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(live, ENV["ACME_KEY"]).chat.completions.create(
            model="main", messages=ask(), extra_headers={"x-polyroute-policy": "nope"})
    assert "x-polyroute-policy names no configured policy" in info.value.message


# --- the decision, explained ---------------------------------------------------------------


def test_the_explain_header_returns_the_decision(live: Live) -> None:
    raw = client(live, ENV["PARTNER_KEY"]).chat.completions.with_raw_response.create(
        model="cheap", messages=ask(), max_tokens=50, extra_headers={"x-polyroute-explain": "1"})
    doc = json.loads(raw.headers["x-polyroute-route-explain"])
    assert doc["route"] == "cheap" and doc["strategy"] == "cheapest" and doc["policy"] == "us"
    assert [row["model"] for row in doc["order"]] == ["cloud-gpt"]
    assert doc["order"][0]["cost_usd_est"] > 0 and doc["request"]["output_tokens_est"] == 50
    excluded = {row["model"]: row["reason"] for row in doc["excluded"]}
    assert excluded == {
        "cloud-ds": "origin DeepSeek, CN is not in origins_allow [US] of policy 'us'",
        "local-qwen": "origin Alibaba Cloud (Qwen team), CN is not in origins_allow [US] of policy 'us'",
    }
    costs = {row["model"]: row["cost_usd_est"] for row in doc["excluded"]}
    assert costs["cloud-ds"] > 0 and costs["local-qwen"] == 0  # run on our own box: no list price


def test_the_explain_header_on_a_stream_and_not_without_asking(live: Live) -> None:
    c = client(live, ENV["ACME_KEY"])
    with c.chat.completions.with_streaming_response.create(
        model="main", messages=ask(), stream=True, extra_headers={"x-polyroute-explain": "1"}
    ) as resp:
        doc = json.loads(resp.headers["x-polyroute-route-explain"])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in resp.parse() if chunk.choices)
    assert text == "You said: hello"
    assert [row["model"] for row in doc["order"]] == ["local-down", "local-qwen"]
    plain = c.chat.completions.with_raw_response.create(model="main", messages=ask())
    assert "x-polyroute-route-explain" not in plain.headers
