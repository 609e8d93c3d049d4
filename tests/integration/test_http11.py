"""The HTTP/1.1 server on real sockets: keep-alive, pipelining, limits, errors, clients that leave, stopping."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from polyroute.server.answers import Answer, Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from polyroute.server.serving import Server
from polyroute.server.sse import EventStream
from tests.support.live import serve_app

MAX_BODY = 1024
FRAMES = 12_000  # about 12 MB of stream: more than loopback buffers hold while the client does not read


@dataclass
class Probe:
    """What the handlers did, seen from the test's thread."""

    delay: float = 0.5
    repeat: int = 1  # /slow answers "slow" this many times
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stream_closed: threading.Event = field(default_factory=threading.Event)
    produced: int = 0


def make_app(probe: Probe) -> App:
    async def hello(request: Request) -> Answer:
        return Reply(b'{"hello": "world"}')

    async def echo(request: Request) -> Answer:
        return Reply(request.body, content_type="application/octet-stream")

    async def slow(request: Request) -> Answer:
        try:
            await asyncio.sleep(probe.delay)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        probe.finished.set()
        return Reply(b"slow" * probe.repeat, content_type="text/plain")

    async def boom(request: Request) -> Answer:
        raise RuntimeError("secret-detail-of-the-bug")

    async def stalled() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            await asyncio.sleep(30)
            yield b"data: never\n\n"
        finally:
            probe.stream_closed.set()

    async def big() -> AsyncIterator[bytes]:
        for i in range(FRAMES):
            if i % 16 == 0:
                await asyncio.sleep(0)  # frames come in batches, as from an upstream
            probe.produced = i + 1
            yield b"data: %06d %s\n\n" % (i, b"x" * 1000)

    async def stream(request: Request) -> Answer:
        return EventStream(stalled(), {})

    async def big_stream(request: Request) -> Answer:
        return EventStream(big(), {})

    async def three() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield b"data: %d\n\n" % i

    async def short_stream(request: Request) -> Answer:
        return EventStream(three(), {})

    return App(
        {
            "/hello": {"GET": hello},
            "/echo": {"POST": echo, "PUT": echo},
            "/slow": {"GET": slow},
            "/boom": {"GET": boom},
            "/stream": {"GET": stream},
            "/big": {"GET": big_stream},
            "/three": {"GET": short_stream},
        },
        max_body=MAX_BODY,
    )


@dataclass
class Answered:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The OpenAI error object, checked for its shape."""
        assert self.headers["content-type"] == "application/json"
        doc = json.loads(self.body)
        assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}
        assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
        return dict(doc["error"])


class Wire:
    """A raw client connection; answers are read back one at a time."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(3)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unread: {self.buf[:200]!r}")
        self.buf += data

    def until(self, marker: bytes) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            self._fill()
        out, self.buf = self.buf[: i + len(marker)], self.buf[i + len(marker) :]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self) -> Answered:
        status_line, *lines = self.until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self.exactly(int(headers["content-length"]))
        else:
            assert headers.get("transfer-encoding") == "chunked"
            parts = []
            while size := int(self.until(b"\r\n")[:-2], 16):
                parts.append(self.exactly(size + 2)[:-2])
            assert self.until(b"\r\n") == b"\r\n"
            body = b"".join(parts)
        return Answered(int(status_line.split()[1]), headers, body)

    def at_eof(self, timeout: float = 2.0) -> bool:
        """True when the server closes the connection within ``timeout`` (nothing else arriving)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        assert data == b"", f"unexpected bytes: {data[:200]!r}"
        return True

    def close(self) -> None:
        self.sock.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def root(probe: Probe) -> Iterator[str]:
    with serve_app(make_app(probe)) as url:
        yield url


@pytest.fixture
def port(root: str) -> int:
    return int(root.rsplit(":", 1)[1])


@contextmanager
def own_server(probe: Probe, keep_alive: float = 5.0) -> Iterator[tuple[Server, int]]:
    """Like serve_app, with the Server in the test's hands (to stop it, or to idle out faster)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server(make_app(probe), keep_alive=keep_alive, grace=5.0)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])), daemon=True)
    thread.start()
    assert server.started.wait(5)
    try:
        yield server, int(sock.getsockname()[1])
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


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
        wrong = c.delete("/echo")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST, PUT"
        assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_handler_that_raises_gets_500_without_its_traceback(root: str) -> None:
    with httpx.Client(base_url=root, timeout=3) as c:
        r = c.get("/boom")
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error" and set(r.json()["error"]) == {
            "message", "type", "param", "code"}
        assert "Traceback" not in r.text and "secret-detail" not in r.text and "RuntimeError" not in r.text
        assert c.get("/hello").status_code == 200  # the same connection, still serving


# --- clients that leave, clients that read slowly -------------------------------------


def test_a_client_leaving_mid_stream_closes_the_stream_at_once(port: int, root: str, probe: Probe) -> None:
    probe.stream_closed.clear()
    w = Wire(port)
    w.send(get("/stream"))
    assert b"text/event-stream" in w.until(b"\r\n\r\n")
    w.until(b"data: 1\n\n")
    assert not probe.stream_closed.is_set()
    w.close()  # while the stream waits 30 s for its next frame
    assert probe.stream_closed.wait(1.0), "the stream's generator was not closed when its client left"
    assert httpx.get(f"{root}/hello", timeout=3).status_code == 200


def test_a_slow_reader_of_a_large_stream_gets_every_frame_in_order(port: int, probe: Probe) -> None:
    probe.produced = 0
    w = Wire(port, rcvbuf=16 * 1024)
    w.send(get("/big"))
    time.sleep(1.0)  # not reading
    assert 0 < probe.produced < FRAMES, "the stream did not wait for its reader"
    w.sock.settimeout(5)
    a = w.answer()
    assert a.status == 200
    frames = a.body.split(b"\n\n")
    assert frames.pop() == b"" and len(frames) == FRAMES
    for i, frame in enumerate(frames):
        assert frame == b"data: %06d %s" % (i, b"x" * 1000), f"frame {i} damaged"
    w.close()


def test_a_whole_answer_runs_to_its_end_when_its_client_left(port: int, root: str, probe: Probe) -> None:
    probe.delay = 0.5
    probe.finished.clear()
    probe.cancelled.clear()
    w = Wire(port)
    w.send(get("/slow"))
    time.sleep(0.1)
    w.close()
    assert probe.finished.wait(2.0) and not probe.cancelled.is_set()
    assert httpx.get(f"{root}/hello", timeout=3).status_code == 200


# --- stopping and idle connections ----------------------------------------------------


def test_graceful_stop_finishes_the_answer_in_flight_and_refuses_new_connections() -> None:
    probe = Probe(delay=1.0)
    with own_server(probe) as (server, port):
        w = Wire(port)
        w.send(get("/slow"))
        time.sleep(0.2)  # the handler is running
        server.stop()
        time.sleep(0.2)  # stop() is taken up by the server's loop
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert not probe.finished.is_set()  # still in flight while new connections were refused
        a = w.answer()
        assert (a.status, a.body) == (200, b"slow")
        assert a.headers.get("connection") == "close", f"no connection: close at stop: {a.headers}"
        assert w.at_eof()
        assert not probe.cancelled.is_set()


def test_a_large_answer_in_flight_at_stop_arrives_whole() -> None:
    probe = Probe(delay=0.5, repeat=4 * 1024 * 1024)  # 16 MB: more than the socket buffers hold
    with own_server(probe) as (server, port):
        w = Wire(port, rcvbuf=16 * 1024)
        w.send(get("/slow"))
        time.sleep(0.2)
        server.stop()
        w.sock.settimeout(5)
        try:
            a = w.answer()
        except EOFError:
            pytest.fail(f"the answer was cut at stop: {len(w.buf)} bytes of its body arrived")
        assert (a.status, len(a.body)) == (200, len(b"slow") * probe.repeat)


def test_idle_keep_alive_connections_are_closed_at_stop() -> None:
    with own_server(Probe()) as (server, port):
        idle = [Wire(port) for _ in range(2)]
        for w in idle:
            w.send(get("/hello"))
            assert w.answer().status == 200
        began = time.monotonic()
        server.stop()
        assert all(w.at_eof(timeout=1.0) for w in idle)
        assert time.monotonic() - began < 1.0


def test_the_idle_sweep_closes_idle_connections_after_keep_alive_and_leaves_busy_ones() -> None:
    keep_alive = 0.5
    probe = Probe(delay=1.6)  # an answer longer than keep_alive, across at least one sweep
    with own_server(probe, keep_alive=keep_alive) as (_, port):
        busy, idle = Wire(port), Wire(port)
        busy.send(get("/slow"))
        idle.send(get("/hello"))
        assert idle.answer().status == 200
        idle_since = time.monotonic()
        assert idle.at_eof(timeout=3.0), "an idle connection outlived keep_alive"
        assert keep_alive <= time.monotonic() - idle_since <= 2.5  # the sweep runs every second
        a = busy.answer()
        assert (a.status, a.body) == (200, b"slow") and not probe.cancelled.is_set()


def test_a_body_still_coming_in_is_not_idle() -> None:
    keep_alive = 0.5
    with own_server(Probe(), keep_alive=keep_alive) as (_, port):
        w = Wire(port)
        parts = [b"slow-", b"upload-", b"over-", b"two-", b"sweeps"]
        body = b"".join(parts)
        w.send(f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for part in parts:  # 2.5 s in all: longer than keep_alive, across two sweeps
            time.sleep(0.5)
            w.send(part)
        a = w.answer()
        assert (a.status, a.body) == (200, body)
        w.close()
