"""The upstream client on aiohttp, behind the interface of ``polyroute.adapters.transport``.

An alternative to the home-made client, chosen with ``[gateway] upstream_client =
"aiohttp"`` (or a backend's own ``upstream_client``), so that both can be measured
side by side in ``bench/run``. It installs with the ``aiohttp`` extra.

One ``ClientSession`` per backend, opened on the first request (a session belongs
to the running loop). What the adapters rely on is kept: the same error classes
(aiohttp's exceptions are translated here, and only here), the same caps (a response
head by line, field and header count, a whole body by ``limit``, a streamed line by
``MAX_LINE_BYTES``), the same ``max_connections`` / ``max_waiting`` queue with
PoolFull, the proxy that ``proxy_for`` resolved, the backend's CA bundle, bodies
passed through undecoded.

One difference: aiohttp caps a head per line and per header count, not in total, so
a head of many long headers is refused after it was read (at most ``MAX_HEADERS``
fields of ``MAX_HEAD_BYTES`` each), not while it arrives.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import NoReturn

import aiohttp
from aiohttp import http_exceptions

from polyroute.adapters.proxy import Proxy
from polyroute.adapters.transport import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    BodyReader,
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    PoolFull,
    ReadTimeout,
    ResponseTooLarge,
    TransportError,
)

# Idle keep-alive connections are closed after this many seconds (aiohttp's default is 15).
_KEEPALIVE_S = 60.0
_DNS_CACHE_S = 300


def translate(exc: BaseException, where: str) -> TransportError:
    """aiohttp's (and asyncio's) exception as this package's transport error."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"no connection to {where} within the connect timeout")
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return ReadTimeout("upstream sent nothing within the timeout")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ConnectFailed(f"cannot resolve host {where}")
    if isinstance(exc, (aiohttp.ClientHttpProxyError, aiohttp.ClientProxyConnectionError)):
        return ConnectFailed(f"cannot connect to {where}: the proxy refused or failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = getattr(exc, "os_error", None) or exc  # a certificate error carries no os_error
        return ConnectFailed(f"cannot connect to {where} ({type(cause).__name__})")
    if isinstance(exc, aiohttp.ClientResponseError):
        if _head_too_large(exc):
            return ResponseTooLarge(f"response head over {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes")
        return ConnectionBroken(f"invalid HTTP response ({exc.message})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionBroken("connection closed by upstream")
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError)):
        return ConnectionBroken(f"connection lost ({type(exc).__name__})")
    return ConnectionBroken(f"upstream client error ({type(exc).__name__})")


def _head_too_large(exc: BaseException) -> bool:
    # The parser's own error is the cause of the cause: ClientResponseError <- HttpProcessingError <- it.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, http_exceptions.LineTooLong):
            return True
        # aiohttp has no class of its own for too many headers; this is the one message it raises.
        if isinstance(cause, http_exceptions.BadHttpMessage) and "Too many headers" in cause.message:
            return True
        cause = cause.__cause__
    return False


class AioResponse(BodyReader):
    """Status and headers are read; the body is read on demand, in the pieces the socket gave."""

    def __init__(self, resp: aiohttp.ClientResponse, pool: AioPool) -> None:
        self._resp = resp
        self._pool = pool
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self._released = False

    def _too_large(self, limit: int) -> NoReturn:
        self._close()
        raise ResponseTooLarge(f"response body over {limit} bytes")

    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next piece of body, or None at its end (the connection then goes back to the pool)."""
        try:
            if timeout is None:
                data = await self._resp.content.readany()
            else:
                async with asyncio.timeout(timeout):
                    data = await self._resp.content.readany()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            self._close()
            raise translate(exc, self._pool.where) from None
        except BaseException:
            self._close()
            raise
        if not data:
            self.release()
            return None
        return data

    def release(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it."""
        if self._released:
            return
        self._released = True
        # aiohttp keeps the connection only when the payload is at its end; else it closes it.
        self._resp.release()
        self._pool.put_back()

    def _close(self) -> None:
        if self._released:
            return
        self._released = True
        self._resp.close()
        self._pool.put_back()


class AioPool:
    """Keep-alive connections to one origin on an aiohttp session, with the home-made pool's limits."""

    def __init__(
        self, base_url: str, connect_timeout: float, *, proxy: Proxy | None = None,
        ca_bundle: str | None = None, max_connections: int | None = None, max_waiting: int = 64,
    ) -> None:
        self.where = base_url.split("://", 1)[-1].split("/", 1)[0]
        self.connect_timeout = connect_timeout
        self.https = base_url.startswith("https:")
        self.ca_bundle = ca_bundle
        self.proxy = proxy
        self.proxy_url = f"http://{proxy.host}:{proxy.port}" if proxy is not None else None
        # The proxy's credentials: on the CONNECT for an https origin, on each request for a plain one.
        auth = {"proxy-authorization": proxy.authorization} if proxy is not None and proxy.authorization else {}
        self.proxy_headers = auth if self.https and auth else None
        self.extra_headers = {"accept-encoding": "identity", **({} if self.https else auth)}
        self.max_connections = max_connections
        self.max_waiting = max_waiting
        self.busy = 0  # requests holding a connection (or opening one), counted only under a limit
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=self.ca_bundle) if self.https else False
            connector = aiohttp.TCPConnector(
                limit=self.max_connections or 0, ttl_dns_cache=_DNS_CACHE_S, keepalive_timeout=_KEEPALIVE_S,
                ssl=tls,
            )
            self.session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False,
                # sock_read unset: a read's own timeout applies (streams are bounded by the failover layer).
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                max_line_size=MAX_HEAD_BYTES, max_field_size=MAX_HEAD_BYTES, max_headers=MAX_HEADERS,
                skip_auto_headers=("User-Agent",),
            )
        return self.session

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> AioResponse:
        session = self._session()
        if self.max_connections is not None:
            await self._take_turn(timeout)
        try:
            if timeout is None:
                resp = await self._send(session, method, url, headers, body)
            else:
                async with asyncio.timeout(timeout):
                    resp = await self._send(session, method, url, headers, body)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            self.put_back()
            raise translate(exc, self.where) from None
        except BaseException:
            self.put_back()
            raise
        if sum(len(k) + len(v) for k, v in resp.raw_headers) > MAX_HEAD_BYTES:
            resp.close()
            self.put_back()
            raise ResponseTooLarge(f"response head over {MAX_HEAD_BYTES} bytes")
        return AioResponse(resp, self)

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> aiohttp.ClientResponse:
        return await session.request(
            method, url, headers={**self.extra_headers, **headers}, data=body,
            proxy=self.proxy_url, proxy_headers=self.proxy_headers, allow_redirects=False,
        )

    async def _take_turn(self, timeout: float | None) -> None:
        """A place among ``max_connections``: at once, or in FIFO turn; PoolFull past the queue or the time."""
        assert self.max_connections is not None
        if self.busy < self.max_connections and not self.waiters:
            self.busy += 1
            return
        if len(self.waiters) >= self.max_waiting:
            raise PoolFull(
                f"connection limit reached: {self.busy} of {self.max_connections} connections busy "
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
                self.put_back()  # given the place, then cancelled: it passes on
            raise
        finally:
            if turn in self.waiters:
                self.waiters.remove(turn)

    def put_back(self) -> None:
        """A place is free again: the next waiter takes it, or the count drops."""
        if self.max_connections is None:
            return
        while self.waiters:
            turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the place passes on: busy stays as it is
                return
        self.busy -= 1

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
