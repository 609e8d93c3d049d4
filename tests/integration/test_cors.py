"""Web pages calling the gateway from their scripts (CORS), for the origins ``[gateway] cors_origins`` names."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from polyroute import config as cfg
from polyroute.errors import ConfigError
from tests.support.live import live_gateway

PAGE = "http://localhost:3000"
ASK = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
# What Chromium sends before the openai JS SDK's POST (its own x-stainless-* headers among them).
PREFLIGHT = {"origin": PAGE, "access-control-request-method": "POST",
             "access-control-request-headers": "authorization,content-type,x-stainless-lang"}


def config(*origins: str) -> dict[str, Any]:
    return {"gateway": {"cors_origins": list(origins)}, "backends": {"f": {"type": "fake"}},
            "models": {"echo": {"backend": "f"}}}


def test_an_allowed_page_gets_its_preflight_and_reads_answers_and_streams() -> None:
    with live_gateway(config(PAGE)) as g:
        pre = httpx.options(f"{g.base_url}/chat/completions", headers=PREFLIGHT)
        whole = httpx.post(f"{g.base_url}/chat/completions", json=ASK, headers={"origin": PAGE})
        with httpx.stream("POST", f"{g.base_url}/chat/completions", json={**ASK, "stream": True},
                          headers={"origin": PAGE}) as streamed:
            body = streamed.read()
            stream_headers = streamed.headers
        models = httpx.get(f"{g.base_url}/models", headers={"origin": PAGE})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == PAGE
    assert pre.headers["access-control-allow-headers"] == PREFLIGHT["access-control-request-headers"]
    assert "POST" in pre.headers["access-control-allow-methods"] and pre.headers["vary"] == "origin"
    for answer in (whole, models):
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == PAGE
        assert answer.headers["access-control-expose-headers"] == "*"
    assert stream_headers["access-control-allow-origin"] == PAGE and b"[DONE]" in body


def test_another_page_is_told_why_and_a_call_without_origin_is_as_before() -> None:
    with live_gateway(config(PAGE)) as g:
        pre = httpx.options(f"{g.base_url}/chat/completions", headers={**PREFLIGHT, "origin": "https://evil.test"})
        other = httpx.post(f"{g.base_url}/chat/completions", json=ASK, headers={"origin": "https://evil.test"})
        plain = httpx.post(f"{g.base_url}/chat/completions", json=ASK)
    assert pre.status_code == 403 and pre.json()["error"]["code"] == "origin_not_allowed"
    assert "cors_origins" in pre.json()["error"]["message"] and "access-control-allow-origin" not in pre.headers
    # The browser withholds this answer from the page: no header names its origin.
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_any_origin_and_no_origin_configured() -> None:
    with live_gateway(config("*")) as g:
        anyone = httpx.post(f"{g.base_url}/chat/completions", json=ASK, headers={"origin": "https://app.test"})
    assert anyone.headers["access-control-allow-origin"] == "*"
    with live_gateway(config()) as g:
        pre = httpx.options(f"{g.base_url}/chat/completions", headers=PREFLIGHT)
    assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers


@pytest.mark.parametrize("origin", ["localhost:3000", "https://app.test/", "https://app.test/page", "ftp://a.test"])
def test_an_origin_that_is_not_one_is_refused_by_the_config(origin: str) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.cors_origins"):
        cfg.parse(config(origin), env={})
