"""HTTP/1.1 for the gateway: one asyncio protocol per connection, parsed by httptools.

Why not uvicorn and ASGI: with many clients each waiting on a slow upstream, the
gateway's added latency is mostly CPU run cold (a request on a connection finds
the caches empty), and uvicorn's request cycle, the ASGI messages and Starlette's
request and response objects were a large share of the Python work per request
(bench/README.md has the measurements): a regular expression per response header,
header names lowered and encoded twice, a task and two dicts per message. Here a request is
read whole (its body up to ``max_body``) and handed to the app as one
``Request``; the answer's head and body leave in one write.

A connection serves its requests in order (keep-alive; pipelined requests wait
their turn, and past ``MAX_PIPELINED`` the connection stops reading). A client that
does not read its answers is not answered further: while the transport's write
buffer is full, the next answer waits and the connection stops reading, so what
it holds stays bounded. A client that takes none of the bytes waiting for it for
``send_timeout`` seconds has stopped reading, and its connection is reset
(``Connection.check_send``). A body over the limit is read to its end and dropped,
then answered 413 (at once, with no ``100 Continue``, to a client that waits on
``Expect: 100-continue``; so is a head the app's ``before_body`` refuses, such as
a wrong key); a head over ``MAX_HEAD_BYTES`` gets 431; bytes that are not
HTTP get 400 and the connection closes. A head that grows past the limit is
answered at once, even one header value that never ends: the bytes of a head are
counted as they come, not as the parser hands over whole headers. So is a body
that goes on past four times the limit. A head must arrive within
``header_timeout`` seconds of its first byte, and a body within ``body_timeout``
of the end of its head, or the request is answered 408 (a client trickling bytes
cannot hold a connection for ever). Errors are in OpenAI's shape like every
other answer, except on paths of another API's wire format, whose ``error_shape``
gives them that API's (asked only when an error is sent). A client refused in
the middle of its request is likely still sending it: the connection is
half-closed after the answer and what still comes
is dropped, for up to ``LINGER_S``, so the client is not reset before it reads
the answer (a lingering close).

When the client goes away during a stream, the task sending it is cancelled at
once, so the stream's own cleanup (the upstream closed, what it sent billed) runs
then, not at the next write. A whole answer still being computed is left to
finish: its upstream bills it, and the access log records it.

When a stop's grace period ends (``stop_now``), an answer still being computed is
answered 503 and a stream still running ends with an error event, both with the
code ``server_shutting_down``, so no client takes a cut answer for a whole one.
A closed connection lets go of its parser and buffers at once: nothing of it
waits for the cycle collector.

Why the server ended a connection, or refused a request before the app, is counted
(``Shared.closes``, ``polyroute.metrics.CLOSE_REASONS``) where that is decided: on the
error paths, the sweep's cuts and a connection's loss, never on a request answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import sys
import termios
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import httptools
import orjson

from polyroute.eager import EagerTask
from polyroute.errors import (
    BodyTooLarge,
    HeadTooLarge,
    InvalidRequest,
    RequestTimeout,
    UnsupportedEncoding,
    UnsupportedTransfer,
)
from polyroute.finish import SHUTDOWN
from polyroute.metrics import ConnectionCloses
from polyroute.server.answers import Answer, Head, Reply
from polyroute.server.errors import error_body_dict, error_response, internal_error
from polyroute.server.sse import EventStream

log = logging.getLogger("polyroute.server")

MAX_HEAD_BYTES = 64 * 1024
MAX_PIPELINED = 16
# Pieces of one request's body (chunks of a chunked body, or reads of a plain one): clients send a few large
# ones; tens of thousands of tiny ones cost the event loop a call and an object each.
MAX_BODY_PARTS = 65536
DISCARD_FACTOR = 4  # a body over the limit is read and dropped up to this many times the limit
LINGER_S = 2.0  # a client refused while sending: what it still sends is read and dropped this long
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
SEND_TIMEOUT = 60.0
# The bytes a socket holds that its peer has not acknowledged (SIOCOUTQ, the same request as TIOCOUTQ;
# tcp(7)): Linux only, elsewhere only what waits in our own buffer is watched.
_OUTQ: int | None = termios.TIOCOUTQ if sys.platform == "linux" else None
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, for 0 s: close with a reset, dropping what is unsent
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _target(url: bytes) -> tuple[str, bytes]:
    """The path and query string of a request target: its origin form, or the path of its absolute form
    (``POST http://host/v1/...``), which a server must accept. (``on_message_complete`` does the same inline:
    it runs for every request.)"""
    if url[:1] != b"/" and url.startswith((b"http://", b"https://")):
        at = url.find(b"/", url.find(b"//") + 2)
        url = url[at:] if at >= 0 else b"/"
    q = url.find(b"?")
    return (url if q < 0 else url[:q]).decode("latin-1"), (b"" if q < 0 else url[q + 1:])


def _quoted(value: bytes) -> str:
    text = value.decode("latin-1")
    return repr(text if len(text) <= 40 else text[:40] + "...")


SHUTTING_DOWN = error_body_dict(
    "The gateway is shutting down and cut this answer before its end; send the request again.",
    "server_error", "server_shutting_down",
)


class Request:
    """One whole request: names of headers in lower case, the body read to its end.

    ``query`` is the raw query string (after ``?``, without it); ``params`` parses it
    when a handler asks, so requests that carry none, or whose handler reads none, pay nothing.
    """

    __slots__ = ("body", "headers", "http10", "keep_alive", "method", "path", "query", "reject")

    def __init__(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool,
        reject: Reply | None = None, http10: bool = False, query: bytes = b"",
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.reject = reject  # answered without the app: a body or head over the limits
        self.http10 = http10
        self.query = query

    def params(self) -> dict[str, list[str]]:
        """The query string's parameters, each name with its values in order (percent-decoded)."""
        if not self.query:
            return {}
        return parse_qs(self.query.decode("latin-1"), keep_blank_values=True)

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = self.params().get(name)
        return values[0] if values else None

    def header(self, name: bytes) -> str | None:
        """The first value of a header (``name`` in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


App = Callable[[Request], Awaitable[Answer]]
# The answer a request gets from its head alone (its key refused), or None to read its body.
HeadCheck = Callable[[Request], Reply | None]
# An error made before the app answered, as it is sent on its request's path (another API's error shape there);
# asked on the error path only (polyroute.server.messages_errors).
ErrorShape = Callable[[str, Reply], Reply]


class Shared:
    """What every connection of one server shares."""

    def __init__(
        self, app: App, max_body: int, loop: asyncio.AbstractEventLoop,
        header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT,
        max_connections: int = 1 << 30, before_body: HeadCheck | None = None,
        send_timeout: float = SEND_TIMEOUT, error_shape: ErrorShape | None = None,
        closes: ConnectionCloses | None = None,
    ) -> None:
        self.app = app
        self.error_shape = error_shape
        # Asked only of a request whose client waits for our word before sending its body (Connection._expecting).
        self.before_body = before_body
        self.max_body = max_body
        self.loop = loop
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.head = Head()
        self.connections: set[Connection] = set()
        # Past this many connections a new one is closed at once (``polyroute.server.serving``
        # derives it from the file limit): the gateway keeps descriptors for its upstreams.
        self.max_connections = max_connections
        self.full = False  # refusing connections now (logged once, and once when it ends)
        self.refused = 0
        self.closes = closes or ConnectionCloses()  # the gateway's metrics show them (polyroute.metrics)
        self.stopping = False
        self.all_closed = asyncio.Event()  # set once stopping and the last connection is gone

    def admit(self) -> bool:
        """Whether a new connection may be served."""
        count = len(self.connections)
        if count < self.max_connections:
            if self.full and count < self.max_connections * 9 // 10:
                self.full = False
                log.warning("accepting connections again: %d open; %d refused meanwhile", count, self.refused)
                self.refused = 0
            return True
        self.refused += 1
        self.closes.count("connection_limit")
        if not self.full:
            self.full = True
            log.warning("connection limit reached: %d open (from the file limit); new connections are "
                        "closed until some end (raise `ulimit -n` to serve more)", count)
        return False


class Connection(asyncio.Protocol):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None  # serving the queue; None when idle
        self.streaming = False  # the task is sending a stream: a client that leaves cancels it
        self.lost = False
        self.last_active = shared.loop.time()
        self.reads = 0  # the idle sweep compares it with what it saw last time: bytes came meanwhile
        self.reads_seen = 0
        self.read_paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        # What waited for the client at the last look (our buffer, the kernel's unacknowledged bytes; check_send),
        # and when it last took any; None: nothing waits, or it drained since (resume_writing).
        self.send_mark: tuple[int, int] | None = None
        self.send_since = 0.0
        self.close_after = False  # after the answers queued so far (a protocol error, an upgrade)
        self.linger = False  # refused in the middle of a request: half-close, then close (_finish)
        self.lingering = False
        self.in_head = True  # the next bytes belong to a request's head
        self.head_bytes = 0  # bytes fed to the parser since the current head began
        self.deadline: float | None = None  # by when the head or body being read must be whole
        self.cut = False  # the stop's grace is over: what is in flight ends with an error
        self.eof = False  # the client has stopped sending
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.head_size = 0
        self.too_large = False
        self.refusal: Reply | None = None  # the answer to a request refused by its head, its body read and dropped

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.shared.admit():
            self.lost = True
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        self.shared.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        parser = self.parser
        if self.close_after or parser is None:
            return  # what follows an error or an upgrade is not read
        try:
            if self.in_head and self.head_bytes + len(data) > MAX_HEAD_BYTES:
                data = self._feed_head(parser, data)
            elif self.in_head:
                self.head_bytes += len(data)
            if data:
                parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request before the upgrade is served; we speak nothing else, so the connection ends.
            self._end_reading()
        except httptools.HttpParserCallbackError:
            # A bug of ours in a callback: logged with its traceback, answered without one.
            log.exception("unexpected error while reading a request")
            self._refuse(internal_error(), "internal_error")
        except httptools.HttpParserError as exc:
            self._refuse(error_response(InvalidRequest(f"Request is not valid HTTP/1.1: {exc}")), "bad_request")

    def _feed_head(self, parser: httptools.HttpRequestParser, data: bytes) -> bytes:
        """Feed ``data`` while a head is being read and would pass the limit with it: no more
        than the limit plus one byte of head reaches the parser, which keeps an unfinished
        header value to itself until it ends. Returns what is left to feed once the head is
        whole (a body, the next requests), or nothing after a 431."""
        while data and self.in_head and self.head_bytes + len(data) > MAX_HEAD_BYTES:
            room = MAX_HEAD_BYTES + 1 - self.head_bytes
            part, data = data[:room], data[room:]
            self.head_bytes += len(part)
            parser.feed_data(part)
            if self.close_after:
                return b""
            if self.in_head and self.head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()
                return b""
        if self.in_head:
            self.head_bytes += len(data)
        return data

    def eof_received(self) -> bool | None:
        """The client has stopped sending (a half-close): what it sent whole is answered, then the connection
        closes; keeping the transport open lets the answers be written. A request cut part-way, or a stream,
        closes at once: the client may well have closed both ways (a stream's client that leaves must free
        its upstream at once), and nothing of a cut request can be answered. So does a stream whose head has
        not left yet, once it is ready (``_answer``): its request ends unanswered, as nginx's 499 has it."""
        self.eof = True
        if self.deadline is None and not self.streaming and (self.task is not None or self.queue):
            self._end_reading()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        shared = self.shared
        if exc is not None:
            shared.closes.count("client_reset")
        shared.connections.discard(self)
        if shared.stopping and not shared.connections:
            shared.all_closed.set()
        if self.task is not None and self.streaming:
            self.task.cancel()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        # The parser and this connection refer to each other: without the parser, what the
        # connection held (a head that never ended, pipelined requests) goes now, by reference
        # counting, not at a full collection that a frozen heap and a high threshold put off.
        self.parser = None
        self.transport = None
        self.queue.clear()
        self._reset()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.send_mark = None  # the client took enough to drain our buffer: progress
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        """Reading goes on once the client reads its answers and few requests wait their turn."""
        if (self.read_paused and not self.write_paused and len(self.queue) < MAX_PIPELINED // 2
                and self.transport is not None):
            self.read_paused = False
            self.transport.resume_reading()

    # --- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        self.deadline = self.loop.time() + self.shared.header_timeout

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        if self.head_size <= MAX_HEAD_BYTES:
            self.url += url
        else:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size <= MAX_HEAD_BYTES:
            self.headers.append((name.lower(), value))
        else:
            self._head_too_large()

    def _head_too_large(self) -> None:
        """Answered at once, not at the end of a head that may never end."""
        if not self.close_after:
            message = f"Request line and headers are over {MAX_HEAD_BYTES} bytes."
            self._refuse(error_response(HeadTooLarge(message)), "head_too_large")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self.deadline = self.loop.time() + self.shared.body_timeout
        declared = None
        expect = False
        for name, value in self.headers:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                self.refusal = error_response(UnsupportedEncoding(
                    f"Content-Encoding {_quoted(value)} is not supported: send the body uncompressed."))
            elif name == b"transfer-encoding" and value.replace(b" ", b"").lower() != b"chunked":
                self.refusal = error_response(UnsupportedTransfer(
                    f"Transfer-Encoding {_quoted(value)} is not supported: only chunked is."))
        if self.refusal is not None:
            self.too_large = True  # its body is read and dropped like one over the limit
            if expect:
                self._refuse(self.refusal, "unsupported_coding")  # the client waits for our word before sending it
            return
        if declared is not None and declared > self.shared.max_body:
            self.too_large = True
            if expect:
                # The client waits for our word before sending the body: the answer is 413 now.
                self._refuse(self._over_limit(), "body_too_large")
        elif expect and not self.close_after:
            self._expecting()

    def _expecting(self) -> None:
        """A client waits for our word before it sends its body (``Expect: 100-continue``): the app's
        ``before_body`` judges the head first, so that a refused key gets its final answer and no ``100
        Continue`` that would have it upload a body only to read a 401.

        Refused, the connection closes after the answer (``Connection: close``, then a lingering close),
        as RFC 9110 section 10.1.1 lets a server that answers before reading the content: the client may
        or may not send the body now (it need not wait for our word), so where its next request would
        begin is unknown, and reading on for a body that may never come would hold the connection until
        ``body_timeout``. The lingering close drops what still comes, so the client reads the answer
        rather than a reset."""
        check = self.shared.before_body
        if check is not None:
            refused = check(self._head_request())
            if refused is not None:
                self._refuse(refused, "expect_refused")
                return
        if self.task is None and not self.queue and self.transport is not None:
            self.transport.write(_CONTINUE)

    def _head_request(self) -> Request:
        """The request being read, as its head tells it (no body yet)."""
        parser = self.parser
        assert parser is not None  # called from the parser's own callback
        path, query = _target(self.url)
        return Request(parser.get_method().decode("latin-1"), path, self.headers, b"", False,
                       http10=parser.get_http_version() == "1.0", query=query)

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            # Read on and dropped, so the client gets its 413 once it has sent it all; past
            # DISCARD_FACTOR times the limit, that is not worth waiting for.
            self.size += len(body)
            if self.size > DISCARD_FACTOR * self.shared.max_body and not self.close_after:
                self._refuse(self.refusal or self._over_limit(), self._dropped_why())
            return
        self.size += len(body)
        if self.size > self.shared.max_body:
            self.too_large = True
            self.body = []
        elif len(self.body) < MAX_BODY_PARTS:
            self.body.append(body)
        elif not self.close_after:
            # Millions of one-byte chunks cost a Python call and an object each: refused, not held.
            self.too_large = True
            self.body = []
            self._refuse(error_response(InvalidRequest(
                f"Request body came in over {MAX_BODY_PARTS} chunks: send it in fewer, larger ones.")), "bad_request")

    def on_message_complete(self) -> None:
        self.in_head = True
        self.deadline = None
        if self.close_after:  # answered already (413 before its body came)
            self._reset()
            return
        parser = self.parser
        assert parser is not None  # called by the parser itself
        keep_alive = bool(parser.should_keep_alive())
        reject = None
        if self.too_large:
            reject = self.refusal or self._over_limit()
            self.shared.closes.count(self._dropped_why())
        url = self.url
        if url[:1] != b"/" and (url.startswith((b"http://", b"https://"))):
            # The absolute form (``POST http://host/v1/...``), which a server must accept: its path.
            at = url.find(b"/", url.find(b"//") + 2)
            url = url[at:] if at >= 0 else b"/"
        q = url.find(b"?")
        path = (url if q < 0 else url[:q]).decode("latin-1")
        query = b"" if q < 0 else url[q + 1:]
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        method = parser.get_method().decode("latin-1")
        http10 = parser.get_http_version() == "1.0"
        self._enqueue(Request(method, path, self.headers, body, keep_alive, reject, http10, query))
        self._reset()

    def _over_limit(self) -> Reply:
        return error_response(BodyTooLarge(f"Request body is over the limit of {self.shared.max_body} bytes."))

    def _dropped_why(self) -> str:
        """Why a body read and dropped is refused (a reason of ``polyroute.metrics.CLOSE_REASONS``)."""
        return "body_too_large" if self.refusal is None else "unsupported_coding"

    def _refuse(self, reply: Reply, reason: str) -> None:
        """Answer ``reply`` after what is queued, then close: nothing more is read. ``reason`` is counted."""
        if self.close_after:
            return  # closing already: what the parser still finds is not answered
        self.shared.closes.count(reason)
        self.linger = True
        self._enqueue(Request("", _target(self.url)[0], [], b"", False, reply))
        self._end_reading()

    # --- serving --------------------------------------------------------------------

    def _enqueue(self, request: Request) -> None:
        if self.task is None:
            # Served at once, ahead of the steps already queued (polyroute.eager).
            eager = EagerTask(self.loop, self._serve(request))
            self.task = eager.task  # before the step: a request answered in it sets it back to None
            eager.start()
            if self.task is not None and self.task.done():
                self.task = None  # answered in a first step run by the constructor (polyroute.eager)
            return
        self.queue.append(request)
        if len(self.queue) >= MAX_PIPELINED:
            self._pause_reading()

    def _end_reading(self) -> None:
        self.close_after = True
        if self.task is None:
            self._finish()

    async def _serve(self, request: Request) -> None:
        while True:
            if not await self._answer(request):
                # Nothing more is read: requests pipelined behind this one (in the bytes the
                # parser is still reading when an eager step ends here) are not served.
                self.close_after = True
                self.task = None
                self._finish()
                return
            if not self.queue:
                self.task = None
                self.last_active = self.loop.time()
                return
            if self.write_paused:
                # The client does not read what it asked for: the next answer waits until it does
                # (reading is paused meanwhile), so unread answers cannot pile up in our memory.
                await self.drain()
                if self.lost:
                    self.task = None
                    return
            request = self.queue.popleft()
            self._resume_reading()

    async def _answer(self, request: Request) -> bool:
        """Answer one request; whether the connection goes on to the next."""
        try:
            reject = request.reject
            answer: Answer = await self.shared.app(request) if reject is None else self._shaped(request, reject)
        except asyncio.CancelledError:
            if not self.cut:
                raise
            self._uncancel()  # the stop's grace is over: the client learns why it gets no answer
            reply = self._shaped(request, Reply(orjson.dumps(SHUTTING_DOWN), 503))
            self.write(self.shared.head.build(503, reply.head_fields(), True) + reply.body)
            return False
        if self.lost or (self.eof and isinstance(answer, EventStream)):
            # Its client is gone, or stopped sending before a stream began (taken as gone, as it is mid-stream):
            # nothing is sent, and the answer is told so.
            await answer.aclose()
            return False
        # Decided once the answer is ready: a stop begun meanwhile closes the connection after it.
        close = not request.keep_alive or self.shared.stopping or (self.close_after and not self.queue)
        if request.http10 and isinstance(answer, EventStream):
            answer.chunked, close = False, True  # no chunks in HTTP/1.0: the stream ends with the connection
        head = self.shared.head.build(answer.status, answer.head_fields(), close)
        self.streaming = True
        try:
            await answer.send(self, head)
        except asyncio.CancelledError:
            if not (self.lost or self.cut):
                raise
            self._uncancel()  # our own cancellation (the client left, or the stop's grace is over)
            if not self.lost and isinstance(answer, EventStream):
                # Never a stream cut by a stop that looks like a finished one.
                self.write(answer.closing(SHUTTING_DOWN))
            return False
        except Exception:
            # A bug of ours while writing: logged; the client sees the connection end.
            log.exception("unexpected error while sending an answer to %s %s", request.method, request.path)
            return False
        finally:
            self.streaming = False
        return not (close or self.lost)

    def _shaped(self, request: Request, error: Reply) -> Reply:
        shape = self.shared.error_shape
        return error if shape is None else shape(request.path, error)

    def _uncancel(self) -> None:
        current = asyncio.current_task(self.loop)
        if current is not None:
            current.uncancel()

    def _finish(self) -> None:
        """Close after the last answer. A client refused in the middle of its request is most
        likely still sending it, and closing with its bytes unread would reset the connection,
        which can lose the client our answer. So our end is shut (FIN, after what is buffered),
        what still comes is dropped, and the connection closes when the client closes its end
        or after ``LINGER_S`` (a lingering close)."""
        transport = self.transport
        if transport is None or self.lingering:
            return
        if self.linger and not self.lost and transport.can_write_eof():
            self.lingering = True
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    # --- Output, for answers --------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    def paused(self) -> bool:
        return self.write_paused and not self.lost

    def drain(self) -> Awaitable[None]:
        if self.drained is None or self.drained.done():
            self.drained = self.loop.create_future()
        if not self.write_paused or self.lost:
            self.drained.set_result(None)
        return self.drained

    # --- for the server -------------------------------------------------------------

    def busy(self) -> bool:
        return self.task is not None

    def check_deadline(self, now: float) -> None:
        """Answer 408 and close when the head or body being read is late (for the idle sweep).

        Not while reading is paused by us: the client cannot send then."""
        deadline = self.deadline
        if deadline is None or now <= deadline or self.close_after or self.read_paused or self.lost:
            return
        self.deadline = None
        if self.in_head:
            message = f"The request's headers did not arrive within {self.shared.header_timeout:g} s."
        else:
            message = f"The request's body did not arrive within {self.shared.body_timeout:g} s."
        self._refuse(error_response(RequestTimeout(message)), "header_timeout" if self.in_head else "body_timeout")

    def check_send(self, now: float) -> bool:
        """Reset the connection when bytes wait for its client and it has taken none of them for
        ``send_timeout`` (for the sweep, once a second); whether it did.

        Progress is any fall in what waits, in our transport's buffer or in what the kernel holds
        unacknowledged: the kernel tells the transport it may write again only once its own buffer (megabytes
        on loopback) has room for a good share of it, which a slow reader can take a minute to make, while
        each read it makes is acknowledged at once. The clock starts when the sweep first sees bytes waiting,
        so a cut comes at least ``send_timeout`` after the client's last progress, and at most about two
        sweeps later. Nothing of this runs per write: the transport calls ``pause_writing`` and
        ``resume_writing`` only at its buffer's marks, and only a connection with bytes waiting costs more
        here than one method call."""
        transport = self.transport
        if transport is None or self.lost:
            return False
        waiting = transport.get_write_buffer_size()
        if not waiting:
            self.send_mark = None
            return False
        mark = (waiting, _unacknowledged(transport))
        last, self.send_mark = self.send_mark, mark
        if last is None or mark[0] < last[0] or mark[1] < last[1]:
            self.send_since = now
            return False
        if now - self.send_since < self.shared.send_timeout:
            return False
        peer = transport.get_extra_info("peername")
        log.warning("closing the connection of %s: it has stopped reading (none of %d bytes waiting for it "
                    "taken in %g s, send_timeout)", _peer(peer), waiting + mark[1], self.shared.send_timeout)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A reset rather than a FIN queued behind what the client will not read: the kernel lets go of
            # those bytes now instead of offering them to it for minutes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.shared.closes.count("send_timeout")
        # As if the client had gone: connection_lost cancels a stream, whose cleanup frees its upstream.
        transport.abort()
        return True

    def stop_now(self) -> None:
        """The stop's grace period is over: what is still being answered ends with an error saying so."""
        if self.task is not None and not self.task.done() and not self.lost:
            self.cut = True
            self.task.cancel(SHUTDOWN)

    def idle_for(self, now: float) -> float:
        """Seconds since this connection last read or answered anything (for the idle sweep)."""
        if self.reads != self.reads_seen:  # a request (or its body) is still coming in
            self.reads_seen = self.reads
            self.last_active = now
        return now - self.last_active

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()



def _unacknowledged(transport: asyncio.Transport) -> int:
    """Bytes the kernel holds for the peer that it has not acknowledged yet; 0 where that cannot be asked."""
    sock = transport.get_extra_info("socket")
    if _OUTQ is None or sock is None:
        return 0
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, bytes(4)))[0]
    except OSError:
        return 0
    return queued


def _peer(peer: object) -> str:
    """A client's address as a log shows it: ``host:port``, or what the transport gave."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) if peer else "a client"
