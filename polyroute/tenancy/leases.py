"""Leases: a replica admits most requests from quota it reserved in Redis beforehand, with no round trip.

A round trip to Redis on every admission puts one more wait on the request's path, and
under load the reply waits for the event loop as well. So, for a bucket with plenty of
room, a replica reserves a *lease* (a slice of the bucket, made just like a reservation:
in the bucket for a minute's ``rpm`` and ``tpm``, in a hold slot for a budget) and then
admits requests from it in the process, at once. Requests settle into the lease. A
flusher, one script call for every lease of the process at most every ``FLUSH_INTERVAL``,
moves what finished requests spent from the holds to the budgets, tops leases up, and
gives back what an idle lease did not use:

    take ──every bucket's lease covers the request?──yes──▶ admitted (no network)
                   │ no
                   └──▶ the exact path: RedisCounters.reserve (one round trip), and the lease asks to grow
    ... the request runs ...
    settle ──▶ the lease gets back what the request reserved and did not spend
    flusher ──Lua, one call──▶ spent: hold ─▶ budget; top-ups; idle leases given back; holds kept fresh

Only a bucket asked by two requests or more is leased: a key used once costs no more than the
exact path. One flush call takes at most ``MAX_OPS`` leases, so that a flood of new keys never
becomes one long script that holds Redis up.

Exactness is kept: a lease is granted only out of the bucket's room (``limit`` less every
replica's spend, reservations and leases), so the sum of what every replica admits never
passes a limit by more than the exact path allows. Leasing is for buckets with room to
spare: a grant is at most ``SHARE`` of the room left and must cover ``MIN_REQUESTS`` of the
requests asking, so a bucket with room for fewer than ``MIN_REQUESTS / SHARE`` requests
(an ``rpm = 20``, a budget nearly spent) is never leased and every request takes the exact
path. What a lease holds that no request uses is room another replica cannot take until
it is given back (after ``IDLE`` seconds without demand, when the limit is changed, or at
shutdown); that is the price.

A request is admitted from leases only when every one of its buckets has one: when one of them
cannot be leased (a budget nearly spent beside a roomy ``rpm``), the others stop growing and are
given back, rather than hold room no request of that key can use; the barren one asks again after
``IDLE`` seconds.

A replica that dies leaves its leases as it would leave reservations: a budget's lapse with
their hold slot, a minute's end with the minute. What it spent in its last
``FLUSH_INTERVAL`` and had not moved to the budget yet lapses with them (the ledger has it).
While Redis is down, leases go on admitting what they hold; the rest takes the exact path
and its ``on_redis_down`` rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.commands.core import AsyncScript

from polyroute.errors import QuotaStoreUnavailable
from polyroute.tenancy.rediscounters import HOLD, SLOT, SLOTS, VALUE_LUA, WORDS_LUA, RedisCounters, ms_of
from polyroute.tenancy.stores import Charge

log = logging.getLogger("polyroute.leases")

FLUSH_INTERVAL = 0.05  # seconds between two flushes while a lease is live
HORIZON = 0.5  # a lease is topped up to cover about this many seconds of the recent demand
SHARE = 1 / 16  # a grant takes at most this share of the bucket's room
MIN_REQUESTS = 4  # a grant smaller than this many of the largest request asking is not made
IDLE = 1.0  # seconds without demand after which a lease gives back what it holds
EPS = 1e-9  # amounts below this are float residue of adding and taking back, not amounts
MAX_OPS = 512  # leases one flush call takes at most; the rest go in the next call, at once

# One call for every lease of the process. ARGV: slots, slot_ms, now_ms, share, and the words, per lease:
# held (1/0), its slot, the current slot, spent (to move from the hold to the bucket), back (to give back),
# relocate (what it holds, moved to the current slot's hold), want, limit, least (the smallest grant),
# ends_ms (-1: never). KEYS: the buckets. Returns per lease: the grant and the bucket's value after,
# space-separated.
_FLUSH = VALUE_LUA + WORDS_LUA + """
local n, slot_ms, now, share = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local w, out = words(ARGV[5]), {}
local function add(key, amount, expiry)
  local fresh = redis.call('EXISTS', key) == 0
  redis.call('INCRBYFLOAT', key, amount)
  if fresh and expiry >= 0 then redis.call('PEXPIREAT', key, expiry) end
end
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 10
  local isheld, old, new = w[a + 1] == '1', w[a + 2], tonumber(w[a + 3])
  local spent, back, relocate = tonumber(w[a + 4]), tonumber(w[a + 5]), tonumber(w[a + 6])
  local want, limit, least, ends = tonumber(w[a + 7]), tonumber(w[a + 8]), tonumber(w[a + 9]), tonumber(w[a + 10])
  local live = ends < 0 or now < ends
  if isheld then
    local h = key .. '~h' .. old
    local out_of_old = spent + back + relocate
    if out_of_old ~= 0 and redis.call('EXISTS', h) == 1 then redis.call('INCRBYFLOAT', h, -out_of_old) end
    if spent ~= 0 and live then add(key, spent, ends) end
    -- Into the current slot, so that it outlives the old one (which may have lapsed: then it counts again).
    if relocate ~= 0 then add(key .. '~h' .. new, relocate, (new + n) * slot_ms) end
  elseif back ~= 0 and redis.call('EXISTS', key) == 1 then
    redis.call('INCRBYFLOAT', key, -back)
  end
  local v = value(key, isheld, new, n)
  local grant = 0
  if want > 0 and live then
    grant = math.min(want, (limit - v) * share)
    if grant < least then grant = 0 end
  end
  if grant > 0 then
    if isheld then add(key .. '~h' .. new, grant, (new + n) * slot_ms) else add(key, grant, ends) end
    v = v + grant
  end
  out[#out + 1] = tostring(grant)
  out[#out + 1] = tostring(v)
end
return table.concat(out, ' ')
"""


@dataclass(slots=True, eq=False)
class Lease:
    """A replica's slice of one bucket. ``holds`` (what it has in Redis) is ``available + lent + spent``;
    ``spent`` stays 0 for a minute's bucket, where what a request spends is the bucket's own at once."""

    bucket: str
    limit: float
    ends_at: float | None
    held: bool  # in a hold slot (a budget) or in the bucket itself (a minute)
    slot: int  # the hold slot it is in
    holds: float = 0.0
    available: float = 0.0  # not lent to a request
    lent: float = 0.0  # lent to requests still running
    spent: float = 0.0  # what finished requests spent, not yet moved out of the hold
    demand: float = 0.0  # asked since the last flush, taken or not
    asks: int = 0  # requests that asked it: a lease is made from the second, never for a one-off
    unit: float = 0.0  # the largest single request lately
    asked_at: float = 0.0  # monotonic
    value: float = 0.0  # the bucket's value in Redis at the last flush: every replica's spend, holds and leases
    stale: bool = False  # its limit changed: nothing more is lent from it, and the next flush gives it back
    # Until then (monotonic) no grant is asked for: the last ask got nothing, the bucket has too little room.
    barren_until: float = 0.0

    def live(self, now: float) -> bool:
        return self.ends_at is None or now < self.ends_at


class Lent(NamedTuple):
    """What one request took from leases: given back by ``Leases.settle``."""

    values: tuple[float, ...]  # each bucket's, as this replica knows it, with this request's
    leases: tuple[Lease, ...]
    amounts: tuple[float, ...]


@dataclass(slots=True)
class _Op:
    lease: Lease
    spent: float
    back: float
    relocate: float
    want: float
    slot: int
    stale: bool


class Leases:
    """Admission from leases over ``RedisCounters``; what a lease cannot cover takes the exact path."""

    def __init__(self, counters: RedisCounters, flush_every: float | None = FLUSH_INTERVAL) -> None:
        self.counters = counters
        self.flush_every = flush_every  # None: no flusher task, ``flush`` is called by hand (tests)
        self._flush_script: AsyncScript = counters.link.client.register_script(_FLUSH)
        self._leases: dict[tuple[str, bool], Lease] = {}
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._flushed_at = time.monotonic()
        self._faulty = False  # the last flush failed for a reason other than Redis being down

    def take(self, charges: Sequence[Charge], now: float) -> Lent | None:
        """Admit from the leases, at once; None when one of them cannot cover its charge."""
        return self.lend([(i, c.bucket, c.limit, c.ends_at) for i, c in enumerate(charges)],
                         [c.amount for c in charges], now)

    def lend(
        self, charges: Sequence[tuple[int, str, float, float | None]], amounts: Sequence[float], now: float
    ) -> Lent | None:
        """``take`` for charges (what, bucket, limit, ends_at) of ``amounts[what]`` each."""
        asked = time.monotonic()
        table = self._leases
        leases = []
        barren = False
        for _, bucket, limit, ends_at in charges:
            mode = ends_at is None or ends_at - now > HOLD  # as ``held`` says
            lease = table.get((bucket, mode))
            if lease is None:
                lease = table[(bucket, mode)] = Lease(bucket, limit, ends_at, mode, int(now // SLOT))
            if lease.limit != limit:  # the key's or team's limit was changed (lowered, perhaps)
                lease.limit, lease.stale = limit, True
            barren = barren or asked < lease.barren_until
            leases.append(lease)
        # When one of the request's buckets cannot be leased (too little room), the others must not
        # grow: they would hold room that no request of this principal can use.
        covered = not barren
        taken = []
        for lease, charge in zip(leases, charges, strict=True):
            amount = amounts[charge[0]]
            taken.append(amount)
            if barren and asked >= lease.barren_until:
                if not lease.demand:  # nobody else asked it since the last flush: given back at the next
                    lease.asked_at = min(lease.asked_at, asked - 2 * IDLE)
                continue
            lease.demand += amount
            lease.asks += 1
            if amount > lease.unit:
                lease.unit = amount
            lease.asked_at = asked
            covered = covered and lease.available >= amount and lease.live(now) and not lease.stale
        if self._flusher is None:
            self._start()
        if not covered:
            if not barren:
                self._wake.set()  # grow the leases now, not at the next tick
            return None
        values = []
        for lease, amount in zip(leases, taken, strict=True):
            lease.available -= amount
            lease.lent += amount
            values.append(lease.value - lease.available)
        return Lent(tuple(values), tuple(leases), tuple(taken))

    def settle(self, lent: Lent, true: Sequence[float]) -> None:
        """A request admitted from leases has finished: what it did not spend goes back to them."""
        for lease, reserved, amount in zip(lent.leases, lent.amounts, true, strict=True):
            lease.lent -= reserved
            lease.available += reserved - amount
            if lease.held:
                lease.spent += amount  # moved from the hold to the budget at the next flush
            else:
                lease.holds -= amount  # a minute's spend is the bucket's own from now on

    # -- the flusher ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._flusher is None and self.flush_every is not None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        try:
            while self._leases:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_every)
                self._wake.clear()
                try:
                    await self.flush()
                    self._faulty = False
                except QuotaStoreUnavailable:  # logged once by the link; tried again at the next tick
                    pass
                except Exception:  # anything else is a fault to see (once), not a reason to stop flushing
                    if not self._faulty:
                        log.exception("leases: a flush failed; trying again at each tick")
                    self._faulty = True
        finally:
            self._flusher = None

    def _ops(self, now: float, closing: bool) -> list[_Op]:
        asked, slot = time.monotonic(), int(now // SLOT)
        elapsed = max(asked - self._flushed_at, self.flush_every or FLUSH_INTERVAL)
        self._flushed_at = asked
        ops: list[_Op] = []
        for key, lease in list(self._leases.items()):
            if len(ops) >= MAX_OPS:
                self._wake.set()  # a flood of new keys: the rest in the next call, not in one huge script
                break
            stale = lease.stale
            idle = closing or stale or asked - lease.asked_at > IDLE or not lease.live(now)
            lease.stale = False  # given back now; a lease is granted again against the new limit
            back = lease.available if idle and lease.available > EPS else 0.0
            want = 0.0
            if not idle and asked >= lease.barren_until and lease.asks >= 2:
                target = max(lease.demand / elapsed * HORIZON, lease.unit * MIN_REQUESTS)
                if lease.available < target / 2:
                    want = target - lease.available
            spent = lease.spent if abs(lease.spent) > EPS else 0.0
            moving = lease.held and lease.slot != slot
            relocate = lease.holds - spent - back if moving else 0.0
            relocate = relocate if abs(relocate) > EPS else 0.0
            lease.demand = 0.0
            if idle and abs(lease.holds) <= EPS and abs(lease.lent) <= EPS:
                del self._leases[key]
                continue
            if not (spent or back or relocate or want):
                continue
            lease.available -= back  # not lent meanwhile
            ops.append(_Op(lease, spent, back, relocate, want, slot, stale))
        return ops

    async def flush(self, closing: bool = False) -> None:
        """One script call: spend moved, leases topped up, idle ones given back (``closing``: all of them)."""
        now = time.time()
        ops = self._ops(now, closing)
        if not ops:
            return
        words = " ".join(
            f"{int(o.lease.held)} {o.lease.slot} {o.slot} {o.spent!r} {o.back!r} {o.relocate!r} {o.want!r} "
            f"{float(o.lease.limit)!r} {o.lease.unit * MIN_REQUESTS!r} {ms_of(o.lease.ends_at)}"
            for o in ops
        )
        keys = [self.counters.key(o.lease.bucket) for o in ops]
        args: list[str | int | float] = [SLOTS, SLOT * 1000, ms_of(now), SHARE, words]
        try:
            reply = await self.counters.link.run(lambda _: self._flush_script(keys=keys, args=args))
        except BaseException:  # Redis down, a fault, or the flusher cancelled at shutdown
            for o in ops:
                o.lease.available += o.back  # still held in Redis: given back next time
                o.lease.stale |= o.stale
            raise
        got = str(reply).split()
        asked = time.monotonic()
        for i, o in enumerate(ops):
            lease, grant = o.lease, float(got[2 * i])
            if o.want:
                # Nothing granted and nothing to lend: ask again in a while, not at every request.
                lease.barren_until = asked + IDLE if not grant and lease.available < lease.unit else 0.0
            lease.value = float(got[2 * i + 1])
            lease.spent -= o.spent
            lease.holds += grant - o.back - o.spent
            lease.available += grant
            if o.relocate:
                lease.slot = o.slot

    async def aclose(self) -> None:
        """Give back what every lease holds and move what was spent, before the process ends."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(QuotaStoreUnavailable):
            await self.flush(closing=True)

    def unused(self, bucket: str) -> float:
        """What this process's leases of ``bucket`` hold and no request uses: counted in Redis, not spent."""
        return sum(lease.available for (name, _), lease in self._leases.items() if name == bucket)
