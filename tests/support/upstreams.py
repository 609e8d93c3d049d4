"""Fake upstream servers on localhost that speak each provider's real wire format.

A ``FakeUpstream`` is a real HTTP server (a Starlette app under uvicorn, in a
background thread, on a free port). A test scripts what it answers next and reads
back what it received::

    with FakeUpstream(OPENAI) as up:
        up.json(load("openai", "completion"))
        ...  # point a backend at up.url and call it
        assert up.received[0].json()["model"] == "gpt-4o-mini"

Replies are served in the order they were scripted, one per request. A stream is a
list of provider-shaped events that the server's ``Wire`` frames as that provider
does: SSE ``data:`` lines ending in ``[DONE]`` (OpenAI), named SSE events
(Anthropic) or one JSON object a line (Ollama). A stream can end without its
terminator, or drop the connection mid-body, to provoke the cut-stream paths.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def has_fixture(provider: str, name: str) -> bool:
    return any((FIXTURES / provider / f"{name}{ext}").is_file() for ext in (".json", ".sse"))


def load(provider: str, name: str) -> Any:
    """A fixture: ``tests/fixtures/<provider>/<name>.sse`` or ``<name>.json``.

    A ``.sse`` file is a stream as the provider documents it, ``data:`` lines with comment
    lines (``:``) naming the source; it loads as the list of its events, without ``[DONE]``.
    Keys of a JSON object that start with ``_`` (``_source``, ``_read``, ``_note``) say where
    the fixture comes from and are not part of the body.
    """
    sse = FIXTURES / provider / f"{name}.sse"
    if sse.is_file():
        return sse_events(sse.read_text(encoding="utf-8"))
    doc = json.loads((FIXTURES / provider / f"{name}.json").read_text(encoding="utf-8"))
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if not k.startswith("_")}
    return doc


def sse_events(text: str) -> list[Any]:
    """The JSON events of an SSE body (``data:`` lines), leaving out comments and ``[DONE]``."""
    events = []
    for line in text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data != "[DONE]":
                events.append(json.loads(data))
    return events


# --- how each provider frames a stream ---------------------------------------------------


def _encode(data: Any) -> str:
    """JSON for dicts and lists; a string is sent as it is (to send malformed data on purpose)."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def sse_data(event: Any) -> bytes:
    return f"data: {_encode(event)}\n\n".encode()


def sse_named(event: Any) -> bytes:
    """``{"event": "content_block_delta", "data": {...}}`` -> a named SSE event."""
    return f"event: {event['event']}\ndata: {_encode(event['data'])}\n\n".encode()


def ndjson(event: Any) -> bytes:
    return f"{_encode(event)}\n".encode()


@dataclass(frozen=True, slots=True)
class Wire:
    """A stream framing: how one event is written, and what ends the stream."""

    name: str
    media_type: str
    frame: Callable[[Any], bytes]
    terminator: bytes = b""


OPENAI = Wire("openai", "text/event-stream", sse_data, b"data: [DONE]\n\n")
ANTHROPIC = Wire("anthropic", "text/event-stream", sse_named)  # message_stop is itself an event
OLLAMA = Wire("ollama", "application/x-ndjson", ndjson)  # the last object says "done": true


# --- what the server received and what it answers ----------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    chunks: tuple[bytes, ...] | None = None  # a streamed body, written chunk by chunk
    drop: bool = False  # after the chunks, close the connection mid-body
    delay: float = 0.0  # seconds before the response headers
    gap: float = 0.0  # seconds between chunks


class _DropConnection(Exception):
    """Raised inside a streamed body: uvicorn then closes the socket without ending the body."""


class FakeUpstream:
    """One fake provider on 127.0.0.1; start with ``with`` or ``start()``/``stop()``."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.received: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ---------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        self._replies.append(reply)

    def json(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.reply(Reply(status, json.dumps(doc).encode(), dict(headers or {})))

    def raw(self, body: bytes, status: int = 200, media_type: str = "application/json") -> None:
        self.reply(Reply(status, body, media_type=media_type))

    def stream(
        self, events: Iterable[Any], *, terminate: bool = True, drop: bool = False, gap: float = 0.0
    ) -> None:
        """Stream ``events`` framed as this provider does; ``terminate=False`` leaves off the end marker."""
        chunks = [self.wire.frame(e) for e in events]
        if terminate and self.wire.terminator:
            chunks.append(self.wire.terminator)
        self.reply(Reply(chunks=tuple(chunks), media_type=self.wire.media_type, drop=drop, gap=gap))

    def reset(self) -> None:
        self._replies.clear()
        self.received.clear()

    # -- serving -----------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(request.method, request.url.path, headers, body))
        if not self._replies:
            return Response(b'{"error": "fake upstream: no reply scripted"}', status_code=418)
        reply = self._replies.popleft()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.chunks is None:
            return Response(reply.body, reply.status, reply.headers, reply.media_type)
        return StreamingResponse(_write(reply), reply.status, reply.headers, reply.media_type)

    def start(self) -> FakeUpstream:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"fake {self.wire.name} upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _write(reply: Reply) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(reply.chunks or ()):
        if i and reply.gap:
            await asyncio.sleep(reply.gap)
        yield chunk
    if reply.drop:
        raise _DropConnection


def closed_port() -> int:
    """A port nothing listens on, for connection-refused cases."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
