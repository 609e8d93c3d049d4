"""Breakers shared by replicas through Redis (``[store] share_breakers = true``).

Each replica keeps its breakers in memory (``MemoryBreakerStore``: the same state
machine, no round trip on the hot path) and shares what matters across replicas:
**openings**. When a breaker of this replica opens (or, while open, is pushed
further out), its state is written to the hash ``PREFIX breakers`` and published on
the ``breakers`` channel; every other replica opens its own copy until the same
instant. When a probe closes it, the closing is shared the same way.

    replica 1: failures ──▶ open ──HSET + PUBLISH {key, until, reason}──▶ replica 2, 3: open until then
    replica 2: probe due ──SET NX probe:KEY PX interval──▶ won: probe │ lost: stay open (another probes)
    replica 2: probe ok ──▶ closed ──HDEL + PUBLISH closed──▶ replica 1, 3: closed

So a dead backend is found dead by one replica and skipped by all, and while it
stays dead one probe per interval goes to it from the whole fleet, not one per
replica. Failure counts and the error-rate window stay per replica: a replica
opens on what it saw itself; the others follow it.

Redis is touched only when a breaker changes state and when an open breaker's
probe is due; ``admit`` of a closed breaker is the memory store's. When Redis is
unreachable each replica goes on with its own breakers (its probe claim is granted).
Times cross processes as wall-clock instants (``time.time``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from polyroute.breakers import Admission, Breaker, MemoryBreakerStore, Outcome, State, Verdict, View
from polyroute.config import BreakerConfig
from polyroute.errors import QuotaStoreUnavailable
from polyroute.redislink import RedisLink, Subscriber

log = logging.getLogger("polyroute.breakers")

CHANNEL = "breakers"


class RedisBreakerStore:
    """A ``BreakerStore``: this replica's breakers, with openings and closings shared through Redis."""

    def __init__(self, policy: BreakerConfig, link: RedisLink,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.link = link
        self.clock = clock
        self.local = MemoryBreakerStore(policy, clock)
        self.me = os.urandom(8).hex()  # who published: a replica ignores its own messages
        self._hash = link.key(CHANNEL)
        link.subscribe(CHANNEL, Subscriber(self._heard, self.resync))

    async def admit(self, key: str) -> Admission:
        breaker = self.local.breaker(key)
        if breaker is None or breaker.state is State.CLOSED:
            return Admission(True)
        got = breaker.admit(self.clock())
        if got.probe and not await self._claim_probe(key):
            breaker.state = State.OPEN  # another replica holds this interval's probe
            return Admission(False, state=State.OPEN, reason=breaker.reason,
                             retry_in=breaker.next_probe - self.clock(), detail=breaker.detail, why=breaker.why)
        return got

    async def record(self, key: str, outcome: Outcome) -> tuple[State, State]:
        breaker = self.local.breaker(key)
        until = breaker.next_probe if breaker is not None else 0.0
        before, after = await self.local.record(key, outcome)
        breaker = self.local.breaker(key, make=True)
        assert breaker is not None
        opened = after is State.OPEN and (before is not State.OPEN or breaker.next_probe != until)
        if opened or (after is State.CLOSED and before is not State.CLOSED):
            await self._share(key, breaker)
        elif outcome.verdict is Verdict.RELEASE and before is State.HALF_OPEN:
            await self._quietly(lambda c: c.delete(self._probe_key(key)))  # the next attempt may probe
        return before, after

    async def get(self, key: str) -> View:
        return await self.local.get(key)

    async def snapshot(self) -> list[View]:
        return await self.local.snapshot()

    async def spread(self, key: str, member: str, reason: str) -> list[str]:
        return await self.local.spread(key, member, reason)

    # -- sharing ----------------------------------------------------------------------------------

    def _probe_key(self, key: str) -> str:
        return self.link.key("probe", key)

    async def _claim_probe(self, key: str) -> bool:
        ms = max(int(self.policy.probe_interval * 1000), 1)
        try:
            won = await self.link.run(lambda c: c.set(self._probe_key(key), self.me, nx=True, px=ms))
        except QuotaStoreUnavailable:
            return True  # alone, a replica probes for itself
        return bool(won)

    async def _share(self, key: str, breaker: Breaker) -> None:
        closed = breaker.state is State.CLOSED
        doc = {
            "key": key, "from": self.me, "state": str(breaker.state),
            "until": time.time() + max(breaker.next_probe - self.clock(), 0.0),
            "reason": breaker.reason, "detail": breaker.detail, "why": breaker.why,
        }
        message = orjson.dumps(doc).decode()

        async def write(c: aioredis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            if closed:
                pipe.hdel(self._hash, key)
                pipe.delete(self._probe_key(key))
            else:
                pipe.hset(self._hash, key, message)
            pipe.publish(self._hash, message)
            await pipe.execute()

        await self._quietly(write)

    async def _quietly(self, call: Callable[[aioredis.Redis], Awaitable[Any]]) -> None:
        with contextlib.suppress(QuotaStoreUnavailable):
            await self.link.run(call)

    async def _heard(self, message: str) -> None:
        doc = orjson.loads(message)
        if doc.get("from") != self.me:
            self._apply(doc)

    async def resync(self) -> None:
        """Take every opening Redis holds (at start, and after the listener reconnected)."""
        held = await self.link.run(lambda c: c.hgetall(self._hash))
        for raw in held.values():
            self._apply(orjson.loads(raw))

    def _apply(self, doc: dict[str, object]) -> None:
        key = str(doc["key"])
        breaker = self.local.breaker(key, make=True)
        assert breaker is not None
        if doc.get("state") == str(State.CLOSED):
            if breaker.state is not State.CLOSED:
                breaker.state, breaker.consecutive = State.CLOSED, 0
                breaker.reason = breaker.detail = breaker.why = ""
                log.info("breaker %s closed by another replica's probe", key)
            return
        until = float(doc["until"])  # type: ignore[arg-type]
        was = breaker.state
        breaker.state = State.OPEN
        breaker.next_probe = self.clock() + (until - time.time())
        breaker.reason, breaker.detail, breaker.why = str(doc["reason"]), str(doc["detail"]), str(doc["why"])
        if was is State.CLOSED:
            log.warning("breaker %s open: found so by another replica (%s); next probe in %.1fs",
                        key, breaker.reason, max(until - time.time(), 0.0))
