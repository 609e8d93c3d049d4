"""HTTP plumbing shared by every HTTP adapter.

This is the one place where httpx exceptions and upstream HTTP statuses become
polyroute errors. Provider-specific readings of an error body (a region block, a
context-length refusal) are passed in by each adapter as a ``BodyReader``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import orjson

from polyroute.config import BackendConfig
from polyroute.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBlocked,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an upstream's error body says, read by the adapter that knows its format."""

    message: str
    code: str | None = None
    blocked: bool = False
    context_exceeded: bool = False
    auth: bool = False


BodyReader = Callable[[int, bytes], ErrorInfo]


def make_client(config: BackendConfig) -> httpx.AsyncClient:
    """One pooled client per backend; the read timeout is enforced by the failover layer."""
    timeout = httpx.Timeout(connect=config.connect_timeout, read=None, write=config.timeout, pool=config.timeout)
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=30)
    return httpx.AsyncClient(timeout=timeout, limits=limits, http2=False, trust_env=False)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


def error_from_status(
    status: int,
    body: bytes,
    headers: httpx.Headers,
    reader: BodyReader,
    *,
    backend: str,
    model: str,
) -> UpstreamError:
    info = reader(status, body)
    kw = {"backend": backend, "model": model, "upstream_status": status, "code": info.code}
    msg = info.message[:500]
    if info.blocked or status == 451:
        return UpstreamBlocked(msg, **kw)
    if status == 401 or info.auth:
        return UpstreamAuthError(msg, **kw)
    if status == 403:
        return UpstreamAuthError(msg, **kw)
    if status == 429:
        return UpstreamRateLimited(msg, retry_after=parse_retry_after(headers.get("retry-after")), **kw)
    if status == 408:
        return UpstreamTimeout(msg, **kw)
    if status >= 500:
        return UpstreamServerError(msg, **kw)
    if info.context_exceeded:
        return UpstreamContextExceeded(msg, **kw)
    if status == 404:
        # The backend does not know the model: another candidate may.
        return UpstreamServerError(msg, **kw)
    if 400 <= status < 500:
        return UpstreamRejected(msg, **kw)
    return UpstreamBadResponse(f"unexpected status {status}", **kw)


def error_from_exception(exc: Exception, *, backend: str, model: str) -> UpstreamError:
    kw = {"backend": backend, "model": model}
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"timed out ({type(exc).__name__})", **kw)
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.ProxyError)):
        return UpstreamUnavailable(f"connection failed ({type(exc).__name__})", **kw)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return UpstreamUnavailable(f"connection broken ({type(exc).__name__})", **kw)
    if isinstance(exc, orjson.JSONDecodeError):
        return UpstreamBadResponse("malformed JSON from upstream", **kw)
    if isinstance(exc, (KeyError, TypeError, ValueError, IndexError)):
        return UpstreamBadResponse(f"unexpected response shape ({type(exc).__name__})", **kw)
    return UpstreamError(f"{type(exc).__name__}", **kw)


class HttpBackend:
    """The request/response half every HTTP adapter shares: post, classify, stream lines."""

    def __init__(self, name: str, config: BackendConfig, reader: BodyReader) -> None:
        self.name = name
        self.config = config
        self.reader = reader
        self.client = make_client(config)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _timeout(self, timeout: float | None) -> httpx.Timeout:
        t = timeout or self.config.timeout
        # read applies per socket read: it bounds the wait for headers and the body.
        return httpx.Timeout(connect=min(self.config.connect_timeout, t), read=t, write=t, pool=t)

    async def post_json(
        self, url: str, payload: object, headers: dict[str, str], model: str, timeout: float | None
    ) -> object:
        try:
            resp = await self.client.post(
                url, content=orjson.dumps(payload), headers=headers, timeout=self._timeout(timeout)
            )
            if resp.status_code >= 400:
                raise error_from_status(
                    resp.status_code, resp.content, resp.headers, self.reader, backend=self.name, model=model
                )
            return orjson.loads(resp.content)
        except UpstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into the error tree here
            raise error_from_exception(exc, backend=self.name, model=model) from exc

    @asynccontextmanager
    async def open_stream(
        self, url: str, payload: object, headers: dict[str, str], model: str, timeout: float | None
    ) -> AsyncIterator[httpx.Response]:
        """Open a streaming POST; raise a classified error when the status says failure."""
        req = self.client.build_request(
            "POST", url, content=orjson.dumps(payload), headers=headers, timeout=self._timeout(timeout)
        )
        try:
            resp = await self.client.send(req, stream=True)
        except Exception as exc:  # noqa: BLE001
            raise error_from_exception(exc, backend=self.name, model=model) from exc
        try:
            if resp.status_code >= 400:
                body = await resp.aread()
                raise error_from_status(
                    resp.status_code, body, resp.headers, self.reader, backend=self.name, model=model
                )
            yield resp
        finally:
            await resp.aclose()

    async def lines(self, resp: httpx.Response, model: str) -> AsyncIterator[str]:
        try:
            async for line in resp.aiter_lines():
                yield line
        except UpstreamError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise error_from_exception(exc, backend=self.name, model=model) from exc


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as (event, data) pairs; multi-line data joined by newlines."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


def json_error_reader(status: int, body: bytes) -> ErrorInfo:
    """Read ``{"error": {"message", "type", "code"}}`` (OpenAI and most compatibles)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return ErrorInfo(message=text or f"HTTP {status}")
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, str):
        return ErrorInfo(message=err)
    if not isinstance(err, dict):
        detail = doc.get("detail") or doc.get("message") if isinstance(doc, dict) else None
        return ErrorInfo(message=str(detail or f"HTTP {status}"))
    code = err.get("code")
    code_s = str(code) if code is not None else None
    etype = str(err.get("type") or "")
    message = str(err.get("message") or etype or f"HTTP {status}")
    blocked = code_s in BLOCK_CODES or etype in BLOCK_CODES
    context = code_s in CONTEXT_CODES or etype in CONTEXT_CODES
    auth = code_s in AUTH_CODES or etype in AUTH_CODES
    return ErrorInfo(message=message, code=code_s, blocked=blocked, context_exceeded=context, auth=auth)


# Structured codes providers document for these cases.
BLOCK_CODES = frozenset({"unsupported_country_region_territory", "region_not_supported", "unsupported_region"})
CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length", "context_window_exceeded"})
AUTH_CODES = frozenset({"invalid_api_key", "authentication_error", "incorrect_api_key"})
