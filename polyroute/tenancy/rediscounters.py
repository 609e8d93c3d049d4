"""``CounterStore`` in Redis: the counters every replica shares, each step one Lua script.

A bucket ``B`` (``key:NAME:rpm:WINDOW``, ``team:NAME:usd:m202612``) is the string
``PREFIX q:B`` holding its settled value, set to expire at the bucket's end
(``PEXPIREAT``). A reservation is made in one of two ways, by how far the bucket's
end is:

- **direct**, for a bucket that ends within ``HOLD`` (the minute of ``rpm`` and
  ``tpm``): the amount goes into the bucket itself; settlement adds the difference.
  A reservation left by a replica that died ends with the bucket.
- **held**, for a longer bucket (a budget's day, week, month, or ``total``): the
  amount goes into a hold slot ``B~hSLOT`` (one per ``SLOT`` seconds) that expires
  ``HOLD`` after its slot began; the bucket's value is its settled spend plus its
  live slots. Settlement adds the true amount to the bucket and takes the reserved
  one out of its slot. A reservation left by a replica that died lapses with its slot.

    reserve ─Lua, each of the batch: every bucket's value (+ live holds) below its limit?─no──▶ refused (index)
                      │ yes
                      ▼
              direct: INCRBYFLOAT B            held: INCRBYFLOAT B~hSLOT
              (PEXPIREAT end, when it made B)  (PEXPIREAT lapse, when it made B~hSLOT)
    settle  ─Lua: direct: B += true - reserved (if B still exists)
                  held:   B~hSLOT -= reserved (if it still exists), B += true (until its end)

Reservations asked together (in one event-loop turn, or while a call is out) go as one call of
the reserve script, which takes them one after the other, each all or nothing; settlements too.

A settlement that fails while Redis is down is kept (up to ``MAX_PENDING``) and sent
again when it is back. ``seed`` is ``SET NX``: replicas starting together seed once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from redis.commands.core import AsyncScript

from polyroute.errors import QuotaStoreUnavailable
from polyroute.redislink import RedisLink
from polyroute.tenancy.coalesce import Coalescer
from polyroute.tenancy.stores import Charge, Reserved

SLOT = 60  # seconds per hold slot
SLOTS = 10  # a hold lapses between (SLOTS - 1) and SLOTS slots after it was made
HOLD = SLOT * (SLOTS - 1)
MAX_PENDING = 100_000  # settlements kept while Redis is down

# Shared by the scripts: the value of bucket ``key`` with the holds of the ``n`` slots up to ``slot``
# (read in one MGET), and whether the key a reservation adds to (the bucket, or its hold of ``slot``)
# is there already: when it is not, the reservation makes it and sets its expiry.
VALUE_LUA = """
local function value(key, held, slot, n)
  if not held then
    local got = redis.call('GET', key)
    return tonumber(got or '0'), got ~= false
  end
  local names = {key}
  for s = slot - n + 1, slot do names[#names + 1] = key .. '~h' .. s end
  local v, got = 0, redis.call('MGET', unpack(names))
  for i = 1, #names do
    if got[i] then v = v + tonumber(got[i]) end
  end
  return v, got[#names] ~= false
end
"""

# The numbers of a batch come in one space-separated argument (one to encode and send, not
# one per number), which the scripts split into ``w``.
WORDS_LUA = """
local function words(text)
  local w = {}
  for t in string.gmatch(text, '%S+') do w[#w + 1] = t end
  return w
end
"""

# A batch of reservations, each all or nothing, in order. ARGV: slots, slot_ms, and the words: per
# reservation its slot, its bucket count, then per bucket: limit, amount, ends_ms (-1: never),
# held (1/0); KEYS: the buckets of every reservation, one after the other.
# Returns per reservation: refused index or 0, value of each bucket (after, when admitted); all in one
# string, space-separated (one reply to parse, however large the batch).
_RESERVE = VALUE_LUA + WORDS_LUA + """
local n, slot_ms, w = tonumber(ARGV[1]), tonumber(ARGV[2]), words(ARGV[3])
local out, a, k = {}, 1, 0
while a <= #w do
  local slot, count = tonumber(w[a]), tonumber(w[a + 1])
  a = a + 2
  local vals, there, refused = {}, {}, 0
  for i = 1, count do
    local b = a + (i - 1) * 4
    vals[i], there[i] = value(KEYS[k + i], w[b + 3] == '1', slot, n)
    if refused == 0 and vals[i] >= tonumber(w[b]) then refused = i end
  end
  if refused == 0 then
    for i = 1, count do
      local b, key = a + (i - 1) * 4, KEYS[k + i]
      local amount, ends = w[b + 1], tonumber(w[b + 2])
      if w[b + 3] == '1' then
        local h = key .. '~h' .. slot
        redis.call('INCRBYFLOAT', h, amount)
        if not there[i] then redis.call('PEXPIREAT', h, (slot + n) * slot_ms) end
      else
        redis.call('INCRBYFLOAT', key, amount)
        if not there[i] and ends >= 0 then redis.call('PEXPIREAT', key, ends) end
      end
      vals[i] = vals[i] + tonumber(amount)
    end
  end
  out[#out + 1] = tostring(refused)
  for i = 1, count do out[#out + 1] = tostring(vals[i]) end
  a, k = a + count * 4, k + count
end
return table.concat(out, ' ')
"""

# A batch of settlements, bucket by bucket. The words (ARGV[1]), per bucket: now_ms, slot of the reservation,
# reserved, true amount, ends_ms, held; KEYS: the buckets.
_SETTLE = WORDS_LUA + """
local w = words(ARGV[1])
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 6
  local now, slot = tonumber(w[a + 1]), w[a + 2]
  local reserved, amount, ends = tonumber(w[a + 3]), tonumber(w[a + 4]), tonumber(w[a + 5])
  if w[a + 6] == '1' then
    local h = key .. '~h' .. slot
    if redis.call('EXISTS', h) == 1 then redis.call('INCRBYFLOAT', h, -reserved) end
    if amount ~= 0 and (ends < 0 or now < ends) then
      redis.call('INCRBYFLOAT', key, amount)
      if ends >= 0 then redis.call('PEXPIREAT', key, ends) end
    end
  elseif amount ~= reserved and redis.call('EXISTS', key) == 1 then
    redis.call('INCRBYFLOAT', key, amount - reserved)
  end
end
return 0
"""

_READ = VALUE_LUA + """
local slot, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do out[i] = tostring(value(key, true, slot, n)) end
return out
"""

# One reservation or one settlement as the scripts take it: its keys and its words.
Part = tuple[list[str], str]
MAX_REPLAY = 1000  # kept settlements sent in one script call when Redis is back


def held(c: Charge, now: float) -> bool:
    """Whether a charge's reservation is held in a slot (its bucket outlasts a hold) or made in place."""
    return c.ends_at is None or c.ends_at - now > HOLD


def ms_of(t: float | None) -> int:
    return -1 if t is None else math.ceil(t * 1000)


class RedisCounters:
    """The ``CounterStore`` that replicas share. Raises ``QuotaStoreUnavailable`` while Redis is down.

    Reservations asked in the same event-loop turn, or while a call is out, go to Redis as one
    script call that takes them in order (``Coalescer``); settlements too.
    """

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        client = link.client
        self._reserve: AsyncScript = client.register_script(_RESERVE)
        self._settle: AsyncScript = client.register_script(_SETTLE)
        self._read: AsyncScript = client.register_script(_READ)
        self._reserving: Coalescer[Part, list[str]] = Coalescer(self._reserve_batch)
        self._settling: Coalescer[Part, None] = Coalescer(self._settle_batch)
        self._pending: deque[Part] = deque(maxlen=MAX_PENDING)
        link.on_back(self.replay)

    def key(self, bucket: str) -> str:
        return self.link.key("q", bucket)

    async def reserve(self, charges: Sequence[Charge], now: float) -> Reserved:
        words = [f"{int(now // SLOT)} {len(charges)}"]
        words += [f"{float(c.limit)!r} {float(c.amount)!r} {ms_of(c.ends_at)} {int(held(c, now))}" for c in charges]
        keys = [self.key(c.bucket) for c in charges]
        refused, *values = (float(v) for v in await self._reserving.submit((keys, " ".join(words))))
        return Reserved(tuple(values), refused=int(refused) - 1 if refused else None)

    async def _reserve_batch(self, batch: list[Part]) -> list[list[str]]:
        keys: list[str] = []
        for k, _ in batch:
            keys += k
        args: list[str | int] = [SLOTS, SLOT * 1000, " ".join(w for _, w in batch)]
        out = str(await self.link.run(lambda _: self._reserve(keys=keys, args=args))).split()
        answers, at = [], 0
        for k, _ in batch:
            answers.append(out[at:at + 1 + len(k)])
            at += 1 + len(k)
        return answers

    async def settle(self, settled: Sequence[tuple[Charge, float]], reserved_at: float, now: float) -> None:
        now_ms, slot = ms_of(now), int(reserved_at // SLOT)
        words = []
        keys = []
        for c, amount in settled:
            mode = held(c, reserved_at)
            if not mode and amount == c.amount:
                continue  # nothing to change: no round trip
            keys.append(self.key(c.bucket))
            words.append(f"{now_ms} {slot} {float(c.amount)!r} {float(amount)!r} {ms_of(c.ends_at)} {int(mode)}")
        if not keys:
            return
        part = (keys, " ".join(words))
        try:
            await self._settling.submit(part)
        except QuotaStoreUnavailable:
            self._pending.append(part)
            raise

    async def replay(self) -> None:
        """Send the settlements that failed during the outage."""
        while self._pending:
            batch = [self._pending[i] for i in range(min(MAX_REPLAY, len(self._pending)))]
            await self._settle_batch(batch)
            for _ in batch:
                self._pending.popleft()

    async def _settle_batch(self, batch: list[Part]) -> list[None]:
        keys: list[str] = []
        for k, _ in batch:
            keys += k
        args = [" ".join(w for _, w in batch)]
        await self.link.run(lambda _: self._settle(keys=keys, args=args))
        return [None] * len(batch)

    async def adjust(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        await self.settle([(Charge(bucket, math.inf, 0.0, ends_at), delta)], now, now)

    async def read(self, buckets: Sequence[str], now: float) -> tuple[float, ...]:
        keys = [self.key(b) for b in buckets]
        out = await self.link.run(lambda _: self._read(keys=keys, args=[int(now // SLOT), SLOTS]))
        return tuple(float(v) for v in out)

    async def seed(self, bucket: str, value: float, ends_at: float | None, now: float) -> bool:
        key = self.key(bucket)
        px = ms_of(ends_at)
        done = await self.link.run(
            lambda c: c.set(key, repr(float(value)), nx=True, pxat=px if px >= 0 else None)
        )
        return bool(done)
