"""A small HTTP/1.1 client for the hot path: keep-alive pools on asyncio protocols.

Every request the gateway forwards goes through here, so it does as little as it
can: one ``write`` per request, responses parsed by ``httptools`` (chunked
transfer decoded there), no coroutine per connection, no task per read. It speaks
only what upstream model APIs need: POST with a body, JSON or a streamed body
back, TLS for hosted providers, forward proxies (``polyroute.adapters.proxy``).
Errors are this module's own small classes; the adapters' shared HTTP layer
translates them into polyroute's error tree.

An upstream is not trusted to be sane: a response head is capped in bytes and in
headers (checked per header and per read, since the parser reports a header only
once it is whole), a whole body and a streamed line in bytes; past a cap the
connection is closed and ResponseTooLarge raised. Each check is an integer
comparison on counters the callbacks keep anyway.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import NoReturn, cast
from urllib.parse import urlsplit

import httptools

from polyroute import eager
from polyroute.adapters.proxy import Proxy, ProxyRefused, open_tunnel

_HIGH_WATER = 1 << 18  # pause reading past 256 KiB of unread body
# A reader served this many body bytes already buffered, without waiting, lets the other tasks
# run once: a fast upstream must not hold the event loop for a megabyte of stream per turn.
TURN_BYTES = 64 * 1024
# A response head past either limit is refused: a hostile or broken upstream must not make the
# parser buffer (or this client join) megabytes of headers while every other request waits.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# A line of a streamed body (NDJSON) longer than this is refused, not buffered on and on.
MAX_LINE_BYTES = 1 << 20


class TransportError(Exception):
    """Base of this module's errors."""


class ConnectFailed(TransportError):
    """Refused, unreachable, DNS or TLS failure."""


class ConnectTimeout(TransportError):
    """No connection within the connect timeout."""


class ReadTimeout(TransportError):
    """No response headers, or no body bytes, within the timeout."""


class ConnectionBroken(TransportError):
    """Closed or reset before the response was complete, or not valid HTTP."""


class ResponseTooLarge(TransportError):
    """A response head, body or line past its limit: the connection is closed, nothing more read."""


class PoolFull(TransportError):
    """The backend's connection limit is reached and its wait queue is full, or no connection freed in time."""


class _HeadLimit(Exception):
    """Raised inside a parser callback to stop parsing a head past its limits."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call, and wait() runs per read.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.unwaited = 0  # body bytes handed out since the reader last let the loop run
        self.complete = False
        self.received_any = False
        self.error: TransportError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiting: asyncio.Task[object] | None = None  # the task that set the waiter
        self.step_now = False  # the head came: the waiting task's next step runs at once
        self.headers_done = False
        self.interim = False  # parsing a 1xx interim answer, which the real one follows
        self.paused = False
        self.reusable = False
        self.head_bytes = 0  # bytes received while the head was incomplete
        self.header_bytes = 0  # bytes of the headers parsed so far
        self.header_count = 0
        self.repeated: dict[str, list[str]] | None = None  # values of repeated headers, joined once at the end
        self.on_gone: Callable[[], None] | None = None  # told once when the connection is closed

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.parser is None:
            self._fail(ConnectionBroken("data received with no request in flight"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionBroken("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # What a callback raised comes wrapped (HttpParserCallbackError), the original as its context.
            cause = exc.__context__
            self._fail(ResponseTooLarge(str(cause)) if isinstance(cause, _HeadLimit)
                       else ConnectionBroken(f"invalid HTTP response ({exc})"))
        if not self.headers_done and self.error is None:
            # httptools reports a header only once it is whole: a value that never ends is counted here.
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(ResponseTooLarge(f"response head over {MAX_HEAD_BYTES} bytes"))
        if self.step_now:
            # A response's head (with a stream's first token, or a whole answer) is relayed ahead
            # of the chunks of streams already flowing (polyroute.eager); after the parser is done.
            self.step_now = False
            eager.step_now(self.waiting)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()
        if not self.complete:
            self._fail(ConnectionBroken("connection closed by upstream" if exc is None else f"connection lost ({exc})"))

    def pause_writing(self) -> None:  # request bodies are small; nothing to throttle
        pass

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value)
        if self.header_count > MAX_HEADERS or self.header_bytes > MAX_HEAD_BYTES:
            raise _HeadLimit(f"response head over {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key not in self.headers:
            self.headers[key] = text
            return
        if self.repeated is None:
            self.repeated = {}
        self.repeated.setdefault(key, [self.headers[key]]).append(text)

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows on the same connection.
            self.interim = True
            self.headers, self.repeated = {}, None
            self.head_bytes = self.header_bytes = self.header_count = 0
            return
        if self.repeated is not None:
            for key, values in self.repeated.items():
                self.headers[key] = ", ".join(values)
            self.repeated = None
        self.status = status
        self.headers_done = True
        self.step_now = self.waiter is not None
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:  # the end of an interim answer, not of the answer
            self.interim = False
            return
        # Read here: once the message is done the parser has reset its flags.
        assert self.parser is not None
        self.reusable = self.parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- request side ----------------------------------------------------------------------

    def start(self, request: bytes) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.body, self.buffered = 0, {}, deque(), 0
        self.complete = self.headers_done = self.received_any = self.reusable = self.interim = False
        self.error = None
        self.head_bytes = self.header_bytes = self.header_count = 0
        self.repeated = None
        assert self.transport is not None
        self.transport.write(request)

    def keep_alive(self) -> bool:
        return self.complete and self.reusable and not self.closed

    def close(self) -> None:
        self._gone()
        if self.transport is not None:
            self.transport.close()

    def _gone(self) -> None:
        self.closed = True
        if self.on_gone is not None:
            on_gone, self.on_gone = self.on_gone, None
            on_gone()

    async def wait(self, timeout: float | None) -> None:
        """Wait until the parser makes progress (headers, body, end) or fails."""
        if self.error is not None:
            raise self.error
        loop = self.loop
        self.waiter = loop.create_future()
        self.waiting = asyncio.current_task(loop)
        timer = loop.call_later(timeout, self._timeout) if timeout is not None else None
        try:
            await self.waiter
        finally:
            self.waiter = self.waiting = None
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error

    async def headers_ready(self, timeout: float | None) -> None:
        while not self.headers_done:
            await self.wait(timeout)

    async def next_body(self, timeout: float | None) -> bytes | None:
        """The next piece of body, or None at the end."""
        if not self.body:
            self.unwaited = 0
            while not self.body:
                if self.complete:
                    return None
                await self.wait(timeout)
        elif self.unwaited > TURN_BYTES:
            self.unwaited = 0
            await asyncio.sleep(0)
        data = self.body.popleft()
        self.unwaited += len(data)
        self.buffered -= len(data)
        if self.paused and self.buffered < _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def _timeout(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ReadTimeout("upstream sent nothing within the timeout"))

    def _fail(self, err: TransportError) -> None:
        if self.error is None:
            self.error = err
        self.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class BodyReader(ABC):
    """What every upstream response reads its body with, over its own ``next``."""

    headers: Mapping[str, str]

    @abstractmethod
    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next piece of body, or None at its end (the connection then goes back to the pool)."""

    @abstractmethod
    def _too_large(self, limit: int) -> NoReturn:
        """Drop the connection and raise ResponseTooLarge."""

    async def read(self, timeout: float | None = None, limit: int | None = None) -> bytes:
        """The whole body; past ``limit`` bytes the connection is closed and ResponseTooLarge raised."""
        declared = self.headers.get("content-length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            self._too_large(limit)
        parts = []
        size = 0
        while (data := await self.next(timeout)) is not None:
            size += len(data)
            if limit is not None and size > limit:
                self._too_large(limit)
            parts.append(data)
        return b"".join(parts)

    async def iter_bytes(self, timeout: float | None = None) -> AsyncIterator[bytes]:
        while (data := await self.next(timeout)) is not None:
            yield data

    def iter_lines(self, timeout: float | None = None) -> AsyncIterator[str]:
        """Lines without their ending (``body_lines``)."""
        return body_lines(self.iter_bytes(timeout), self._too_large)


class Response(BodyReader):
    """Status and headers are read; the body is read on demand."""

    def __init__(self, conn: _Conn, pool: Pool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._released = False

    def _too_large(self, limit: int) -> NoReturn:
        self._released = True
        self._conn.close()
        raise ResponseTooLarge(f"response body over {limit} bytes")

    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next piece of body, or None at its end (the connection then goes back to the pool)."""
        data = await self._conn.next_body(timeout)
        if data is None:
            self.release()
        return data

    def release(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it."""
        if self._released:
            return
        self._released = True
        self._pool.put_back(self._conn)


class Pool:
    """Keep-alive connections to one origin, directly or through a forward proxy.

    With ``max_connections`` set, at most that many are open at once; a request
    finding none free waits its turn (FIFO, within its timeout) among at most
    ``max_waiting`` others, and past that fails at once with PoolFull.
    """

    def __init__(
        self, base_url: str, connect_timeout: float, max_idle: int = 256, *, proxy: Proxy | None = None,
        ca_bundle: str | None = None, max_connections: int | None = None, max_waiting: int = 64,
    ) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        default_port = (self.https and self.port == 443) or (not self.https and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle: list[_Conn] = []
        self.ssl = ssl.create_default_context(cafile=ca_bundle) if self.https else None
        self.proxy = proxy
        # Plain HTTP through a proxy: absolute-form request lines, and the proxy's credentials on each.
        self.forward = proxy is not None and not self.https
        self.max_connections = max_connections
        self.max_waiting = max_waiting
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def _connect(self) -> _Conn:
        via = f" via proxy {self.proxy.where}" if self.proxy is not None else ""
        try:
            return await asyncio.wait_for(self._open(), self.connect_timeout)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host_header}{via} within {self.connect_timeout}s") from None
        except ProxyRefused as exc:
            raise ConnectFailed(f"cannot connect to {self.host_header}: {exc}") from None
        except socket.gaierror:  # what an operator must fix: the name, or the address that refused
            name = self.proxy.host if self.proxy is not None else self.host
            raise ConnectFailed(f"cannot resolve host {name}{via}") from None
        except ConnectionRefusedError:
            raise ConnectFailed(f"connection refused by {self.host}:{self.port}{via}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {self.host_header}{via} ({type(exc).__name__})") from None

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        if proxy is None or not self.https:
            host, port = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
            _, conn = await loop.create_connection(
                _Conn, host, port, ssl=self.ssl, server_hostname=self.host if self.https else None
            )
            return conn
        assert self.ssl is not None
        raw = await open_tunnel(proxy, self.host, self.port)
        conn = _Conn()
        try:
            tls = await loop.start_tls(raw, conn, self.ssl, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        if tls is None:
            raise ConnectionResetError("the tunnel closed during the TLS handshake")
        conn.connection_made(tls)
        return conn

    def _head(self, method: str, url: str, headers: Mapping[str, str], length: int) -> bytes:
        path = url[len(self.origin):] if url.startswith(self.origin) else url
        target = f"{self.origin}{path or '/'}" if self.forward else path or "/"
        lines = [f"{method} {target} HTTP/1.1", f"host: {self.host_header}", f"content-length: {length}",
                 "accept-encoding: identity"]
        if self.forward and self.proxy is not None and self.proxy.authorization:
            lines.append(f"proxy-authorization: {self.proxy.authorization}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> Response:
        request = self._head(method, url, headers, len(body)) + body
        while True:
            while self.idle:
                conn = self.idle.pop()
                if conn.closed:
                    continue
                conn.start(request)
                try:
                    await conn.headers_ready(timeout)
                except ConnectionBroken:
                    if conn.received_any:
                        raise
                    continue  # the upstream closed an idle connection: it never saw this request
                except BaseException:
                    conn.close()
                    raise
                return Response(conn, self)
            if self.max_connections is None or self.open < self.max_connections:
                break
            await self._wait_turn(timeout)
        self.open += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._free()
            raise
        conn.on_gone = self._free
        conn.start(request)
        try:
            await conn.headers_ready(timeout)
        except BaseException:
            conn.close()
            raise
        return Response(conn, self)

    async def _wait_turn(self, timeout: float | None) -> None:
        """Wait until a connection is put back or closed; PoolFull when the queue is full or time is up."""
        if len(self.waiters) >= self.max_waiting:
            raise PoolFull(
                f"connection limit reached: {self.open} of {self.max_connections} connections busy "
                f"and {len(self.waiters)} requests waiting"
            )
        turn = asyncio.get_running_loop().create_future()
        self.waiters.append(turn)
        try:
            await asyncio.wait_for(turn, timeout)
        except TimeoutError:
            raise PoolFull(
                f"connection limit reached: none of {self.max_connections} connections freed within {timeout}s"
            ) from None
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # woken, then cancelled: the turn passes on
            raise
        finally:
            if turn in self.waiters:
                self.waiters.remove(turn)

    def _next_turn(self) -> None:
        while self.waiters:
            turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def _free(self) -> None:
        self.open -= 1
        self._next_turn()

    def put_back(self, conn: _Conn) -> None:
        if conn.keep_alive() and len(self.idle) < self.max_idle:
            conn.parser = None
            self.idle.append(conn)
            self._next_turn()
        else:
            conn.close()

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop().close()


async def body_lines(chunks: AsyncIterator[bytes], too_large: Callable[[int], NoReturn]) -> AsyncIterator[str]:
    """Lines without their ending; a last line with no newline is yielded too.

    A line longer than ``MAX_LINE_BYTES`` calls ``too_large`` (which raises). The
    unended line's pieces are kept apart and joined once, when its end comes.
    """
    pending: list[bytes] = []
    size = 0
    async for data in chunks:
        if b"\n" not in data:
            pending.append(data)
            size += len(data)
            if size > MAX_LINE_BYTES:
                too_large(MAX_LINE_BYTES)
            continue
        if pending:
            pending.append(data)
            data = b"".join(pending)
        *lines, last = data.split(b"\n")
        for line in lines:
            if len(line) > MAX_LINE_BYTES:
                too_large(MAX_LINE_BYTES)
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
        pending, size = ([last], len(last)) if last else ([], 0)
    if pending:
        yield b"".join(pending).removesuffix(b"\r").decode("utf-8", "replace")
