"""HTTP plumbing shared by every HTTP adapter.

This is the one place where transport exceptions and upstream HTTP statuses
become polyroute errors. Provider-specific readings of an error body (a region block, a
context-length refusal, an account that cannot pay, a model that does not exist) are
passed in by each adapter as a ``BodyReader`` (``polyroute.adapters.error_body``, where the
codes shared by OpenAI-compatible providers are read, in ``json_error_reader``).
"""

from __future__ import annotations

import datetime
import email.utils
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import orjson

from polyroute.adapters.base import Adapter
from polyroute.adapters.error_body import (
    BILLING_WORDS,
    IN_BAND_RATE_CODES,
    RETRY_AFTER_CEILING,
    BodyReader,
    ErrorInfo,
    json_error_reader,
    wait_said,
)
from polyroute.adapters.proxy import proxy_for
from polyroute.adapters.shape import too_deep
from polyroute.adapters.transport import (
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Pool,
    PoolFull,
    ReadTimeout,
    ResponseTooLarge,
    TransportError,
)
from polyroute.adapters.upstream import UpstreamPool, UpstreamResponse
from polyroute.config import HttpBackendConfig
from polyroute.errors import (
    ConfigError,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamParamRefused,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from polyroute.redact import Redactor

# How much of an upstream's error message is kept.
MESSAGE_CHARS = 500


def redacting(reader: BodyReader, secret: str | None) -> BodyReader:
    """A reader that blanks ``secret`` (and runs of it) out of what an error says: some upstreams echo the key they
    got, in the message or anywhere else."""
    if not secret:
        return reader

    redact = Redactor([secret])

    def read(status: int, body: bytes) -> ErrorInfo:
        info = reader(status, body)
        return replace(info, message=redact.thoroughly(info.message, MESSAGE_CHARS),
                       code=None if info.code is None else redact.thoroughly(info.code),
                       param=None if info.param is None else redact.thoroughly(info.param))

    return read


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (delay-seconds or an HTTP-date); None when it says nothing usable.

    Never infinite, never NaN, never negative: how long a backend stays out is
    clamped later, to ``[gateway.breakers] max_retry_after``.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:  # an HTTP-date is GMT; a date without a zone is read as such
            parsed = parsed.replace(tzinfo=datetime.UTC)
        seconds = parsed.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CEILING)




def error_from_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    reader: BodyReader,
    *,
    backend: str,
    model: str,
) -> UpstreamError:
    info = reader(status, body)
    cls = _status_class(status, info)
    msg = info.message[:MESSAGE_CHARS] if cls is not UpstreamBadResponse else f"unexpected status {status}"
    kw: dict[str, Any] = {"backend": backend, "model": model, "upstream_status": status, "code": info.code}
    if info.scope is not None:
        kw["scope"] = info.scope
    retry_after = retry_after_of(headers)
    if retry_after is None and status == 429:
        retry_after = wait_said(info, headers)
    if cls is UpstreamBilling and status == 402 and retry_after is not None and not info.billing:
        # A 402 that says when to come back is a limit on spend in flight (OpenRouter's
        # in_flight_budget_exhausted), not an empty account.
        cls = UpstreamRateLimited
    if cls is UpstreamRateLimited:
        return UpstreamRateLimited(msg, retry_after=retry_after, **kw)
    if cls is UpstreamServerError and status == 503 and retry_after:
        return UpstreamServerError(msg, retry_after=retry_after, **kw)
    if cls is UpstreamBilling:
        return UpstreamBilling(billing_words(backend, status, info), **kw)
    if cls is UpstreamParamRefused:
        refused = UpstreamParamRefused(msg, param=info.refused_param, always=info.refused_always, **kw)
        if status == 413:
            refused.status = 413  # too large for this model's allowance: what the client hears if for every one
        return refused
    err = cls(msg, **kw)
    if cls is UpstreamRejected:
        err.param = info.param
    if cls is UpstreamRejected and status == 413:
        err.status = 413  # the request is too large for this provider: the client hears so
    return err


def error_in_band(body: bytes, reader: BodyReader, *, backend: str, model: str) -> UpstreamError:
    """An error event inside a stream whose status was 200: the error its code would have been as a status.

    The status is the one its code names (OpenRouter sends HTTP statuses as codes), 429 for a
    rate limit's code, else 500; the error reader then finds billing, auth, a missing model or
    a refusal by code, as for any status.
    """
    code = reader(500, body).code or _error_type(body)
    status = int(code) if len(code) == 3 and code.isascii() and code.isdigit() and 400 <= int(code) <= 599 else (
        429 if code in IN_BAND_RATE_CODES else 500)
    return error_from_status(status, body, {}, reader, backend=backend, model=model)


def _error_type(body: bytes) -> str:
    """``error.type`` of an OpenAI-shaped body (Moonshot names its errors only there); "" if none."""
    try:
        err = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return str(err.get("type") or "") if isinstance(err, dict) else ""


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (openai-python reads it first; Azure and others send it), else ``retry-after``."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return min(max(0.0, seconds), RETRY_AFTER_CEILING)
    return parse_retry_after(headers.get("retry-after"))


def billing_words(backend: str, status: int, info: ErrorInfo) -> str:
    """The operator's sentence for an account that cannot pay: backend, what the provider said, what to do."""
    default = "account balance exhausted" if status == 402 else "account balance or quota exhausted"
    if info.scope == "model":
        default = "this model, or a request this large, is beyond what the account's plan or credit covers"
    what = BILLING_WORDS.get(info.code or "", default)
    said = " ".join(p for p in (str(status), info.message[:200]) if p)
    return f"{backend}: {what} ({said}); top up the account or raise its limit with the provider"


def _status_class(status: int, info: ErrorInfo) -> type[UpstreamError]:
    if info.content_refused:
        return UpstreamRejected
    # Billing first: providers send it as 402, 429 (OpenAI, Moonshot, Z.ai) or 400 (Anthropic).
    if info.billing or status == 402:
        return UpstreamBilling
    if info.blocked or status == 451:
        return UpstreamBlocked
    if info.context_exceeded and status in (400, 403, 413):
        return UpstreamContextExceeded  # Together answers a prompt too long with a 403 (its error-codes page)
    if info.model_missing and status == 403 and not info.auth:
        # OpenAI's "Project ... does not have access to model ..." (code model_not_found): the key serves the
        # backend's other models (https://github.com/cursor/cursor/issues/2953).
        return UpstreamModelNotFound
    if status in (401, 403) or info.auth:
        return UpstreamAuthError
    if info.model_missing:
        return UpstreamModelNotFound
    if info.bad_output:
        return UpstreamServerError
    if status == 429 or status == 498:  # 498: Groq's flex tier at capacity, "add jittered backoff and retries"
        return UpstreamRateLimited
    if status == 408:
        return UpstreamTimeout
    if status >= 500:
        return UpstreamServerError
    if info.context_exceeded:
        return UpstreamContextExceeded
    if info.model_refuses and status in (400, 413, 422):
        return UpstreamParamRefused
    if status == 404:
        # A 404 with no code of its own (a path, a proxy): another candidate may answer.
        return UpstreamServerError
    if 400 <= status < 500:
        return UpstreamRejected
    return UpstreamBadResponse


def error_from_exception(exc: Exception, *, backend: str, model: str) -> UpstreamError:
    name = type(exc).__name__
    if isinstance(exc, ResponseTooLarge):
        return UpstreamBadResponse(str(exc), backend=backend, model=model)
    if isinstance(exc, PoolFull):
        return UpstreamUnavailable(str(exc), backend=backend, model=model, code="connection_limit_reached")
    if isinstance(exc, ConnectFailed):
        return UpstreamUnavailable(f"connection failed: {exc}", backend=backend, model=model)
    if isinstance(exc, (ReadTimeout, ConnectTimeout, httpx.TimeoutException)):
        return UpstreamTimeout(f"timed out ({name})", backend=backend, model=model)
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.ProxyError)):
        return UpstreamUnavailable(f"connection failed ({name})", backend=backend, model=model)
    if isinstance(exc, (ConnectionBroken, httpx.RemoteProtocolError, httpx.DecodingError)):
        return UpstreamUnavailable(f"connection broken ({exc})", backend=backend, model=model)
    if isinstance(exc, orjson.JSONDecodeError):
        return UpstreamBadResponse("malformed JSON from upstream", backend=backend, model=model)
    if isinstance(exc, (KeyError, TypeError, ValueError, IndexError)):
        return UpstreamBadResponse(f"unexpected response shape ({name})", backend=backend, model=model)
    return UpstreamError(name, backend=backend, model=model)


class HttpBackend:
    """The request/response half every HTTP adapter shares: post, classify, stream lines."""

    def __init__(self, name: str, config: HttpBackendConfig, reader: BodyReader) -> None:
        self.name = name
        self.config = config
        self.reader = redacting(reader, config.api_key.get() if config.api_key else None)
        self.pool = pool_for(config, os.environ)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def missing_key(self) -> str | None:
        """The variable to export when the backend's key is configured but not set."""
        key = self.config.api_key
        return key.ref.removeprefix("env:") if key is not None and not key.present else None

    async def send(self, url: str, payload: object, headers: dict[str, str], model: str,
                    timeout: float | None) -> UpstreamResponse:
        if (var := self.missing_key()) is not None:
            raise UpstreamAuthError(
                f"no API key: {var} is not set; export {var}=... and restart the gateway",
                backend=self.name, model=model,
            )
        try:
            resp = await self.pool.request("POST", url, headers, orjson.dumps(payload), timeout or self.config.timeout)
            if resp.status >= 400:
                try:
                    body = await resp.read(timeout or self.config.timeout, self.config.max_answer_bytes)
                except BaseException:  # a read cut short closes its connection (see post_json)
                    resp.release()
                    raise
                err = error_from_status(resp.status, body, resp.headers, self.reader, backend=self.name, model=model)
                if resp.status == 404 and type(err) is UpstreamServerError:
                    # No model or code of its own: the path itself is not served, most often a base_url without
                    # the /v1 (or other prefix) the server's API lives under.
                    err.message += (f" (nothing is served at {urlsplit(url).path}: check base_url, which most "
                                    "OpenAI-compatible servers want to end in /v1)")
                raise err
            if resp.status >= 300:  # redirects are not followed: a key is never sent on to where one points
                resp.release()
                where = resp.headers.get("location", "")[:200]
                to = f" to {where}" if where else ""
                raise UpstreamBadResponse(f"unexpected status {resp.status} (a redirect{to}; not followed: set "
                                          "base_url to where it points)", backend=self.name, model=model)
        except TransportError as exc:
            raise error_from_exception(exc, backend=self.name, model=model) from None
        return resp

    async def post_json(
        self, url: str, payload: object, headers: dict[str, str], model: str, timeout: float | None
    ) -> object:
        resp = await self.send(url, payload, headers, model, timeout)
        try:
            body = await resp.read(timeout or self.config.timeout, self.config.max_answer_bytes)
            doc = orjson.loads(body)
        except (TransportError, orjson.JSONDecodeError) as exc:
            resp.release()  # a read timeout leaves the body unread: its connection is closed, not kept
            raise error_from_exception(exc, backend=self.name, model=model) from None
        except BaseException:
            # Cancelled mid-body (the attempt's deadline, a hedge's loser): without this the connection stays
            # open, and counted against the backend's max_connections, for as long as the upstream keeps it.
            resp.release()
            raise
        if too_deep(body, doc):
            raise UpstreamBadResponse("answer nests too deep", backend=self.name, model=model)
        return doc

    @asynccontextmanager
    async def open_stream(
        self, url: str, payload: object, headers: dict[str, str], model: str, timeout: float | None
    ) -> AsyncIterator[UpstreamResponse]:
        """Open a streaming POST; raise a classified error when the status says failure."""
        resp = await self.send(url, payload, headers, model, timeout)
        try:
            yield resp
        finally:
            resp.release()

    async def lines(self, resp: UpstreamResponse, model: str) -> AsyncIterator[str]:
        # Gaps between tokens are bounded by the failover layer's stall deadline.
        try:
            async for line in resp.iter_lines():
                yield line
        except TransportError as exc:
            raise error_from_exception(exc, backend=self.name, model=model) from None


def pool_for(config: HttpBackendConfig, env: Mapping[str, str]) -> UpstreamPool:
    """The backend's connection pool: its client, proxy (own or from the environment), CAs and connection cap."""
    base_url = config.base_url
    credentials = config.proxy_auth.get() if config.proxy_auth else None
    try:
        proxy = proxy_for(base_url, config.proxy, env, credentials)
    except ValueError as exc:  # the URL itself is not repeated: it may carry credentials
        raise ConfigError(f"HTTPS_PROXY / HTTP_PROXY: {exc}") from None
    if config.upstream_client == "aiohttp":
        try:  # the optional extra, imported only when chosen
            from polyroute.adapters.aio_transport import AioPool
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "polyroute":
                raise
            raise ConfigError(
                "upstream_client = \"aiohttp\" needs the Python package 'aiohttp', which is not installed: "
                "run `pip install 'polyroute[aiohttp]'`"
            ) from None

        return AioPool(
            base_url, config.connect_timeout, proxy=proxy,
            ca_bundle=config.ca_bundle, max_connections=config.max_connections, max_waiting=config.connection_queue,
        )
    return Pool(
        base_url, config.connect_timeout, proxy=proxy,
        ca_bundle=config.ca_bundle, max_connections=config.max_connections, max_waiting=config.connection_queue,
    )


def json_object(data: str | bytes, what: str, *, backend: str, model: str) -> dict[str, Any]:
    """One JSON object from an upstream (a stream event or record), or UpstreamBadResponse."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"malformed {what}", backend=backend, model=model) from None
    if not isinstance(doc, dict):
        raise UpstreamBadResponse(f"{what} is not an object", backend=backend, model=model)
    if too_deep(data, doc):
        raise UpstreamBadResponse(f"{what} nests too deep", backend=backend, model=model)
    return doc


def tool_arguments(tool_call: dict[str, Any], where: str, *, backend: str, model: str) -> dict[str, Any]:
    """A client's tool-call arguments (a JSON string) as the object wire formats that nest them need."""
    fn = tool_call.get("function") or {}
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise UpstreamRejected(f"{where}.function.arguments is not a JSON object", backend=backend, model=model)
    return args


class HttpAdapter(Adapter):
    """What every HTTP adapter shares: its pool, its URL, its headers with the key."""

    config: HttpBackendConfig
    path: ClassVar[str]  # appended to base_url
    key_header: ClassVar[str] = "authorization"
    key_prefix: ClassVar[str] = "Bearer "
    base_headers: ClassVar[dict[str, str]] = {"content-type": "application/json"}

    def __init__(self, name: str, config: HttpBackendConfig) -> None:
        super().__init__(name, config)
        self.http = HttpBackend(name, config, type(self).read_error)
        self.url = f"{config.base_url}{self.path}"
        self.headers = {**self.base_headers, **config.headers}
        key = config.api_key.get() if config.api_key else None
        if key:
            self.headers[self.key_header] = f"{self.key_prefix}{key}"

    def assembles_by_default(self) -> bool:
        # A whole answer cannot be told from a hung upstream until answer_timeout: streamed,
        # the route's first-token and stall deadlines bound it, local server or hosted API alike.
        return True

    @staticmethod
    def read_error(status: int, body: bytes) -> ErrorInfo:
        """What this provider's error body says; overridden where it differs."""
        return json_error_reader(status, body)

    async def aclose(self) -> None:
        await self.http.aclose()
