"""A fault-injecting OpenAI-compatible upstream on localhost.

A raw asyncio HTTP/1.1 server (keep-alive, chunked streams) in a background
thread, so that it can do what a framework will not: reset a connection, stall
mid-body, end a body without its ``[DONE]``. The fault is chosen per request by
the ``model`` the gateway sends, a ``+``-joined list like the fake adapter's:

- ``ok`` (default): the answer ``ANSWER``, one word a token, with usage;
- ``text-WORDS``: another answer (``text-hello-world``);
- ``status-CODE`` (``+retry-S`` adds ``Retry-After: S``): an OpenAI-shaped error;
- ``block``: 403 with OpenAI's real region-block body; ``auth``: 401 bad key;
- ``context``: 400 ``context_length_exceeded``; ``bad400``: 400 invalid request;
- ``errfile-PROVIDER/NAME``: the documented error in ``tests/fixtures/PROVIDER/errors/NAME.json``
  (its status, headers and body), e.g. ``errfile-deepseek/402_insufficient_balance``;
- ``reset``: the connection is reset before any byte of the answer;
- ``resetbody-N``: reset after N tokens (non-streams: after half the body);
- ``slowheaders-MS``: nothing for MS ms, then the answer;
- ``slowfirst-MS``: headers and the role chunk at once, the first token after MS ms;
- ``gap-MS``: MS ms between tokens;
- ``stall-N``: after N tokens nothing more, the connection held open;
- ``cut-N``: after N tokens the body ends cleanly without ``[DONE]``;
- ``malformed-N``: after N tokens an event that is not JSON;
- ``errorevent-N``: after N tokens an ``{"error": ...}`` event (as providers send mid-stream);
- ``badjson``: a non-stream answer that is not JSON (streams: the first event);
- ``nousage``: no usage in the answer;
- ``badusage-KIND``: usage that is not a count: ``negative`` (-1000000 tokens), ``huge`` (10**12),
  ``text`` ("many");
- ``tools``: a streamed tool call (its arguments in pieces) instead of text.

A request whose last message is an assistant turn is a continuation: the server
answers with the rest of the answer after that prefix, as DeepSeek's prefix mode
does. Every request is recorded (``hits``) with its time, so tests can count
attempts and probes; a client that closes the connection before its answer is
complete (while the server waits in a stall or for a slow first token, or while it
is still writing) is recorded in ``hangups``, so tests can see that the
gateway let go of an upstream it gave up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSWER = "Alpha bravo charlie delta echo foxtrot golf hotel"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

BLOCK_BODY = {
    "error": {
        "code": "unsupported_country_region_territory",
        "message": "Country, region, or territory not supported",
        "param": None,
        "type": "request_forbidden",
    }
}
Wait = Callable[[float], Awaitable[bool]]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
            404: "Not Found", 408: "Request Timeout",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Hit:
    model: str
    at: float  # time.monotonic()
    stream: bool
    prefix: str | None


@dataclass(frozen=True, slots=True)
class Fault:
    text: str = ANSWER
    status: int | None = None
    retry: str | None = None
    block: bool = False
    auth: bool = False
    context: bool = False
    bad400: bool = False
    reset: bool = False
    resetbody: int | None = None
    slowheaders: int = 0
    slowfirst: int = 0
    gap: int = 0
    stall: int | None = None
    cut: int | None = None
    malformed: int | None = None
    errorevent: int | None = None
    badjson: bool = False
    nousage: bool = False
    badusage: str | None = None
    tools: bool = False
    errfile: str | None = None

    @classmethod
    def parse(cls, model: str) -> Fault:
        fields: dict[str, Any] = {}
        for part in model.split("+"):
            head, _, arg = part.partition("-")
            if head == "text":
                fields["text"] = arg.replace("-", " ")
            elif head == "status":
                fields["status"] = int(arg)
            elif head in ("retry", "errfile", "badusage"):
                fields[head] = arg
            elif head in ("resetbody", "slowheaders", "slowfirst", "gap", "stall", "cut", "malformed", "errorevent"):
                fields[head] = int(arg)
            elif head in ("block", "auth", "context", "bad400", "reset", "badjson", "nousage", "tools"):
                fields[head] = True
        return cls(**fields)

    def usage(self, prompt: int, completion: int) -> dict[str, Any]:
        bad: Any = {"negative": -1_000_000, "huge": 10**12, "text": "many"}.get(self.badusage or "")
        if bad is not None:
            return {"prompt_tokens": bad, "completion_tokens": bad, "total_tokens": bad}
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def error(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The error answer this fault gives before any body, if any."""
        if self.errfile:
            return documented_error(self.errfile)
        if self.block:
            return 403, BLOCK_BODY, {}
        if self.auth:
            return 401, _err("Incorrect API key provided", "invalid_request_error", "invalid_api_key"), {}
        if self.context:
            return 400, _err("This model's maximum context length is 8192 tokens.", "invalid_request_error",
                             "context_length_exceeded"), {}
        if self.bad400:
            return 400, _err("'messages' is malformed", "invalid_request_error", None), {}
        if self.status is not None:
            headers = {"retry-after": self.retry} if self.retry else {}
            return self.status, _err(f"upstream says {self.status}", "server_error", None), headers
        return None


def documented_error(name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A provider's documented error from its fixture (``PROVIDER/NAME``): status, body, headers."""
    provider, _, case = name.partition("/")
    doc = json.loads((FIXTURES / provider / "errors" / f"{case}.json").read_text())
    return int(doc["status"]), doc["body"], dict(doc.get("headers") or {})


def _err(message: str, etype: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


class FaultUpstream:
    """Start with ``with FaultUpstream() as up:``; point backends at ``up.url``."""

    def __init__(self, port: int = 0) -> None:
        self.hits: list[Hit] = []
        self.hangups: list[Hit] = []  # requests whose client closed the connection before their answer was done
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, model: str) -> int:
        return sum(1 for h in list(self.hits) if h.model == model)

    def times(self, model: str) -> list[float]:
        return [h.at for h in list(self.hits) if h.model == model]

    def of(self, model: str) -> list[Hit]:
        return [h for h in list(self.hits) if h.model == model]

    def reset_hits(self) -> None:
        self.hits.clear()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FaultUpstream:
        self._thread = threading.Thread(target=self._run, name="fault-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault upstream did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            with contextlib.suppress(asyncio.CancelledError):  # close() ends serve_forever so
                await self._server.serve_forever()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection may serve another."""
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:] if line)
        )
        body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        model, stream = str(body.get("model", "")), bool(body.get("stream"))
        last = (body.get("messages") or [{}])[-1]
        prefix = last.get("content") if last.get("role") == "assistant" else None
        hit = Hit(model, time.monotonic(), stream, prefix)
        self.hits.append(hit)
        fault = Fault.parse(model)

        async def wait(ms: float) -> bool:
            """Wait ``ms`` ms; False (and recorded) if the client hangs up meanwhile."""
            try:
                await asyncio.wait_for(reader.read(1), ms / 1000)
            except TimeoutError:
                return True
            except ConnectionError:  # a reset rather than a clean close: a hang-up all the same
                pass
            self.hangups.append(hit)
            return False

        if fault.reset:
            _reset(writer)
            return False
        try:
            if fault.slowheaders and not await wait(fault.slowheaders):
                return False
            if (err := fault.error()) is not None:
                status, doc, extra = err
                await _send(writer, status, json.dumps(doc).encode(), extra)
                return True
            if stream:
                return await self._stream(writer, wait, fault, model, prefix, body)
            return await self._whole(writer, wait, fault, model, prefix)
        except ConnectionError:
            # The client left while we were still writing: it may well have let go of a stream
            # before we reached the point where we wait (a stall), and that is a hang-up too.
            self.hangups.append(hit)
            return False

    async def _whole(self, writer: asyncio.StreamWriter, wait: Wait, fault: Fault, model: str,
                     prefix: str | None) -> bool:
        if fault.slowfirst and not await wait(fault.slowfirst):
            return False
        if fault.badjson:
            await _send(writer, 200, b'{"id": "chatcmpl-x", "choices": [')
            return True
        text = _rest(fault.text, prefix)
        doc: dict[str, Any] = {
            "id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if not fault.nousage:
            doc["usage"] = fault.usage(10, len(text.split()))
        data = json.dumps(doc).encode()
        if fault.resetbody is not None:
            writer.write(_status_line(200, {"content-type": "application/json", "content-length": str(len(data))}))
            writer.write(data[: len(data) // 2])
            await writer.drain()
            _reset(writer)
            return False
        await _send(writer, 200, data)
        return True

    async def _stream(
        self, writer: asyncio.StreamWriter, wait: Wait, fault: Fault, model: str, prefix: str | None,
        body: dict[str, Any],
    ) -> bool:
        writer.write(_status_line(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))

        async def event(payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            frame = b"data: " + data + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if fault.badjson:
            await event(b"{this is not json")
            return await _end(writer, done=True)
        await event(chunk({"role": "assistant", "content": ""}))
        if fault.slowfirst and not await wait(fault.slowfirst):
            return False
        pieces = _tool_pieces() if fault.tools else _tokens(_rest(fault.text, prefix))
        for i, piece in enumerate(pieces):
            if fault.resetbody == i:
                _reset(writer)
                return False
            if fault.stall == i:
                await wait(3_600_000)
                return False
            if fault.cut == i:
                return await _end(writer, done=False)
            if fault.malformed == i:
                await event(b'{"choices": [{"delta": {"content": "oops')
                return await _end(writer, done=True)
            if fault.errorevent == i:
                await event(_err("The server had an error while processing your request.", "server_error", None))
                return await _end(writer, done=True)
            if i and fault.gap:
                await asyncio.sleep(fault.gap / 1000)
            await event(chunk({"tool_calls": [piece]} if fault.tools else {"content": piece}))
        await event(chunk({}, "tool_calls" if fault.tools else "stop"))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if wants_usage and not fault.nousage:
            n = len(pieces)
            await event({"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [], "usage": fault.usage(10, n)})
        return await _end(writer, done=True)


def _tokens(text: str) -> list[str]:
    words = text.split(" ") if text else []
    return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i]


def _tool_pieces() -> list[dict[str, Any]]:
    first = {"index": 0, "id": "call_fault", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    rest = [{"index": 0, "function": {"arguments": part}} for part in ('{"ci', 'ty": "Pa', 'ris"}')]
    return [first, *rest]


def _rest(text: str, prefix: str | None) -> str:
    """A continuation answers only what follows the prefix."""
    if prefix and text.startswith(prefix):
        return text[len(prefix):]
    return text


def _status_line(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
    headers = {"content-type": "application/json", "content-length": str(len(body)), **(extra or {})}
    writer.write(_status_line(status, headers) + body)
    await writer.drain()


async def _end(writer: asyncio.StreamWriter, *, done: bool) -> bool:
    if done:
        frame = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashed upstream or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def closed_port() -> int:
    """A port nothing listens on: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fault_backends(up: FaultUpstream, *names: str, continuation: str = "prefix", **extra: Any) -> Iterator[
    tuple[str, dict[str, Any]]
]:
    """Backend configs for ``names``, all served by ``up`` (each its own breaker)."""
    for name in names:
        yield name, {"type": "openai", "base_url": up.url, "continuation": continuation, **extra}
