"""Every bad input gets a clear OpenAI-shaped error with the right status, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.live import Live, live_gateway

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {
        "gateway": {"max_body_bytes": LIMIT},
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "other": {"backend": "f"}},
    }
    with live_gateway(raw) as g:
        yield g


def msgs() -> list[dict[str, Any]]:
    return [{"role": "user", "content": "hi"}]


CASES: list[tuple[str, bytes | dict[str, Any], int, str | None, str]] = [
    # name, body, status, param, words the message must contain
    ("invalid json", b'{"model": "echo", "messages": [', 400, None, "not valid JSON"),
    ("empty body", b"", 400, None, "empty"),
    ("json not an object", b"[1, 2, 3]", 400, None, "JSON object"),
    ("invalid utf-8", b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, None,
     "not valid JSON"),
    ("missing messages", {"model": "echo"}, 400, "messages", "Missing required parameter"),
    ("missing model", {"messages": msgs()}, 400, "model", "Missing required parameter"),
    ("empty messages", {"model": "echo", "messages": []}, 400, "messages", "at least 1"),
    ("messages wrong type", {"model": "echo", "messages": "hi"}, 400, "messages", "valid list"),
    ("unknown role", {"model": "echo", "messages": [{"role": "robot", "content": "x"}]}, 400,
     "messages[0].role", "Input should be"),
    ("temperature wrong type", {"model": "echo", "messages": msgs(), "temperature": "hot"}, 400,
     "temperature", "valid number"),
    ("temperature out of range", {"model": "echo", "messages": msgs(), "temperature": 7}, 400,
     "temperature", "less than or equal to 2"),
    ("absurd max_tokens", {"model": "echo", "messages": msgs(), "max_tokens": 10**12}, 400,
     "max_tokens", "less than or equal"),
    ("negative max_tokens", {"model": "echo", "messages": msgs(), "max_tokens": -5}, 400,
     "max_tokens", "greater than or equal to 1"),
    ("stream wrong type", {"model": "echo", "messages": msgs(), "stream": "yes please"}, 400,
     "stream", "valid boolean"),
    ("too many stop sequences", {"model": "echo", "messages": msgs(), "stop": list("abcde")}, 400,
     "stop", "at most 4"),
    ("malformed tool", {"model": "echo", "messages": msgs(), "tools": [{"type": "function"}]}, 400,
     "tools", "tools[0]"),
    ("n above one", {"model": "echo", "messages": msgs(), "n": 3}, 400, "n", "one choice per request (n = 1)"),
    # Types as JSON writes them: true is not 1, and 1 is not true.
    ("boolean max_tokens", {"model": "echo", "messages": msgs(), "max_tokens": True}, 400,
     "max_tokens", "valid integer"),
    ("boolean temperature", {"model": "echo", "messages": msgs(), "temperature": True}, 400,
     "temperature", "valid number"),
    ("number as stream", {"model": "echo", "messages": msgs(), "stream": 1}, 400, "stream", "valid boolean"),
    ("stop of the wrong type", {"model": "echo", "messages": msgs(), "stop": 5}, 400, "stop", "valid string"),
    ("unknown tool_choice", {"model": "echo", "messages": msgs(), "tool_choice": "x"}, 400,
     "tool_choice", "'none', 'auto', 'required'"),
    ("tool_choice without a function", {"model": "echo", "messages": msgs(), "tool_choice": {},
                                        "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
     "tool_choice", "'function'"),
    ("required tool without tools", {"model": "echo", "messages": msgs(), "tool_choice": "required"}, 400,
     "tool_choice", "only with 'tools'"),
    ("tool name not a name", {"model": "echo", "messages": msgs(),
                              "tools": [{"type": "function", "function": {"name": 5}}]}, 400,
     "tools", "function.name"),
    ("text part without text", {"model": "echo", "messages": [
        {"role": "user", "content": [{"type": "text", "text": None}]}]}, 400, "messages[0].content", "'text'"),
    ("image part without url", {"model": "echo", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     "messages[0].content", "'image_url'"),
    ("response_format without type", {"model": "echo", "messages": msgs(), "response_format": {}}, 400,
     "response_format", "'json_object'"),
    ("unknown model", {"model": "gpt-99", "messages": msgs()}, 404, "model", "Known models and routes: echo, other"),
]


@pytest.mark.parametrize(("name", "body", "status", "param", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    live: Live, name: str, body: bytes | dict[str, Any], status: int, param: str | None, words: str
) -> None:
    if isinstance(body, dict):
        resp = httpx.post(f"{live.base_url}/chat/completions", json=body)
    else:
        resp = httpx.post(f"{live.base_url}/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] in ("invalid_request_error",)
    assert err["param"] == param
    assert words in err["message"]
    assert "Traceback" not in resp.text


def test_oversize_body_is_413(live: Live) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]}
    resp = httpx.post(f"{live.base_url}/chat/completions", json=body)
    assert resp.status_code == 413
    err = resp.json()["error"]
    assert err["code"] == "request_too_large" and str(LIMIT) in err["message"]


def test_a_body_sent_in_chunks_under_the_limit_is_read_whole(live: Live) -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(8):
            yield b"z" * 1024
        yield b'"}]}'

    resp = httpx.post(f"{live.base_url}/chat/completions", content=parts())
    assert resp.status_code == 200, resp.text
    assert "z" * 64 in resp.json()["choices"][0]["message"]["content"]


def test_oversize_chunked_body_without_length_is_413(live: Live) -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(LIMIT // 1024 + 2):
            yield b"y" * 1024
        yield b'"}]}'

    resp = httpx.post(f"{live.base_url}/chat/completions", content=parts())
    assert resp.status_code == 413


def test_a_body_in_too_many_tiny_chunks_is_refused_and_others_are_served() -> None:
    """Each chunk costs the parser a Python call and the body an object: a body sent a byte a chunk is
    refused once past MAX_BODY_PARTS pieces, with a clear 400, rather than held piece by piece (the
    default body limit, so that the pieces, not the bytes, are what is over)."""
    from polyroute.server.http11 import MAX_BODY_PARTS

    with live_gateway({"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}) as live:
        refused_and_still_serving(live, MAX_BODY_PARTS)


def refused_and_still_serving(live: Live, parts: int) -> None:
    host, port = live.base_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"1\r\n \r\n" * (parts + 10))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            if not (data := sock.recv(65536)):
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert f"over {parts} chunks".encode() in answer
    assert httpx.get(f"{live.root}/healthz", timeout=30).status_code == 200  # the gateway went on serving


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/chat/completions", 405),
    ("POST", "/v1/nothing-here", 404),
    ("DELETE", "/v1/models", 405),
])
def test_wrong_paths_and_methods(live: Live, method: str, path: str, status: int) -> None:
    resp = httpx.request(method, f"{live.root}{path}")
    assert resp.status_code == status
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and path in err["message"]
    if status == 404:  # an SDK's embeddings or completions call is told what is served instead
        assert "This gateway serves" in err["message"] and "/v1/chat/completions" in err["message"]


def test_health_and_ready(live: Live) -> None:
    assert httpx.get(f"{live.root}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.root}/readyz")
    assert ready.status_code == 200 and ready.json()["backends_ready"] == ["f"]


def test_a_prompt_too_long_for_every_candidate_is_openais_context_length_exceeded() -> None:
    """Clients (and the SDKs' users) trim on this code; a 422 about policies would leave them stuck."""
    import openai

    raw = {"backends": {"f": {"type": "fake"}},
           "models": {"tiny": {"backend": "f", "context_window": 256},
                      "small": {"backend": "f", "context_window": 512}},
           "routes": {"both": {"models": ["tiny", "small"]}}}
    with live_gateway(raw) as g:
        long = [{"role": "user", "content": "word " * 1000}]
        resp = httpx.post(f"{g.base_url}/chat/completions", json={"model": "both", "messages": long})
        assert resp.status_code == 400
        err = resp.json()["error"]
        assert (err["code"], err["param"], err["type"]) == ("context_length_exceeded", "messages",
                                                             "invalid_request_error")
        assert "tiny: context window 256 is too small" in err["message"]
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="both", messages=long)  # type: ignore[arg-type]
        assert caught.value.code == "context_length_exceeded"
        # A short one fits.
        ok = httpx.post(f"{g.base_url}/chat/completions", json={"model": "both", "messages": msgs()})
        assert ok.status_code == 200
        # A short prompt with a max_tokens no window has room for: the param to change is max_tokens.
        big = httpx.post(f"{g.base_url}/chat/completions",
                         json={"model": "both", "messages": msgs(), "max_tokens": 4096})
        err = big.json()["error"]
        assert big.status_code == 400 and (err["code"], err["param"]) == ("context_length_exceeded", "max_tokens")
        assert "send max_tokens of at most about" in err["message"]


def test_when_every_attempt_fails_the_models_routing_left_out_are_named_too() -> None:
    """A last-resort model left out for its window must not vanish from the error the client reads."""
    raw = {"backends": {"f": {"type": "fake"}},
           "models": {"down": {"backend": "f", "upstream": "error-503"},
                      "tiny": {"backend": "f", "context_window": 256}},
           "routes": {"main": {"models": ["down", "tiny"]}}}
    with live_gateway(raw) as g:
        resp = httpx.post(f"{g.base_url}/chat/completions",
                          json={"model": "main", "messages": msgs(), "max_tokens": 4096})
    message = resp.json()["error"]["message"]
    assert resp.status_code >= 500 and "left out before trying: tiny: context window 256 is too small" in message
