"""``Expect: 100-continue`` through the real gateway: a refused key gets its final answer, never a 100."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_policy_http import ENV, RAW
from tests.support.http11_app import Wire
from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

MAX_BODY = 64 * 1024
BODY = json.dumps({"model": "cheap", "messages": [{"role": "user", "content": "hello"}]}).encode()
ADMIN = "sk-admin-expect-0b9e"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("expect") / "store.db"
    raw: dict[str, Any] = {**RAW, "gateway": {"max_body_bytes": MAX_BODY}, "admin": {"secret": "env:ADMIN_KEY"},
                           "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05}}
    with live_gateway(raw, env={**ENV, "ADMIN_KEY": ADMIN}) as g:
        yield g


def _wire(live: Live) -> Wire:
    return Wire(int(live.base_url.rsplit(":", 1)[1].split("/")[0]))


def _head(path: str, length: int, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n").encode()


@pytest.mark.parametrize("key", ["sk-wrong-123", None, ENV["OLD_KEY"]])
def test_a_refused_key_gets_its_401_before_any_body_and_never_a_100(live: Live, key: str | None) -> None:
    w = _wire(live)
    w.send(_head("/v1/chat/completions", len(BODY), key))
    a = w.answer()  # the body was never sent: the answer comes without it
    assert a.status == 401 and a.error()["type"] == "authentication_error"
    assert a.headers["connection"] == "close" and a.headers["x-request-id"].startswith("req_")
    # A client that sends its body all the same (it need not wait) is not reset: what it sends is dropped,
    # and the connection ends.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        w.send(BODY)
    assert w.at_eof()
    assert b"100 Continue" not in w.buf
    w.close()


def test_a_refused_key_is_counted_like_any_refusal(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.access")
    w = _wire(live)
    w.send(_head("/v1/chat/completions", len(BODY), "sk-wrong-123"))
    rid = w.answer().headers["x-request-id"]
    w.close()
    wait_until(lambda: any(rid in r.getMessage() for r in caplog.records), what="the access log line")
    line = next(r.getMessage() for r in caplog.records if rid in r.getMessage())
    assert "status=401" in line and "error=invalid_api_key" in line


def test_a_valid_key_gets_100_then_its_answer_and_the_connection_goes_on(live: Live) -> None:
    w = _wire(live)
    w.send(_head("/v1/chat/completions", len(BODY), ENV["PARTNER_KEY"]))
    assert w.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.send(BODY)
    a = w.answer()
    assert a.status == 200 and json.loads(a.body)["object"] == "chat.completion"
    assert "connection" not in a.headers
    w.send(_head("/v1/chat/completions", len(BODY), ENV["PARTNER_KEY"]))  # the same connection, again
    assert w.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.send(BODY)
    assert w.answer().status == 200
    w.close()


def test_a_body_over_the_limit_gets_413_without_100_even_with_a_valid_key(live: Live) -> None:
    w = _wire(live)
    w.send(_head("/v1/chat/completions", MAX_BODY * 2, ENV["PARTNER_KEY"]))
    a = w.answer()
    assert a.status == 413 and a.error()["code"] == "request_too_large"
    assert a.headers["connection"] == "close" and w.at_eof()
    assert b"100 Continue" not in w.buf
    w.close()


def test_the_admin_api_refuses_a_wrong_key_before_the_body_too(live: Live) -> None:
    body = b'{"name": "x"}'
    w = _wire(live)
    w.send(_head("/admin/keys", len(body), "sk-not-admin"))
    a = w.answer()
    assert a.status == 403 and a.headers["connection"] == "close" and w.at_eof()
    w.close()
    w = _wire(live)
    w.send(_head("/admin/keys", len(body), ADMIN))
    assert w.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.close()


def test_paths_that_take_no_key_still_get_100(live: Live) -> None:
    w = _wire(live)
    w.send(_head("/v1/unknown", 2, None))
    assert w.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.send(b"{}")
    assert w.answer().status == 404
    w.close()


def test_a_client_that_sent_its_body_without_waiting_gets_one_answer(live: Live) -> None:
    # Head and body in one write, as a client that does not wait sends them: one final answer, nothing after.
    w = _wire(live)
    w.send(_head("/v1/chat/completions", len(BODY), "sk-wrong-123") + BODY)
    assert w.answer().status == 401
    assert w.at_eof() and w.buf == b""
    w.close()
