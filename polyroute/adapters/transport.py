"""A small HTTP/1.1 client for the hot path: keep-alive pools on asyncio protocols.

Every request the gateway forwards goes through here, so it does as little as it
can: one ``write`` per request, responses parsed by ``httptools`` (chunked
transfer decoded there), no coroutine per connection, no task per read. It speaks
only what upstream model APIs need: POST with a body, JSON or a streamed body
back, TLS for hosted providers. Errors are this module's own small classes; the
adapters' shared HTTP layer translates them into polyroute's error tree.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from polyroute import eager

_HIGH_WATER = 1 << 20  # pause reading past 1 MiB of unread body


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
        self.complete = False
        self.received_any = False
        self.error: TransportError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiting: asyncio.Task[object] | None = None  # the task that set the waiter
        self.step_now = False  # the head came: the waiting task's next step runs at once
        self.headers_done = False
        self.paused = False
        self.reusable = False

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
            self._fail(ConnectionBroken(f"invalid HTTP response ({exc})"))
        if self.step_now:
            # A response's head (with a stream's first token, or a whole answer) is relayed ahead
            # of the chunks of streams already flowing (polyroute.eager); after the parser is done.
            self.step_now = False
            eager.step_now(self.waiting)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(ConnectionBroken("connection closed by upstream" if exc is None else f"connection lost ({exc})"))

    def pause_writing(self) -> None:  # request bodies are small; nothing to throttle
        pass

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
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
        # Read here: once the message is done the parser has reset its flags.
        assert self.parser is not None
        self.reusable = self.parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- request side ----------------------------------------------------------------------

    def start(self, request: bytes) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.body, self.buffered = 0, {}, deque(), 0
        self.complete = self.headers_done = self.received_any = self.reusable = False
        self.error = None
        assert self.transport is not None
        self.transport.write(request)

    def keep_alive(self) -> bool:
        return self.complete and self.reusable and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

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
        while not self.body:
            if self.complete:
                return None
            await self.wait(timeout)
        data = self.body.popleft()
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


class Response:
    """Status and headers are read; the body is read on demand."""

    def __init__(self, conn: _Conn, pool: Pool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._released = False

    async def read(self, timeout: float | None = None) -> bytes:
        parts = []
        while (data := await self._conn.next_body(timeout)) is not None:
            parts.append(data)
        self.release()
        return b"".join(parts)

    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next piece of body, or None at its end (the connection then goes back to the pool)."""
        data = await self._conn.next_body(timeout)
        if data is None:
            self.release()
        return data

    async def iter_bytes(self, timeout: float | None = None) -> AsyncIterator[bytes]:
        while (data := await self.next(timeout)) is not None:
            yield data

    async def iter_lines(self, timeout: float | None = None) -> AsyncIterator[str]:
        """Lines without their ending; a last line with no newline is yielded too."""
        rest = b""
        async for data in self.iter_bytes(timeout):
            rest += data
            *lines, rest = rest.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if rest:
            yield rest.removesuffix(b"\r").decode("utf-8", "replace")

    def release(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it."""
        if self._released:
            return
        self._released = True
        self._pool.put_back(self._conn)


class Pool:
    """Keep-alive connections to one origin."""

    def __init__(self, base_url: str, connect_timeout: float, max_idle: int = 256) -> None:
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
        self.ssl = ssl.create_default_context() if self.https else None

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    _Conn, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.https else None
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host_header} within {self.connect_timeout}s") from None
        except socket.gaierror:  # what an operator must fix: the name, or the address that refused
            raise ConnectFailed(f"cannot resolve host {self.host}") from None
        except ConnectionRefusedError:
            raise ConnectFailed(f"connection refused by {self.host}:{self.port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {self.host_header} ({type(exc).__name__})") from None
        return conn

    def _head(self, method: str, url: str, headers: Mapping[str, str], length: int) -> bytes:
        path = url[len(self.origin):] if url.startswith(self.origin) else url
        lines = [f"{method} {path or '/'} HTTP/1.1", f"host: {self.host_header}", f"content-length: {length}",
                 "accept-encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> Response:
        request = self._head(method, url, headers, len(body)) + body
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
        conn = await self._connect()
        conn.start(request)
        try:
            await conn.headers_ready(timeout)
        except BaseException:
            conn.close()
            raise
        return Response(conn, self)

    def put_back(self, conn: _Conn) -> None:
        if conn.keep_alive() and len(self.idle) < self.max_idle:
            conn.parser = None
            self.idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop().close()
