"""A fake OpenAI upstream that must never be the bottleneck.

A raw asyncio protocol on uvloop, HTTP/1.1 keep-alive parsed by httptools; no
framework and no coroutine per request: answers are scheduled with
``loop.call_later``. ``POST .../chat/completions`` answers after a fixed latency;
with ``"stream": true`` it sends the first token after that latency, then one
token every interval, the usage chunk when ``stream_options.include_usage`` is
set, then ``data: [DONE]``. ``--processes N`` runs N processes on one port
(SO_REUSEPORT) for when one core cannot keep up.

    python -m bench.upstream --port 9001 --latency-ms 50 --tokens 20 --token-interval-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import cast

import httptools
import orjson
import uvloop

from bench import wire

_JSON_HEAD = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n%s\r\n"
)
_CLOSE = b"connection: close\r\n"


@dataclass(frozen=True)
class Behaviour:
    latency: float  # seconds before the answer (non-stream) or the first token (stream)
    tokens: int  # tokens in every answer
    interval: float  # seconds between streamed tokens


class _Conn(asyncio.Protocol):
    """One client connection: parses requests in order and answers them one at a time."""

    def __init__(self, behaviour: Behaviour, ids: count[int]) -> None:
        self.behaviour = behaviour
        self.ids = ids
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body = bytearray()
        self.pending: deque[tuple[float, bytes, bytes, bytes, bool]] = deque()
        self.received = 0.0
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send_json(400, b"Bad Request", b'{"error":{"message":"bad HTTP request"}}', keep_alive=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.pending.append((time.perf_counter(), method, self.url, bytes(self.body), self.parser.should_keep_alive()))
        self.url = b""
        self.body = bytearray()
        if not self.busy:
            self._next()

    # answering
    def _next(self) -> None:
        while self.pending and not self.busy and self.transport is not None:
            self.received, method, url, body, keep_alive = self.pending.popleft()
            self.busy = True
            self._answer(method, url.partition(b"?")[0], body, keep_alive)

    def _answer(self, method: bytes, path: bytes, body: bytes, keep_alive: bool) -> None:
        if not path.endswith(b"/chat/completions"):
            self._send_json(404, b"Not Found", b'{"error":{"message":"no such route"}}', keep_alive)
            return
        if method != b"POST":
            self._send_json(405, b"Method Not Allowed", b'{"error":{"message":"use POST"}}', keep_alive)
            return
        try:
            req = orjson.loads(body)
            model = str(req["model"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._send_json(400, b"Bad Request", b'{"error":{"message":"invalid JSON body"}}', keep_alive)
            return
        ident = next(self.ids)
        b = self.behaviour
        due = self.received + b.latency
        if req.get("stream") is True:
            options = req.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            events = wire.StreamEvents(model, ident, b.tokens, usage)
            self._at(due, self._stream_start, events, due, keep_alive)
        else:
            payload = wire.completion(model, ident, b.tokens)
            self._at(due, self._send_json, 200, b"OK", payload, keep_alive)

    def _at(self, due: float, fn: Callable[..., None], *args: object) -> None:
        """Call fn at perf_counter() >= due, never earlier: libuv's timers have millisecond
        granularity and a cached clock, so they may fire up to a millisecond early."""
        delay = due - time.perf_counter()
        if delay <= 0:
            fn(*args)
        else:
            self.timer = asyncio.get_running_loop().call_later(delay, self._at, due, fn, *args)

    def _send_json(self, status: int, reason: bytes, payload: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        head = _JSON_HEAD % (status, reason, len(payload), b"" if keep_alive else _CLOSE)
        self.transport.write(head + payload)
        self._done(keep_alive)

    def _stream_start(self, events: wire.StreamEvents, first_due: float, keep_alive: bool) -> None:
        if self.transport is None:
            return
        head = _SSE_HEAD % (b"" if keep_alive else _CLOSE)
        if self.behaviour.interval <= 0:
            body = events.first + events.token * self.behaviour.tokens + events.last
            self.transport.write(head + wire.chunked(body) + wire.CHUNKED_END)
            self._done(keep_alive)
            return
        self.transport.write(head + wire.chunked(events.first + events.token))
        self._stream_step(events, first_due, 1, keep_alive)

    def _stream_step(self, events: wire.StreamEvents, first_due: float, sent: int, keep_alive: bool) -> None:
        """Token n goes out at first_due + (n - 1) * interval: a fixed rate that does not drift."""
        if self.transport is None:
            return
        if sent > 1:
            self.transport.write(wire.chunked(events.token))
        if sent >= self.behaviour.tokens:
            self.transport.write(wire.chunked(events.last) + wire.CHUNKED_END)
            self._done(keep_alive)
            return
        due = first_due + sent * self.behaviour.interval
        self._at(due, self._stream_step, events, first_due, sent + 1, keep_alive)

    def _done(self, keep_alive: bool) -> None:
        self.timer = None
        self.busy = False
        if not keep_alive and self.transport is not None:
            self.transport.close()
            return
        self._next()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(host: str, port: int, behaviour: Behaviour) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ids = count(1)
    server = await loop.create_server(lambda: _Conn(behaviour, ids), sock=_listen(host, port))
    async with server:
        await stop.wait()


def _loopback(host: str) -> str:
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"upstream: refusing to listen on {host}: the benchmark stays on loopback")
    return "127.0.0.1" if host == "localhost" else host


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--token-interval-ms", type=float, default=5.0)
    p.add_argument("--processes", type=int, default=1, choices=range(1, 65), metavar="N")
    args = p.parse_args(argv)
    host = _loopback(args.host)
    behaviour = Behaviour(args.latency_ms / 1000, max(1, args.tokens), args.token_interval_ms / 1000)
    for _ in range(args.processes - 1):
        if os.fork() == 0:
            break  # each child serves on its own SO_REUSEPORT socket; the parent's group is killed as one
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(host, args.port, behaviour))
    return 0


if __name__ == "__main__":
    sys.exit(main())
