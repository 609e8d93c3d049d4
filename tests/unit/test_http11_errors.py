"""A bug of ours while a request is read: logged, answered 500 in the OpenAI shape, never a traceback."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from polyroute.server.answers import Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Connection, Request, Shared


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closed = False
        self.eof_written = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += bytes(data)

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed


class _Broken(Connection):
    def on_header(self, name: bytes, value: bytes) -> None:
        raise RuntimeError("a bug in a parser callback")


async def _hello(request: Request) -> Reply:
    return Reply(b"{}")


def test_a_failing_parser_callback_is_logged_and_answered_500(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> _Transport:
        app = App({"/": {"GET": _hello}}, max_body=1024)
        conn = _Broken(Shared(app, app.max_body, asyncio.get_running_loop()))
        transport = _Transport()
        conn.connection_made(transport)
        conn.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert conn.task is not None
        await conn.task
        return transport

    with caplog.at_level(logging.ERROR, logger="polyroute.server"):
        transport = asyncio.run(main())
    head, _, body = transport.out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
    assert orjson.loads(body)["error"]["code"] == "internal_error"
    # Our end shut after the answer (a lingering close: what the client still sends is dropped).
    assert b"RuntimeError" not in transport.out and transport.eof_written
    assert "unexpected error while reading a request" in caplog.text and "RuntimeError" in caplog.text
