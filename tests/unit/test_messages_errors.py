"""The error hook of the HTTP layer and the router: Anthropic's shape on the Messages paths, nothing changed
elsewhere, and a handler's bug on a Messages path is Anthropic's api_error."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from polyroute.errors import BodyTooLarge, Unauthorized
from polyroute.server.answers import Reply
from polyroute.server.dispatch import App
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.server.messages_errors import OnMessagesPaths, anthropic_error


def test_messages_paths_get_anthropics_shape_with_their_status_headers_and_an_id() -> None:
    hook = OnMessagesPaths()
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches"):
        shaped = hook(path, error_response(BodyTooLarge("Request body is over the limit of 9 bytes.")))
        doc = orjson.loads(shaped.body)
        assert shaped.status == 413 and shaped.headers["content-type"] == "application/json"
        assert doc == {"type": "error", "error": {"type": "request_too_large",
                                                 "message": "Request body is over the limit of 9 bytes."},
                       "request_id": shaped.headers["request-id"]}
    first, second = (hook("/v1/messages", Reply(b"{}", 400)).headers["request-id"] for _ in range(2))
    assert first != second and first.startswith("req_")


def test_other_paths_are_left_as_they_were() -> None:
    hook = OnMessagesPaths()
    for path in ("/v1/chat/completions", "/v1/messagesx", "", "/v1/responses"):
        error = error_response(Unauthorized("no key"))
        assert hook(path, error) is error


def test_an_error_already_in_anthropics_shape_keeps_its_id() -> None:
    once = anthropic_error(Reply(orjson.dumps({"error": {"message": "no"}}), 401), "req_1")
    twice = OnMessagesPaths()("/v1/messages", once)
    assert twice.body == once.body and twice.headers["request-id"] == "req_1"


def test_a_gateway_id_wins_over_a_made_one() -> None:
    shaped = anthropic_error(Reply(b'{"error": {"message": "slow"}}', 429, {"x-polyroute-request-id": "req_g"}),
                             "req_made")
    assert shaped.headers["request-id"] == "req_g" and orjson.loads(shaped.body)["request_id"] == "req_g"


def test_a_body_that_is_not_json_becomes_the_message() -> None:
    shaped = anthropic_error(Reply(b"gateway trouble", 502), "req_x")
    doc = orjson.loads(shaped.body)
    assert doc["error"] == {"type": "api_error", "message": "gateway trouble"}


async def _broken(request: Request) -> Reply:
    raise RuntimeError("a bug of ours")


def test_a_handlers_bug_on_a_messages_path_is_anthropics_api_error(caplog: pytest.LogCaptureFixture) -> None:
    app = App({"/v1/messages": {"POST": _broken}, "/v1/chat/completions": {"POST": _broken}}, max_body=1024,
              error_shape=OnMessagesPaths())
    with caplog.at_level(logging.ERROR, logger="polyroute.server"):
        messages = asyncio.run(app(Request("POST", "/v1/messages", [], b"{}", True)))
        chat = asyncio.run(app(Request("POST", "/v1/chat/completions", [], b"{}", True)))
    assert isinstance(messages, Reply) and isinstance(chat, Reply)
    assert messages.status == chat.status == 500
    assert orjson.loads(messages.body)["error"]["type"] == "api_error" and "request-id" in messages.headers
    assert orjson.loads(chat.body)["error"]["code"] == "internal_error"
    assert "a bug of ours" in caplog.text
