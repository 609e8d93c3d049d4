"""The query string reaches the handler apart from the path, parsed only when it asks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from polyroute.server.answers import Answer, Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from tests.support.live import serve_app


async def show(request: Request) -> Answer:
    return Reply(json.dumps({"path": request.path, "query": request.query.decode("latin-1"),
                             "params": request.params(), "by": request.param("by")}).encode())


@pytest.fixture(scope="module")
def root() -> Iterator[str]:
    with serve_app(App({"/show": {"GET": show}}, max_body=1024)) as url:
        yield url


@pytest.mark.parametrize(("target", "query", "params", "by"), [
    ("/show", "", {}, None),
    ("/show?", "", {}, None),
    ("/show?by=key&since=7d", "by=key&since=7d", {"by": ["key"], "since": ["7d"]}, "key"),
    ("/show?by=team&by=key", "by=team&by=key", {"by": ["team", "key"]}, "team"),
    ("/show?since=2026-01-01T00%3A00%3A00%2B00%3A00&x=a+b&empty=",
     "since=2026-01-01T00%3A00%3A00%2B00%3A00&x=a+b&empty=",
     {"since": ["2026-01-01T00:00:00+00:00"], "x": ["a b"], "empty": [""]}, None),
])
def test_the_query_string_is_kept_apart_and_parsed(
    root: str, target: str, query: str, params: dict[str, list[str]], by: str | None
) -> None:
    resp = httpx.get(root + target, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"path": "/show", "query": query, "params": params, "by": by}


def test_a_query_string_does_not_change_which_handler_answers(root: str) -> None:
    assert httpx.get(f"{root}/nowhere?path=/show", timeout=10).status_code == 404


def test_a_query_string_split_over_several_reads_is_whole(root: str) -> None:
    host, port = root.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for part in (b"GET /show?by=mo", b"del&since=1", b"d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            sock.sendall(part)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["params"] == {"by": ["model"], "since": ["1d"]}
