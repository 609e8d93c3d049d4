"""A hostile OpenAI-compatible upstream, and a CONNECT proxy, on loopback.

Raw asyncio servers in a background thread, so they can do what no framework
will: send a head that never ends, a body of a gibibyte, an SSE line with no end,
or quote back the key they were sent. The behaviour is chosen per request by the
``model`` the gateway sends:

- ``ok``: a normal answer (``ANSWER``), streamed (SSE, ``[DONE]``) when asked;
- ``headers-N``: a 200 whose head repeats one header N times (then a small body);
- ``longhead-N``: a 200 whose head is one header value of N bytes;
- ``body-N``: a 200 whose chunked body is N bytes of JSON-looking filler;
- ``sseline``: an SSE 200 whose first line never ends;
- ``ssedata``: an SSE 200 of ``data:`` lines that never reach an empty line;
- ``interim``: a ``100 Continue`` and a ``103 Early Hints`` before a sound answer;
- ``redirect``: a 301 whose body is a sound whole answer;
- ``echocode``, ``echopart``: a 400 (or a streamed error) with the key in its code, type and param, or
  with the key masked at its end in its message.
- ``echokey``: quotes the ``Authorization`` header it got in an error, inside a streamed
  ``data: {"error": ...}`` event (streams) or a 401 body (non-streams);
- ``retry-VALUE``: 429 with ``Retry-After: VALUE``;
- ``hold``: a normal answer, once the test sets ``release``.
- ``flood-N``: a sound SSE answer of N one-word chunks (``FLOOD_WORD``), sent as fast as
  the client takes them, then usage and ``[DONE]``.

Everything lazy is written a piece at a time with ``drain()``, so a client that
stops reading stops the sender; ``sent[model]`` counts the bytes that went out and
``hangups`` the models whose client closed the connection before the answer was whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ANSWER = "hello from upstream"
PIECE = 64 * 1024
FLOOD_WORD = "word "


@dataclass
class Hit:
    model: str
    stream: bool
    head: bytes  # the request line and headers as received


@dataclass
class _Loop:
    """An event loop in a daemon thread, for servers the tests talk to from their own threads."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self, server: asyncio.Server | None) -> None:
        """Close ``server``, end every connection's task, then the loop."""

        async def close() -> None:
            if server is not None:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        self.loop.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def _header(head: bytes, wanted: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == wanted:
            return value.strip().decode("latin-1")
    return ""


class HostileUpstream:
    """``with HostileUpstream() as up:`` serves on ``up.base_url`` (``/v1``) until the block ends."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        self.host = host
        self.hits: list[Hit] = []
        self.sent: dict[str, int] = {}
        self.hangups: list[str] = []
        self.started = threading.Event()  # set when a lazy answer has begun to go out
        self.release = threading.Event()  # lets ``hold`` answers go
        self._loop = _Loop()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    def __enter__(self) -> HostileUpstream:
        self._loop.start()
        self._server = self._loop.run(asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop(self._server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head, body = await _read_request(reader)
                doc = json.loads(body or b"{}")
                model, stream = str(doc.get("model", "ok")), bool(doc.get("stream"))
                self.hits.append(Hit(model, stream, head))
                await self._answer(model, stream, head, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away: for a lazy answer, _write has recorded it
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _write(self, writer: asyncio.StreamWriter, model: str, data: bytes) -> None:
        writer.write(data)
        self.sent[model] = self.sent.get(model, 0) + len(data)
        try:
            await writer.drain()
            if writer.transport.is_closing():  # drain() does not raise for a peer that is gone
                raise ConnectionResetError
        except ConnectionError:
            self.hangups.append(model)
            raise

    async def _answer(self, model: str, stream: bool, head: bytes, writer: asyncio.StreamWriter) -> None:
        kind, _, arg = model.partition("-")
        if kind == "ok":
            await self._write(writer, model, _ok(stream, model))
        elif kind == "interim":  # 100 Continue and 103 Early Hints before the answer, as HTTP allows
            await self._write(writer, model, b"HTTP/1.1 100 Continue\r\n\r\n"
                              b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
                              + _ok(stream, model))
        elif kind == "redirect":  # a 301 carrying an answer-shaped body: not an answer
            body = _ok(False, model).partition(b"\r\n\r\n")[2]
            await self._write(writer, model, _response(301, b"application/json", body,
                                                       b"location: http://127.0.0.1:9/elsewhere\r\n"))
        elif kind == "hold":
            await asyncio.to_thread(self.release.wait, 60)
            await self._write(writer, model, _ok(stream, model))
        elif kind == "headers":
            await self._lazy(writer, model, b"HTTP/1.1 200 OK\r\n", _repeat(b"x-repeated: v\r\n", int(arg)),
                             b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        elif kind == "longhead":
            await self._lazy(writer, model, b"HTTP/1.1 200 OK\r\nx-long: ", _repeat(b"a", int(arg)), b"\r\n\r\n")
        elif kind == "body":
            await self._chunked(writer, model, b"application/json", _repeat(b" ", int(arg)))
        elif kind == "sseline":
            await self._chunked(writer, model, b"text/event-stream", _forever(b"data: ", b"a" * PIECE))
        elif kind == "ssedata":
            await self._chunked(writer, model, b"text/event-stream", _forever(b"", b"data: aaaaaaaa\n" * 4096))
        elif kind == "flood":
            await self._chunked(writer, model, b"text/event-stream", _flood(model, int(arg)))
        elif kind == "echokey":
            quoted = f"Incorrect API key provided: {_header(head, b'authorization')}"
            error = json.dumps({"error": {"message": quoted, "type": "invalid_request_error"}}).encode()
            if stream:
                await self._write(writer, model, _sse_head() + _chunk(b"data: " + error + b"\n\n") + b"0\r\n\r\n")
            else:
                await self._write(writer, model, _response(401, b"application/json", error))
        elif kind in ("echocode", "echopart"):
            key = _header(head, b"authorization").removeprefix("Bearer ")
            if kind == "echocode":  # the key in every field but the message
                doc = {"message": "bad request", "type": key, "code": key, "param": key}
            else:  # the key masked at its end, as providers quote one
                doc = {"message": f"Incorrect API key provided: {key[:-4]}****", "type": "invalid_request_error"}
            error = json.dumps({"error": doc}).encode()
            if stream:
                await self._write(writer, model, _sse_head() + _chunk(b"data: " + error + b"\n\n") + b"0\r\n\r\n")
            else:
                await self._write(writer, model, _response(400, b"application/json", error))
        elif kind == "retry":
            error = json.dumps({"error": {"message": "slow down", "type": "rate_limit_error"}}).encode()
            await self._write(writer, model, _response(429, b"application/json", error,
                                                       f"retry-after: {arg}\r\n".encode()))
        else:
            await self._write(writer, model, _response(404, b"application/json", b'{"error": "no such model"}'))

    async def _lazy(self, writer: asyncio.StreamWriter, model: str, first: bytes, middle: Iterator[bytes],
                    last: bytes) -> None:
        await self._write(writer, model, first)
        self.started.set()
        for piece in middle:
            await self._write(writer, model, piece)
        await self._write(writer, model, last)

    async def _chunked(self, writer: asyncio.StreamWriter, model: str, ctype: bytes, body: Iterator[bytes]) -> None:
        await self._write(writer, model, b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype
                          + b"\r\ntransfer-encoding: chunked\r\n\r\n")
        self.started.set()
        for piece in body:
            await self._write(writer, model, _chunk(piece))
        await self._write(writer, model, b"0\r\n\r\n")


def _repeat(unit: bytes, count: int) -> Iterator[bytes]:
    """``count`` copies of ``unit`` (or ``count`` bytes of it, for one byte), about PIECE bytes at a time."""
    per = max(1, PIECE // len(unit))
    while count > 0:
        n = min(per, count)
        yield unit * n
        count -= n


def _flood(model: str, count: int) -> Iterator[bytes]:
    """A chat stream in OpenAI's chunk shape: ``count`` chunks of one word, then usage and ``[DONE]``."""
    def event(delta: dict[str, str], finish: str | None, **extra: Any) -> bytes:
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    word = event({"content": FLOOD_WORD}, None)
    per = PIECE // len(word)
    yield event({"role": "assistant", "content": ""}, None)
    left = count
    while left > 0:
        n = min(per, left)
        yield word * n
        left -= n
    usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
    yield event({}, "stop", usage=usage) + b"data: [DONE]\n\n"


def _forever(first: bytes, unit: bytes) -> Iterator[bytes]:
    if first:  # an empty chunk would end the body
        yield first
    while True:
        yield unit


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _response(status: int, ctype: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, ctype, len(body), extra, body))


def _ok(stream: bool, model: str) -> bytes:
    """An answer in the shape of OpenAI's chat completion (https://platform.openai.com/docs/api-reference/chat)."""
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    if not stream:
        doc = {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                            "finish_reason": "stop"}], "usage": usage}
        return _response(200, b"application/json", json.dumps(doc).encode())
    events = []
    for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": ANSWER}, None), ({}, "stop")):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return _sse_head() + b"".join(_chunk(e) for e in events) + b"0\r\n\r\n"


class ConnectProxy:
    """A forward proxy: CONNECT tunnels, and plain requests in absolute form, each recorded.

    With ``credentials`` ("user:pass"), a request without the matching Basic
    ``Proxy-Authorization`` is answered 407.
    """

    def __init__(self, credentials: str | None = None) -> None:
        import base64

        self.expected = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
        self.request_lines: list[str] = []
        self.authorizations: list[str] = []
        self._loop = _Loop()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ConnectProxy:
        self._loop.start()
        self._server = self._loop.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop(self._server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.request_lines.append(line)
            auth = _header(head, b"proxy-authorization")
            self.authorizations.append(auth)
            if self.expected and auth != self.expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                return
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = b""
            else:  # absolute form: http://host:port/path
                hostport = target.split("/")[2]
                host, _, port = hostport.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
                first = head
            up_writer.write(first)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIECE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
