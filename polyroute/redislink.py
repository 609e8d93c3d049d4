"""The one Redis that a gateway's replicas share: counters, key changes, breakers.

A ``RedisLink`` owns the client (short socket timeouts, one retry at most: a
request must not hang on an outage), knows whether Redis is reachable, and says
so in the log once per outage: one warning when it goes, one line when it is back.
While it is down, callers are told at once (``QuotaStoreUnavailable``) without
touching the network, and one call per ``RETRY_AFTER`` tries again.

    call ──down, retry not due──▶ QuotaStoreUnavailable (no network)
      │
      └──▶ Redis ──ok──▶ up (logs "back" once) ──▶ result
              └──RedisError / OSError──▶ down (logs once) ──▶ QuotaStoreUnavailable

It also runs one pub/sub listener (on its own connection) for the channels that
other parts subscribe to (``subscribe``): a key change, a breaker opened. The
listener reconnects by itself (and pings the server when it has been silent a
second, so that it notices an outage and the return); every subscriber's
``resync`` runs after each connection and after each outage, since messages sent
while it was away are lost.

The URL may carry a password: only ``safe_url`` (the password replaced) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from polyroute.config import Config
from polyroute.errors import QuotaStoreUnavailable

log = logging.getLogger("polyroute.redis")

T = TypeVar("T")
DEFAULT_PREFIX = "polyroute:"
TIMEOUT = 0.5  # seconds: connect and each command; an outage costs a request at most this
RETRY_AFTER = 1.0  # seconds between tries while Redis is down
MAX_CONNECTIONS = 64  # per process
CLOSE_WAIT = 2.0  # seconds aclose waits for the listener to end
LISTEN_GRACE = 5.0  # seconds the pub/sub connection may be silent past its poll before it is taken for dead
# Not only a lost connection: a replica made read-only by a failover, a refused password or a
# full memory also leave the counters unusable, and are answered the same way.
UNREACHABLE = (RedisError, OSError)


def safe_url(url: str) -> str:
    """The URL as it may be logged: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Subscriber:
    """What a pub/sub subscriber gives ``RedisLink.subscribe``: its handler, and how it catches up."""

    on_message: Callable[[str], Awaitable[None]]
    resync: Callable[[], Awaitable[None]] | None = None


class RedisLink:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = TIMEOUT) -> None:
        self.url = safe_url(url)
        self.prefix = prefix
        self.timeout = timeout
        # A bounded pool that makes a burst wait for a connection (up to ``timeout``), not fail; one
        # retry, so that a connection left stale by a Redis restart is replaced, not taken for an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1), decode_responses=True,
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._raw_url = url
        self._down = False
        self._outages = 0  # how many outages began: the listener resyncs after each
        self._next_try = 0.0
        self._subscribers: dict[str, Subscriber] = {}
        self._listener: asyncio.Task[None] | None = None
        self._back: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_config(cls, config: Config) -> RedisLink | None:
        store = config.store
        url = store.redis_url()
        return cls(url, store.redis_prefix) if url else None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def down(self) -> bool:
        return self._down

    # -- calls and the outage state ------------------------------------------------------------

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``call(client)``; ``QuotaStoreUnavailable`` when Redis is (or just went) unreachable."""
        if self._down:
            now = time.monotonic()
            if now < self._next_try:
                raise QuotaStoreUnavailable(self._unavailable())
            self._next_try = now + RETRY_AFTER  # one caller tries; the others are told at once
        try:
            result = await call(self.client)
        except UNREACHABLE as exc:
            self.failed(exc)
            raise QuotaStoreUnavailable(self._unavailable()) from None
        self.ok()
        return result

    def failed(self, exc: BaseException) -> None:
        self._next_try = time.monotonic() + RETRY_AFTER
        if not self._down:
            self._down = True
            self._outages += 1
            log.warning("redis at %s is unreachable (%s: %s); [store] on_redis_down applies meanwhile",
                        self.url, type(exc).__name__, _said(exc, self._raw_url))

    def ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("redis at %s is back", self.url)
            for hook in self._back:
                self.spawn(hook())

    def on_back(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` each time Redis is reachable again after an outage."""
        self._back.append(hook)

    def _unavailable(self) -> str:
        return "The gateway's quota store (Redis) is unreachable, so this key's limits cannot be checked."

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            with contextlib.suppress(QuotaStoreUnavailable):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pub/sub ---------------------------------------------------------------------------------

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Call ``subscriber.on_message`` with each message published on ``channel`` (under the prefix)."""
        self._subscribers[self.key(channel)] = subscriber

    async def publish(self, channel: str, message: str) -> None:
        await self.run(lambda c: c.publish(self.key(channel), message))

    async def start(self) -> None:
        if self._subscribers and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                await asyncio.wait_for(pubsub.subscribe(*self._subscribers), LISTEN_GRACE)
                synced = -1
                while True:
                    if synced != self._outages:  # first, or the library reconnected after an outage
                        await self._prove_back()
                        synced = self._outages
                        await self._resync()
                    # Bounded, so that a connection that hangs restarts the listener.
                    msg = await asyncio.wait_for(pubsub.get_message(timeout=1.0), 1.0 + LISTEN_GRACE)
                    if msg is None:
                        await asyncio.wait_for(pubsub.ping(), LISTEN_GRACE)  # silence, or a dead connection?
                        await self._prove_back()
                    elif msg.get("type") == "message":
                        found = self._subscribers.get(str(msg["channel"]))
                        if found is not None:
                            await found.on_message(str(msg["data"]))
            except asyncio.CancelledError:
                raise
            except (*UNREACHABLE, QuotaStoreUnavailable) as exc:
                if not isinstance(exc, QuotaStoreUnavailable):
                    self.failed(exc)
                await asyncio.sleep(RETRY_AFTER)
            except Exception:
                log.exception("redis listener failed; starting it again")
                await asyncio.sleep(RETRY_AFTER)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    async def _prove_back(self) -> None:
        """Tell the outage over only after a command had its answer. A pub/sub connection's ``ping``
        only writes (its answer comes as a message), and a write to a server just gone can succeed."""
        if self._down:
            await asyncio.wait_for(self.client.ping(), LISTEN_GRACE)
        self.ok()

    async def _resync(self) -> None:
        for each in self._subscribers.values():
            if each.resync is not None:
                await each.resync()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            # Bounded: the library may hold a cancellation while it reconnects.
            await asyncio.wait({self._listener}, timeout=CLOSE_WAIT)
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _said(exc: BaseException, raw_url: str) -> str:
    """An exception's text, with the URL's password out of it if the library quoted it."""
    text = str(exc)
    password = urlsplit(raw_url).password
    return text.replace(password, "***") if password else text
