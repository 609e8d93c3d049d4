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
- ``finobj``: a sound answer whose ``finish_reason`` is an object, not a word;
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
- ``cut-N``, ``badjson-N``, ``nodone-N``, ``hang-N``: a chat stream of N one-word chunks, then cut
  mid-event (the connection dropped), an event that is not JSON before a sound end, a clean end of
  the body with neither a finish nor ``[DONE]``, or keep-alives for ever (a comment and a chunk
  with no token every 50 ms);
- ``anth-HOW-N``: a stream on Anthropic's Messages wire of N one-word text deltas, then its end
  (``ok``: the answer ``ANSWER``, N unused; ``flood``: as it is) or, as ``HOW`` says, cut
  mid-event (``cut``), an event that is not JSON (``badjson``), a text delta whose text is a
  number (``text``), ``usage`` that is a string in ``message_start`` (``usage``), Anthropic's
  ``error`` event for an overload (``error``), or no ``message_stop`` (``nostop``);
- ``emb-HOW``: an answer to ``POST /embeddings`` of one vector per input (``embedding_of``),
  sound (``ok``, ``reversed``, ``noindex``) or hostile: ``nan``, ``inf``, ``big`` (bare
  ``NaN``, ``Infinity``, ``1e999``), ``b64nan`` (base64 float32 holding a NaN), ``str``,
  ``nested``, ``bool``, ``short``, ``long`` (vectors of the wrong length), ``dupe``, ``gap``,
  ``extra`` (indexes repeated, out of range, one vector too many), ``trickle`` (a body that
  never ends, a byte every 50 ms; ``errtrickle``: the same after a 500), ``gzip`` (a gzip
  bomb, sent although identity was asked for), ``html`` (a 200 that is a login page).

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
    doc: dict[str, Any] = field(default_factory=dict)  # the request's JSON body


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
                self.hits.append(Hit(model, stream, head, doc))
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
        elif kind == "emb":
            await self._embeddings(writer, model, arg, self.hits[-1].doc)
        elif kind in ("cut", "badjson", "nodone", "hang"):
            await self._broken_stream(writer, model, kind, int(arg))
        elif kind == "finobj":  # a sound answer whose finish_reason is an object, as some servers send it
            await self._write(writer, model, _ok(stream, model, {"type": "stop", "stop_sequence": None}))
        elif kind == "anth":
            how, _, words = arg.rpartition("-")
            await self._anthropic_stream(writer, model, how, int(words))
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

    async def _embeddings(self, writer: asyncio.StreamWriter, model: str, how: str, doc: dict[str, Any]) -> None:
        """An embeddings answer (``emb-HOW``) for the request ``doc``: sound, or broken as ``HOW`` says."""
        count, dims = _input_count(doc.get("input")), int(doc.get("dimensions") or EMBED_DIMS)
        if how in ("trickle", "errtrickle"):  # a JSON head, then a space every 50 ms for ever (a 200, or a 500)
            status = b"500 Internal Server Error" if how == "errtrickle" else b"200 OK"
            await self._write(writer, model, b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                              b"transfer-encoding: chunked\r\n\r\n" + _chunk(b'{"object": "list", "data": ['))
            self.started.set()
            while True:
                await asyncio.sleep(0.05)  # the upstream's pace, not a test's wait
                await self._write(writer, model, _chunk(b" "))
        elif how == "gzip":  # a small body that inflates to 256 MiB, sent although identity was asked for
            await self._write(writer, model, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                              b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
                              % (len(_gzip_bomb()), _gzip_bomb()))
        elif how == "html":
            page = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"
            await self._write(writer, model, _response(200, b"text/html; charset=utf-8", page))
        else:
            await self._write(writer, model, _response(200, b"application/json", _embedding_body(how, count, dims)))

    async def _broken_stream(self, writer: asyncio.StreamWriter, model: str, how: str, words: int) -> None:
        """A chat stream of ``words`` sound chunks, then: cut mid-event (``cut``), an event that is not JSON
        before a sound end (``badjson``), a clean end of the body with no finish and no ``[DONE]`` (``nodone``),
        or keep-alives for ever (``hang``)."""
        await self._write(writer, model, _sse_head())
        self.started.set()
        events = list(_flood(model, words))[:-1]  # the role chunk and the words, without the ending
        for piece in events:
            await self._write(writer, model, _chunk(piece))
        if how == "cut":
            await self._write(writer, model, _chunk(b'data: {"id": "c1", "object": "chat.compl'))
            writer.transport.abort()
        elif how == "badjson":
            await self._write(writer, model, _chunk(b"data: {this is not json\n\n"))
            await self._write(writer, model, _chunk(list(_flood(model, 0))[-1]) + b"0\r\n\r\n")
        elif how == "hang":  # alive but saying nothing: a comment and a chunk with no token, every 50 ms
            empty = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": None}]}
            ping = _chunk(b": ping\n\ndata: " + json.dumps(empty).encode() + b"\n\n")
            while True:
                await asyncio.sleep(0.05)  # the upstream's pace, not a test's wait
                await self._write(writer, model, ping)
        else:
            await self._write(writer, model, b"0\r\n\r\n")

    async def _anthropic_stream(self, writer: asyncio.StreamWriter, model: str, how: str, words: int) -> None:
        """A stream on Anthropic's wire (``anth-HOW-N``): N one-word text deltas (``ok``: the answer), then the end
        or what ``HOW`` breaks (see the module's docstring)."""
        await self._write(writer, model, _sse_head())
        self.started.set()
        usage: object = "xy" if how == "usage" else {"input_tokens": 3, "output_tokens": 1}
        opening = _anthropic_event("message_start", message={
            "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage})
        opening += _anthropic_event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        await self._write(writer, model, _chunk(opening))
        if how == "ok":
            await self._write(writer, model, _chunk(_anthropic_text(ANSWER)))
        else:
            word = _anthropic_text(FLOOD_WORD)
            left = words
            while left > 0:
                n = min(PIECE // len(word), left)
                await self._write(writer, model, _chunk(word * n))
                left -= n
        if how == "cut":
            await self._write(writer, model, _chunk(b'event: content_block_delta\ndata: {"type": "content_bl'))
            writer.transport.abort()
            return
        if how == "badjson":
            await self._write(writer, model, _chunk(b"event: content_block_delta\ndata: {this is not json\n\n"))
        elif how == "text":  # a text delta whose text is a number
            await self._write(writer, model, _chunk(_anthropic_event(
                "content_block_delta", index=0, delta={"type": "text_delta", "text": 5})))
        elif how == "error":  # what Anthropic sends when it is overloaded after the 200
            await self._write(writer, model, _chunk(_anthropic_event(
                "error", error={"type": "overloaded_error", "message": "Overloaded"})) + b"0\r\n\r\n")
            return
        ending = _anthropic_event("content_block_stop", index=0)
        ending += _anthropic_event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                                   usage={"output_tokens": max(words, 1)})
        if how != "nostop":
            ending += _anthropic_event("message_stop")
        await self._write(writer, model, _chunk(ending) + b"0\r\n\r\n")


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


def _ok(stream: bool, model: str, finish_reason: object = "stop") -> bytes:
    """An answer in the shape of OpenAI's chat completion (https://platform.openai.com/docs/api-reference/chat)."""
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    if not stream:
        doc = {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                            "finish_reason": finish_reason}], "usage": usage}
        return _response(200, b"application/json", json.dumps(doc).encode())
    events = []
    for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": ANSWER}, None),
                          ({}, finish_reason)):
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


# -- embeddings (``emb-HOW``) -------------------------------------------------------------------------

EMBED_DIMS = 1536  # text-embedding-3-small's, when the request says no dimensions
_GZIP_BOMB: list[bytes] = []


def _input_count(given: object) -> int:
    """How many vectors an embeddings ``input`` asks for: one per text or token-id list."""
    if isinstance(given, list) and given and isinstance(given[0], (str, list)):
        return len(given)
    return 1


def embedding_of(i: int, dims: int) -> list[float]:
    """The sound vector of input ``i``: its index first, so a vector given to the wrong input shows."""
    return [float(i), *(round(0.001 * (k % 7), 3) for k in range(1, dims))]


def _embedding_body(how: str, count: int, dims: int) -> bytes:
    """An OpenAI ``list`` of embeddings for ``count`` inputs, sound (``ok``, ``reversed``, ``noindex``) or not."""
    data: list[dict[str, Any]] = [{"object": "embedding", "index": i, "embedding": embedding_of(i, dims)}
                                  for i in range(count)]
    raw_value = {"nan": "NaN", "inf": "Infinity", "big": "1e999"}.get(how)
    last = data[-1]
    if how == "reversed":
        data.reverse()
    elif how == "noindex":
        for item in data:
            del item["index"]
    elif raw_value is not None:
        last["embedding"][1] = "@@"  # replaced below: json.dumps writes no bare NaN on request
    elif how == "b64nan":
        import base64
        import struct

        last["embedding"] = base64.b64encode(struct.pack(f"<{dims}f", float("nan"), *([0.5] * (dims - 1)))).decode()
    elif how == "str":
        last["embedding"][1] = "0.5"
    elif how == "nested":
        last["embedding"] = [last["embedding"]]
    elif how == "bool":
        last["embedding"][1] = True
    elif how == "short":
        last["embedding"].pop()
    elif how == "long":
        for item in data:
            item["embedding"].append(0.5)
    elif how == "dupe":
        last["index"] = 0
    elif how == "gap":
        last["index"] = count
    elif how == "extra":
        data.append({"object": "embedding", "index": count, "embedding": embedding_of(count, dims)})
    doc = {"object": "list", "data": data, "model": "text-embedding-3-small",
           "usage": {"prompt_tokens": count, "total_tokens": count}}
    body = json.dumps(doc).encode()
    return body.replace(b'"@@"', raw_value.encode()) if raw_value is not None else body


def _gzip_bomb() -> bytes:
    """256 MiB of a JSON-looking body, gzipped to a few hundred KiB (made once)."""
    if not _GZIP_BOMB:
        import zlib

        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip's framing
        parts = [packer.compress(b'{"object": "list", "data": [')]
        spaces = b" " * (1 << 20)
        parts += [packer.compress(spaces) for _ in range(256)]
        _GZIP_BOMB.append(b"".join(parts) + packer.flush())
    return _GZIP_BOMB[0]


# -- Anthropic's wire (``anth-HOW-N``) -----------------------------------------------------------------


def _anthropic_event(kind: str, **fields: Any) -> bytes:
    """One event of Anthropic's Messages stream (https://docs.anthropic.com/en/api/messages-streaming)."""
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps({"type": kind, **fields}).encode())


def _anthropic_text(text: str) -> bytes:
    return _anthropic_event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
