"""Errors made before the Messages handler runs (by the connection, the router, the door) reach an Anthropic
client in Anthropic's shape, with a ``request-id``; the same errors elsewhere stay in OpenAI's."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from polyroute.server.answers import Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from polyroute.server.messages_errors import OnMessagesPaths
from polyroute.server.serving import Server
from tests.support.http11_app import Answered, Wire, post
from tests.support.live import Live, live_gateway
from tests.support.wait import TIMEOUT

LIMIT = 4096
ENV = {"A_KEY": "sk-a-0123456789abcdef"}
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {
        "gateway": {"max_body_bytes": LIMIT, "header_timeout": 1.0, "body_timeout": 0.5},
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}},
        "keys": {"a": {"secret": "env:A_KEY"}},
    }
    with live_gateway(raw, env=ENV) as g:
        yield g


@pytest.fixture
def client(live: Live) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.root, api_key=ENV["A_KEY"], max_retries=0)


def anthropic_doc(status: int, headers: Any, body: bytes | str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"} and doc["error"]["message"]
    assert headers["content-type"] == "application/json"
    assert headers["request-id"].startswith("req_") and doc["request_id"] == headers["request-id"]
    return doc


def over_the_wire(live: Live, data: bytes) -> Answered:
    w = Wire(int(live.root.rsplit(":", 1)[1]))
    try:
        w.send(data)
        return w.answer()
    finally:
        w.close()


def test_a_body_over_the_limit_is_the_sdks_request_too_large(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        client.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "x" * 2 * LIMIT}])
    doc = anthropic_doc(413, caught.value.response.headers, caught.value.response.content)
    assert doc["error"]["type"] == "request_too_large" and f"limit of {LIMIT} bytes" in doc["error"]["message"]
    assert caught.value.request_id == doc["request_id"]


def test_count_tokens_over_the_limit_too(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        client.messages.count_tokens(model="echo", messages=[{"role": "user", "content": "x" * 2 * LIMIT}])
    assert anthropic_doc(413, caught.value.response.headers, caught.value.response.content)["error"]["type"] \
        == "request_too_large"


def test_a_method_the_path_does_not_serve_is_a_405_naming_the_one_it_does(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.get("/v1/messages", cast_to=object)
    response = caught.value.response
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    doc = anthropic_doc(405, response.headers, response.content)
    assert doc["error"]["type"] == "invalid_request_error" and "GET is not allowed" in doc["error"]["message"]


def test_an_api_of_anthropics_the_gateway_does_not_serve_is_the_sdks_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.list()
    doc = anthropic_doc(404, caught.value.response.headers, caught.value.response.content)
    assert doc["error"]["type"] == "not_found_error" and "/v1/messages/batches" in doc["error"]["message"]
    assert caught.value.request_id == doc["request_id"]


def test_a_base_url_that_holds_v1_already_is_told_to_drop_it(live: Live) -> None:
    doubled = anthropic.Anthropic(base_url=live.base_url, api_key=ENV["A_KEY"], max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        doubled.messages.create(model="echo", max_tokens=8, messages=HI)
    doc = anthropic_doc(404, caught.value.response.headers, caught.value.response.content)
    assert "/v1/v1/messages" in doc["error"]["message"] and "without /v1" in doc["error"]["message"]


@pytest.mark.parametrize(("framing", "status"), [
    (b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}", 415),
    (b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501),
])
def test_a_body_coding_the_gateway_does_not_take(live: Live, framing: bytes, status: int) -> None:
    answered = over_the_wire(live, b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                   + framing)
    assert answered.status == status
    doc = anthropic_doc(status, answered.headers, answered.body)
    assert doc["error"]["type"] == ("invalid_request_error" if status < 500 else "api_error")


def test_bytes_that_are_not_http_and_a_head_over_the_limit(live: Live) -> None:
    answered = over_the_wire(live, b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
    assert answered.status == 400
    assert "not valid HTTP/1.1" in anthropic_doc(400, answered.headers, answered.body)["error"]["message"]
    answered = over_the_wire(live, b"POST /v1/messages HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    assert answered.status == 431
    assert anthropic_doc(431, answered.headers, answered.body)["error"]["type"] == "invalid_request_error"


def test_a_body_that_does_not_arrive_in_time_is_a_408(live: Live) -> None:
    # The answer is read as the gateway sends it: its body deadline (0.5 s) passes while it waits for the rest.
    answered = over_the_wire(live, b"POST /v1/messages/count_tokens HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n"
                                   b"x-api-key: " + ENV["A_KEY"].encode() + b"\r\n\r\n{\"model\"")
    assert answered.status == 408
    doc = anthropic_doc(408, answered.headers, answered.body)
    assert doc["error"]["type"] == "invalid_request_error" and "did not arrive within 0.5 s" in doc["error"]["message"]


def test_a_head_that_does_not_arrive_in_time_is_a_408(live: Live) -> None:
    # The request line came, the end of the head never does: the answer is read as its deadline (1 s) passes.
    answered = over_the_wire(live, b"POST /v1/messages HTTP/1.1\r\nHost: t\r\n")
    assert answered.status == 408
    doc = anthropic_doc(408, answered.headers, answered.body)
    assert "headers did not arrive within 1 s" in doc["error"]["message"]


def test_a_wrong_key_on_count_tokens_carries_a_request_id(live: Live) -> None:
    r = httpx.post(f"{live.root}/v1/messages/count_tokens", json={"model": "echo", "messages": HI},
                   headers={"x-api-key": "sk-wrong"}, timeout=10)
    assert r.status_code == 401
    assert anthropic_doc(401, r.headers, r.content)["error"]["type"] == "authentication_error"


def test_the_same_errors_elsewhere_stay_in_openais_shape(live: Live) -> None:
    headers = {"authorization": f"Bearer {ENV['A_KEY']}"}
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 2 * LIMIT}]}
    r = httpx.post(f"{live.base_url}/chat/completions", json=big, headers=headers, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] and "request-id" not in r.headers
    r = httpx.get(f"{live.base_url}/chat/completions", headers=headers, timeout=10)
    assert r.status_code == 405 and set(r.json()) == {"error"}
    r = httpx.get(f"{live.base_url}/messagesx", headers=headers, timeout=10)
    assert r.status_code == 404 and set(r.json()) == {"error"}


def test_a_whole_answer_cut_by_a_stop_is_anthropics_503() -> None:
    started = threading.Event()

    async def never(request: Request) -> Reply:
        started.set()
        await asyncio.Event().wait()  # computed until the stop's grace ends
        return Reply(b"{}")

    app = App({"/v1/messages": {"POST": never}}, max_body=LIMIT, error_shape=OnMessagesPaths())
    server = Server(app, grace=0.2)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])), daemon=True)
    thread.start()
    assert server.started.wait(TIMEOUT)
    w = Wire(int(sock.getsockname()[1]))
    try:
        w.send(post("/v1/messages", b"{}"))
        assert started.wait(TIMEOUT)
        server.stop()
        answered = w.answer()
    finally:
        w.close()
        server.stop()
        thread.join(timeout=TIMEOUT)
        sock.close()
    assert answered.status == 503
    doc = anthropic_doc(503, answered.headers, answered.body)
    assert doc["error"]["type"] == "overloaded_error" and "shutting down" in doc["error"]["message"]
