"""Budgets and rate limits: the gatekeeper that reserves before the first attempt and settles after.

For a key with limits (its own, its team's, or both) admission reserves, in one
``CounterStore.reserve``: a request in this minute's ``rpm`` bucket, the request's
worst-case tokens (the prompt's estimate and its ``max_tokens``, or the default
output) in this minute's ``tpm`` bucket, and its worst-case cost (those tokens at the
most expensive candidate's prices) in the budget period's bucket. When the request
has finished, settlement adds the true tokens and cost and gives the rest back.

    admit ──reserve(rpm +1, tpm +worst tokens, usd +worst cost)──▶ Refused ──▶ 429 / 402
                               │ reserved                         (Retry-After / when it resets)
                               ▼
                  attempts ... finished ──▶ settle(rpm 1, tpm true tokens, usd true cost)

When the counters cannot be reached (Redis down), ``on_down`` decides: ``allow``
admits the request with this process's own counters (each replica enforces the
limits alone until Redis is back), ``deny`` refuses it with 503
``quota_store_unavailable``; unset, a request is denied when one of its scopes has
a budget and allowed otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from polyroute.attempts import Report
from polyroute.auth import Keyring
from polyroute.errors import BudgetExceeded, QuotaStoreUnavailable, RateLimitExceeded
from polyroute.finish import Finished
from polyroute.routing import Plan
from polyroute.routing.needs import needs_of
from polyroute.tenancy.leases import Leases, Lent
from polyroute.tenancy.memory import MemoryCounters
from polyroute.tenancy.model import Limits, period_of
from polyroute.tenancy.stores import Charge, CounterStore
from polyroute.types import ChatRequest

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

MINUTE = 60
DAY = 86_400
CACHED_PRINCIPALS = 10_000


@dataclass(frozen=True, slots=True)
class _Scope:
    kind: str  # "key" or "team"
    name: str
    limits: Limits


@dataclass(frozen=True, slots=True)
class _Buckets:
    """A principal's scopes and the buckets they charge in one minute (built once a minute, not per request)."""

    minute: int
    day: int  # the UTC day: every budget period starts and ends on a day's edge
    limits: tuple[Limits | None, Limits | None]  # the key's and the team's, as they were when built
    scopes: list[_Scope]
    charges: list[tuple[str, str, float, float | None]]  # (what, bucket, limit, ends_at)
    window_end: float


class QuotaPass:
    """What one request reserved, and the headers that tell the client what is left."""

    __slots__ = ("charges", "cost", "counters", "lent", "reserved_at", "tokens", "values", "window_end")

    def __init__(self, charges: list[tuple[str, Charge]], values: tuple[float, ...], tokens: int, cost: float,
                 window_end: float, reserved_at: float = 0.0, counters: CounterStore | None = None,
                 lent: Lent | None = None) -> None:
        self.charges = charges  # (what: "rpm" | "tpm" | "usd", charge)
        self.values = values
        self.tokens = tokens
        self.cost = cost
        self.window_end = window_end
        self.reserved_at = reserved_at
        self.counters = counters  # where it was reserved, so where it is settled
        self.lent = lent  # taken from leases instead (polyroute.tenancy.leases): settled into them

    def headers(self) -> dict[str, str]:
        left: dict[str, tuple[float, float]] = {}  # what -> (remaining, limit), the scarcest scope's
        for (what, c), v in zip(self.charges, self.values, strict=True):
            remaining = max(c.limit - v, 0.0)
            if what not in left or remaining < left[what][0]:
                left[what] = (remaining, c.limit)
        h: dict[str, str] = {}
        if "rpm" in left:
            h["x-ratelimit-limit-requests"] = str(int(left["rpm"][1]))
            h["x-ratelimit-remaining-requests"] = str(int(left["rpm"][0]))
            h["x-ratelimit-reset-requests"] = f"{max(math.ceil(self.window_end - time.time()), 0)}s"
        if "tpm" in left:
            h["x-ratelimit-limit-tokens"] = str(int(left["tpm"][1]))
            h["x-ratelimit-remaining-tokens"] = str(int(left["tpm"][0]))
        if "usd" in left:
            h["x-polyroute-budget-remaining-usd"] = f"{left['usd'][0]:.6f}"
        return h


class Quota:
    """The ``Gatekeeper`` for keys and teams with budgets or rate limits."""

    def __init__(self, keys: Keyring, counters: CounterStore | None = None, on_down: str | None = None,
                 leases: Leases | None = None) -> None:
        self.keys = keys
        self.counters: CounterStore = counters or MemoryCounters()
        self.on_down = on_down
        self.leases = leases
        # What ``allow`` counts in while the shared counters are unreachable.
        self.fallback = self.counters if isinstance(self.counters, MemoryCounters) else MemoryCounters()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: dict[tuple[str | None, str | None], _Buckets] = {}

    def _buckets(self, key: str | None, team: str | None, now: float) -> _Buckets | None:
        """The buckets this principal charges now; None when nothing limits it."""
        minute, day = int(now // MINUTE), int(now // DAY)
        limits = (self.keys.limits(key), self.keys.team_limits(team))
        cached = self._cache.get((key, team))
        if (cached is not None and cached.minute == minute and cached.day == day
                and cached.limits[0] is limits[0] and cached.limits[1] is limits[1]):
            return cached
        scopes = self.scopes(key, team)
        if not scopes:
            self._cache.pop((key, team), None)
            return None
        window_end = float((minute + 1) * MINUTE)
        charges: list[tuple[str, str, float, float | None]] = []
        for s in scopes:
            base, lim = f"{s.kind}:{s.name}", s.limits
            if lim.rpm is not None:
                charges.append(("rpm", f"{base}:rpm:{minute}", lim.rpm, window_end))
            if lim.tpm is not None:
                charges.append(("tpm", f"{base}:tpm:{minute}", lim.tpm, window_end))
            if lim.budget_usd is not None:
                period = period_of(lim.budget_period, datetime.fromtimestamp(now, UTC))
                charges.append(("usd", f"{base}:usd:{period.id}", lim.budget_usd,
                                period.end.timestamp() if period.end else None))
        if len(self._cache) >= CACHED_PRINCIPALS:
            self._cache.clear()  # keys come and go: the cache never holds more than this many
        built = _Buckets(minute, day, limits, scopes, charges, window_end)
        self._cache[(key, team)] = built
        return built

    def scopes(self, key: str | None, team: str | None) -> list[_Scope]:
        out = []
        if (lim := self.keys.limits(key)) is not None and key is not None:
            out.append(_Scope("key", key, lim))
        if (lim := self.keys.team_limits(team)) is not None and team is not None:
            out.append(_Scope("team", team, lim))
        return out

    async def admit(self, req: ChatRequest, ctx: RequestContext, plan: Plan) -> QuotaPass | None:
        p = ctx.principal
        now = time.time()
        buckets = self._buckets(p.key, p.team, now)
        if buckets is None:
            return None
        needs = plan.needs or needs_of(req)
        tokens = needs.prompt_tokens + needs.output_tokens
        cost = max(((needs.prompt_tokens * m.input_per_mtok + needs.output_tokens * m.output_per_mtok) / 1e6
                    for m in plan.candidates), default=0.0)
        amounts: dict[str, float] = {"rpm": 1, "tpm": tokens, "usd": cost}
        charges = [(what, Charge(bucket, limit, amounts[what], ends_at)) for what, bucket, limit, ends_at in
                   buckets.charges]
        scopes, window_end = buckets.scopes, buckets.window_end
        counters, asked = self.counters, [c for _, c in charges]
        if self.leases is not None and (lent := self.leases.take(asked, now)) is not None:
            return QuotaPass(charges, lent.reserved.values, tokens, cost, window_end, now, counters, lent)
        try:
            if isinstance(counters, MemoryCounters):
                got = counters.reserve_now(asked, now)  # no coroutine for a dict
            else:
                got = await counters.reserve(asked, now)
        except QuotaStoreUnavailable:
            if not self.allowed_while_down(scopes):
                raise
            counters = self.fallback
            got = await counters.reserve(asked, now)
        if got.refused is not None:
            raise self.refusal(scopes, charges[got.refused], got.values[got.refused], now)
        return QuotaPass(charges, got.values, tokens, cost, window_end, now, counters)

    def allowed_while_down(self, scopes: list[_Scope]) -> bool:
        if self.on_down is not None:
            return self.on_down == "allow"
        return all(s.limits.budget_usd is None for s in scopes)

    @staticmethod
    def refusal(
        scopes: list[_Scope], charge: tuple[str, Charge], value: float, now: float
    ) -> BudgetExceeded | RateLimitExceeded:
        what, c = charge
        kind, name = c.bucket.split(":", 2)[:2]
        who = f"{kind} '{name}'"
        if what == "usd":
            period = next(s.limits.budget_period for s in scopes if (s.kind, s.name) == (kind, name))
            if c.ends_at is None:
                when = "This budget does not reset; raise budget_usd to go on."
            else:
                when = f"It resets at {datetime.fromtimestamp(c.ends_at, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}."
            return BudgetExceeded(
                f"The budget of {who} is spent: ${value:.6f} of ${c.limit:.2f} "
                f"(per {period}, requests in flight included). {when}"
            )
        unit = "requests" if what == "rpm" else "tokens"
        wait = max(math.ceil((c.ends_at or now) - now), 1)
        return RateLimitExceeded(
            f"Rate limit of {who} reached: {int(c.limit)} {unit} per minute. Retry after {wait}s.",
            retry_after=wait,
        )

    # -- settlement (the finished seam) -------------------------------------------------------

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        admitted = outcome.admitted
        if not isinstance(admitted, QuotaPass):
            return
        true = {"rpm": 1.0, "tpm": float(report.usage["total_tokens"]), "usd": report.cost_usd}
        settled = [(c, true[what]) for what, c in admitted.charges]
        if admitted.lent is not None and self.leases is not None:
            self.leases.settle(admitted.lent, [amount for _, amount in settled])  # no task: in the process
            return
        now = time.time()
        counters = admitted.counters or self.counters
        if isinstance(counters, MemoryCounters):
            counters.settle_now(settled, now)  # no task for a dict
            return
        self._spawn(counters.settle(settled, admitted.reserved_at, now))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(QuotaStoreUnavailable):  # logged once by the store; kept to replay
                await coro

        task = asyncio.get_running_loop().create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for the settlements under way, e.g. before the process ends."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def remaining(self, key: str | None, team: str | None) -> dict[str, Any]:
        """What a key has left, for ``GET /v1/usage``: each scope's budget, spend and reset."""
        now = time.time()
        out: dict[str, Any] = {}
        for s in self.scopes(key, team):
            lim = s.limits
            if lim.budget_usd is None:
                continue
            period = period_of(lim.budget_period, datetime.fromtimestamp(now, UTC))
            bucket = f"{s.kind}:{s.name}:usd:{period.id}"
            (spent,) = await self.counters.read([bucket], now)
            if self.leases is not None:
                spent = max(spent - self.leases.unused(bucket), 0.0)  # held by this process, not spent
            out[s.kind] = {
                "name": s.name, "budget_usd": lim.budget_usd, "budget_period": lim.budget_period,
                "spent_usd": round(spent, 8), "remaining_usd": round(max(lim.budget_usd - spent, 0.0), 8),
                "resets_at": period.end.strftime("%Y-%m-%dT%H:%M:%SZ") if period.end else None,
            }
        return out
