"""The HTTP/1.1 server on real sockets: keep-alive, pipelining, request bodies, limits and errors."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from polyroute.server.http11 import LINGER_S
from tests.support.http11_app import MAX_BODY, Probe, Wire, get, post

# --- connections ----------------------------------------------------------------------


def test_several_requests_on_one_keep_alive_connection(port: int) -> None:
    w = Wire(port)
    for i in range(3):
        w.send(post("/echo", b"request %d" % i))
        a = w.answer()
        assert (a.status, a.body) == (200, b"request %d" % i) and "connection" not in a.headers
    assert not w.at_eof(timeout=0.2)  # still open for the next one
    w.close()


def test_http10_without_keep_alive_gets_connection_close_and_the_socket_closes(port: int) -> None:
    w = Wire(port)
    w.send(b"GET /hello HTTP/1.0\r\nHost: test\r\n\r\n")
    a = w.answer()
    assert (a.status, a.headers["connection"], a.body) == (200, "close", b'{"hello": "world"}')
    assert w.at_eof()


def test_requests_pipelined_behind_connection_close_are_neither_served_nor_answered(port: int, probe: Probe) -> None:
    w = Wire(port)
    before = probe.wheres
    # One read holds both: the first is answered in the callback still reading the second.
    w.send(get("/hello", "Connection: close\r\n") + get("/where"))
    a = w.answer()
    assert (a.status, a.headers["connection"], a.body) == (200, "close", b'{"hello": "world"}')
    assert w.at_eof() and w.buf == b""
    assert probe.wheres == before


def test_a_stream_to_an_http10_client_is_not_chunked_and_ends_with_the_connection(port: int) -> None:
    w = Wire(port)
    w.send(b"GET /three HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n")
    head = w.until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    body = w.buf
    while chunk := w.sock.recv(65536):
        body += chunk
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    w.close()


def test_a_request_is_served_in_the_callback_that_read_it(port: int) -> None:
    w = Wire(port)
    w.send(get("/where"))
    assert json.loads(w.answer().body) == {"in_data_received": True}
    w.send(get("/slow") + get("/where"))  # pipelined behind another: served by the connection's task
    assert w.answer().body == b"slow"
    assert json.loads(w.answer().body) == {"in_data_received": False}
    w.close()


def test_pipelined_requests_come_back_in_order(port: int, probe: Probe) -> None:
    probe.delay = 0.2  # the first answer is the slowest: the others must still wait their turn
    w = Wire(port)
    w.send(get("/slow") + post("/echo", b"second") + get("/hello"))
    assert [w.answer().body for _ in range(3)] == [b"slow", b"second", b'{"hello": "world"}']
    w.close()


def test_a_chunked_request_body_reaches_the_handler_whole(port: int) -> None:
    w = Wire(port)
    w.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"first ", b"second ", b"x" * 300):
        w.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.01)
    w.send(b"0\r\n\r\n")
    a = w.answer()
    assert (a.status, a.body) == (200, b"first second " + b"x" * 300)
    w.close()


def test_expect_100_continue_is_answered_before_the_body_is_sent(port: int) -> None:
    w = Wire(port)
    w.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert w.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.send(b"hello")
    a = w.answer()
    assert (a.status, a.body) == (200, b"hello")
    w.close()


def test_expect_100_continue_with_a_body_over_the_limit_gets_413_at_once(port: int) -> None:
    w = Wire(port)
    w.send(f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {MAX_BODY * 4}\r\n"
           "Expect: 100-continue\r\n\r\n".encode())
    a = w.answer()  # without sending the body: no 100 Continue, no waiting for it
    assert a.status == 413 and a.error()["code"] == "request_too_large"
    assert a.headers.get("connection") == "close"
    assert w.at_eof()
    w.close()


# --- limits and errors ----------------------------------------------------------------


def test_bodies_over_the_limit_get_413_and_the_connection_goes_on(port: int) -> None:
    w = Wire(port)
    w.send(post("/echo", b"x" * (MAX_BODY * 4)))  # declared, and sent whole
    a = w.answer()
    assert a.status == 413 and a.error()["code"] == "request_too_large"
    w.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    w.send(b"%x\r\n%s\r\n" % (MAX_BODY // 2 + 1, b"y" * (MAX_BODY // 2 + 1)) * 3 + b"0\r\n\r\n")
    a = w.answer()
    assert a.status == 413 and a.error()["code"] == "request_too_large"
    w.send(post("/echo", b"z" * MAX_BODY))  # at the limit: accepted, on the same connection
    assert w.answer().body == b"z" * MAX_BODY
    w.close()


def test_a_head_over_64k_gets_431_and_the_connection_closes(port: int) -> None:
    w = Wire(port)
    w.send(get("/hello", "X-Big: " + "a" * (70 * 1024) + "\r\n"))
    a = w.answer()
    assert a.status == 431 and a.headers["connection"] == "close"
    assert a.error()["code"] == "request_header_fields_too_large"
    assert w.at_eof()


def test_a_head_that_never_ends_gets_431_before_its_end(port: int) -> None:
    w = Wire(port)
    w.send(b"GET /hello HTTP/1.1\r\nHost: test\r\n")
    for i in range(80):  # 80 KiB of headers, and never the empty line that ends them
        w.send(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1024))
    a = w.answer()
    assert a.status == 431 and a.headers["connection"] == "close"
    assert w.at_eof()


def test_a_body_that_goes_on_far_past_the_limit_gets_413_before_its_end(port: int) -> None:
    w = Wire(port)
    w.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (MAX_BODY, b"y" * MAX_BODY)
    for _ in range(5):  # five times the limit, and never the last chunk
        w.send(piece)
    a = w.answer()
    assert a.status == 413 and a.headers["connection"] == "close"
    assert w.at_eof()


def test_a_client_still_sending_when_refused_is_not_reset(port: int) -> None:
    # Refused after 64 KiB of head while more is coming: the server shuts its end and drops the
    # rest for a while (a lingering close). Closing at once would reset the connection under a
    # client still sending, and one that reads only once it has sent all would lose the answer.
    w = Wire(port)
    w.send(b"GET /hello HTTP/1.1\r\nHost: test\r\n" + b"X-Pad: %s\r\n" % (b"a" * 1000) * 70)
    a = w.answer()
    assert a.status == 431 and a.headers["connection"] == "close"
    for _ in range(20):  # the client goes on sending its head after the answer came
        w.send(b"X-Pad: %s\r\n" % (b"a" * 1000))
        time.sleep(0.005)
    assert w.at_eof()


def test_a_client_that_goes_on_sending_is_cut_after_the_linger_time(port: int) -> None:
    w = Wire(port)
    sent = time.monotonic()  # no later than the server's refusal, when the linger time begins
    w.send(b"GET /hello HTTP/1.1\r\nHost: test\r\n" + b"X-Pad: %s\r\n" % (b"a" * 1000) * 70)
    assert w.answer().status == 431
    with pytest.raises(OSError):  # a broken pipe or a reset, once the server has closed
        while time.monotonic() - sent < 10 * LINGER_S:
            w.send(b"a" * 100)
            time.sleep(0.05)  # a client that goes on sending, a little at a time
    assert LINGER_S <= time.monotonic() - sent < 10 * LINGER_S  # cut after the linger time, not kept on
    w.close()


def test_garbage_gets_400_and_the_connection_closes(port: int) -> None:
    w = Wire(port)
    w.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
    a = w.answer()
    assert a.status == 400 and a.headers["connection"] == "close"
    assert a.error()["type"] == "invalid_request_error"
    assert w.at_eof()


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(root: str) -> None:
    with httpx.Client(base_url=root, timeout=3) as c:
        missing = c.get("/nowhere")
        assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
        assert "/nowhere" in missing.json()["error"]["message"]
        assert missing.json()["error"]["code"] == "not_found"
        wrong = c.delete("/echo")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST, PUT"
        assert wrong.json()["error"]["type"] == "invalid_request_error"
        assert wrong.json()["error"]["code"] == "method_not_allowed"
        # A long path is quoted back cut short, not in full.
        long = c.get("/x" * 20000)
        assert long.status_code == 404 and len(long.content) < 1000 and "(40000 characters)" in long.text


def test_head_is_a_gets_status_and_length_without_its_body(root: str) -> None:
    """Load balancers' health checks use HEAD."""
    with httpx.Client(base_url=root, timeout=3) as c:
        got = c.get("/hello")
        head = c.head("/hello")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        assert c.head("/nowhere").status_code == 404
        assert c.head("/echo").status_code == 405  # no GET there
        assert c.get("/hello").json() == {"hello": "world"}  # the connection stays in step


def test_an_absolute_form_target_is_served_by_its_path(port: int) -> None:
    w = Wire(port)
    w.send(f"POST http://127.0.0.1:{port}/echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi".encode())
    a = w.answer()
    assert (a.status, a.body) == (200, b"hi")
    w.send(b"GET https://test HTTP/1.1\r\nHost: test\r\n\r\n")
    assert w.answer().status == 404  # the path "/": nothing there
    w.close()


@pytest.mark.parametrize(("header", "status", "code"), [
    ("Content-Encoding: gzip", 415, "unsupported_content_encoding"),
    ("Content-Encoding: br", 415, "unsupported_content_encoding"),
    ("Transfer-Encoding: gzip, chunked", 501, "unsupported_transfer_encoding"),
])
def test_a_body_in_a_coding_not_decoded_is_refused_by_its_coding(
        port: int, header: str, status: int, code: str) -> None:
    """Read as it came, a gzip body is JSON's garbage (a 400 that misleads) or, labelled but plain, wrongly taken."""
    import gzip

    body = gzip.compress(b'{"hello": "world"}')
    w = Wire(port)
    if header.startswith("Transfer"):
        w.send(f"POST /echo HTTP/1.1\r\nHost: test\r\n{header}\r\n\r\n".encode()
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    else:
        w.send(f"POST /echo HTTP/1.1\r\nHost: test\r\n{header}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
               + body)
    a = w.answer()
    assert a.status == status and a.error()["code"] == code
    assert header.split(": ")[1].split(",")[0] in a.error()["message"]
    w.send(post("/echo", b"plain"))  # the body was read whole: the connection goes on
    assert w.answer().body == b"plain"
    w.close()
    # Content-Encoding: identity is no coding at all.
    w2 = Wire(port)
    w2.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\nok")
    assert w2.answer().body == b"ok"
    w2.close()


def test_a_handler_that_raises_gets_500_without_its_traceback(root: str) -> None:
    with httpx.Client(base_url=root, timeout=3) as c:
        r = c.get("/boom")
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error" and set(r.json()["error"]) == {
            "message", "type", "param", "code"}
        assert "Traceback" not in r.text and "secret-detail" not in r.text and "RuntimeError" not in r.text
        assert c.get("/hello").status_code == 200  # the same connection, still serving
