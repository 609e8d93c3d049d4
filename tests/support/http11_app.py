"""A small app of test handlers for the HTTP/1.1 server, and a raw-socket client that reads its answers."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from polyroute.server.answers import Answer, Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from polyroute.server.serving import Server
from polyroute.server.sse import EventStream
from tests.support.wait import TIMEOUT, await_until

MAX_BODY = 1024
FRAMES = 12_000  # about 12 MB of stream: more than loopback buffers hold while the client does not read


@dataclass
class Probe:
    """What the handlers did, seen from the test's thread."""

    delay: float = 0.5
    repeat: int = 1  # /slow answers "slow" this many times
    gate: threading.Event | None = None  # when given, /slow waits for it to be set instead of ``delay``
    started: threading.Event = field(default_factory=threading.Event)  # /slow was called
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stream_closed: threading.Event = field(default_factory=threading.Event)
    produced: int = 0
    wheres: int = 0  # calls of /where


def called_from(function: str) -> bool:
    """Whether a frame of ``function`` is on the stack of the running code (a callback that stepped it)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def make_app(probe: Probe) -> App:
    async def where(request: Request) -> Answer:
        # Served from the protocol callback that read the request, not on a later turn of the loop.
        probe.wheres += 1
        return Reply(json.dumps({"in_data_received": called_from("data_received")}).encode())

    async def hello(request: Request) -> Answer:
        return Reply(b'{"hello": "world"}')

    async def echo(request: Request) -> Answer:
        return Reply(request.body, content_type="application/octet-stream")

    async def slow(request: Request) -> Answer:
        probe.started.set()
        try:
            if probe.gate is not None:
                await await_until(probe.gate.is_set, what="the test's gate")  # set from the test's thread
            else:
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
            "/where": {"GET": where},
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
        self.sock.settimeout(TIMEOUT)  # bounds a failure only: a read on a busy machine may wait seconds
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

    def at_eof(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection within ``timeout`` (nothing else arriving)."""
        before = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(before)  # a short wait here must not shorten the reads that follow
        assert data == b"", f"unexpected bytes: {data[:200]!r}"
        return True

    def close(self) -> None:
        self.sock.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@contextmanager
def own_server(probe: Probe, keep_alive: float = 5.0, grace: float = 5.0) -> Iterator[tuple[Server, int]]:
    """Like serve_app, with the Server in the test's hands (to stop it, or to idle out faster)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server(make_app(probe), keep_alive=keep_alive, grace=grace)
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
