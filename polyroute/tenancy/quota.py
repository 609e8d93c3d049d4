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
limits alone until Redis is back, and what it spent meanwhile is added to the
shared counters when they are), ``deny`` refuses it with 503
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
from polyroute.fleet import cache_write_premium
from polyroute.routing import Plan
from polyroute.routing.needs import needs_of
from polyroute.tenancy.leases import Leases, Lent
from polyroute.tenancy.memory import CounterCell, MemoryCounters
from polyroute.tenancy.model import Limits, period_of
from polyroute.tenancy.stores import Charge, CounterStore, Reserved
from polyroute.types import ChatRequest

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

MINUTE = 60
CACHED_PRINCIPALS = 10_000


@dataclass(frozen=True, slots=True)
class _Scope:
    kind: str  # "key" or "team"
    name: str
    limits: Limits


# What a charge counts, as an index into the amounts of one request: (1 request, its tokens, its cost).
_WHAT = ("rpm", "tpm", "usd")
RPM, TPM, USD = 0, 1, 2


# Shown in a response: the request limit, what is left of it, when it resets; the same of tokens; the budget.
_LIMIT_REQUESTS, _LEFT_REQUESTS, _RESET = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                                          "x-ratelimit-reset-requests")
_LIMIT_TOKENS, _LEFT_TOKENS, _RESET_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                                             "x-ratelimit-reset-tokens")
_LEFT_USD = "x-polyroute-budget-remaining-usd"


@dataclass(frozen=True, slots=True)
class _Buckets:
    """A principal's scopes and the buckets they charge in one minute (built once a minute, not per request)."""

    generation: int  # the keyring's when built: its limits were these
    scopes: list[_Scope]
    charges: list[tuple[int, str, float, float | None]]  # (RPM | TPM | USD, bucket, limit, ends_at)
    window_end: float  # the minute's end, a day's too: every budget period starts and ends on a day's edge
    # For each of RPM, TPM and USD the principal is limited in: its charges' (index, limit), key's first,
    # and the limit as a header shows it when it is the only one.
    shown: tuple[tuple[int, tuple[tuple[int, float], ...], str], ...]
    budgeted: bool = False  # one of its charges is a budget: the worst case's cost is counted


class QuotaPass:
    """What one request reserved, and the headers that tell the client what is left."""

    __slots__ = ("amounts", "buckets", "cells", "counters", "lent", "reserved_at", "used", "values")

    def __init__(self, buckets: _Buckets, amounts: tuple[float, float, float], values: tuple[float, ...],
                 reserved_at: float = 0.0, counters: CounterStore | None = None, lent: Lent | None = None,
                 cells: list[CounterCell] | None = None) -> None:
        self.buckets = buckets
        self.amounts = amounts  # reserved: 1 request, its worst-case tokens, its worst-case cost (RPM, TPM, USD)
        self.values = values  # each bucket's, once reserved
        self.reserved_at = reserved_at
        self.counters = counters  # where it was reserved, so where it is settled
        self.lent = lent  # taken from leases instead (polyroute.tenancy.leases): settled into them
        self.cells = cells  # taken from ``MemoryCounters`` cells: settled into them
        self.used: tuple[float, float] | None = None  # its true tokens and cost, once settled

    @property
    def asked(self) -> list[Charge]:
        """One charge per bucket, of this request's amounts."""
        amounts = self.amounts
        return [Charge(bucket, limit, amounts[what], ends) for what, bucket, limit, ends in self.buckets.charges]

    def headers(self, used: tuple[float, float] | None = None) -> dict[str, str]:
        """What is left once this request is counted: at its worst case, or at ``used`` (its tokens and cost) when
        it is known, as for a whole answer, or once it has been settled (an error answer: what its attempts cost)."""
        h: dict[str, str] = {}
        values = self.values
        if used is None:
            used = self.used
        if used is not None:
            amounts = self.amounts
            values = tuple(
                v + (used[0] - amounts[TPM] if what == TPM else used[1] - amounts[USD] if what == USD else 0.0)
                for v, (what, _, _, _) in zip(values, self.buckets.charges, strict=True)
            )
        reset = f"{max(math.ceil(self.buckets.window_end - time.time()), 0)}s"  # both limits count by the minute
        for what, limits, limit_text in self.buckets.shown:
            index, limit = limits[0]
            remaining = limit - values[index]
            if len(limits) > 1:  # the key's and its team's: the scarcest scope's, the least left
                for i, other in limits[1:]:
                    if other - values[i] < remaining:
                        remaining, limit = other - values[i], other
                limit_text = str(int(limit))
            if remaining < 0.0:
                remaining = 0.0
            if what == RPM:
                h[_LIMIT_REQUESTS] = limit_text
                h[_LEFT_REQUESTS] = str(int(remaining))
                h[_RESET] = reset
            elif what == TPM:
                h[_LIMIT_TOKENS] = limit_text
                h[_LEFT_TOKENS] = str(int(remaining))
                h[_RESET_TOKENS] = reset
            else:
                h[_LEFT_USD] = f"{remaining:.6f}"
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
        cached = self._cache.get((key, team))
        if (cached is not None and cached.window_end - MINUTE <= now < cached.window_end
                and cached.generation == self.keys.generation):
            return cached if cached.charges else None
        minute = int(now // MINUTE)
        scopes = self.scopes(key, team)
        window_end = float((minute + 1) * MINUTE)
        charges: list[tuple[int, str, float, float | None]] = []
        for s in scopes:
            base, lim = f"{s.kind}:{s.name}", s.limits
            if lim.rpm is not None:
                charges.append((RPM, f"{base}:rpm:{minute}", lim.rpm, window_end))
            if lim.tpm is not None:
                charges.append((TPM, f"{base}:tpm:{minute}", lim.tpm, window_end))
            if lim.budget_usd is not None:
                period = period_of(lim.budget_period, datetime.fromtimestamp(now, UTC))
                charges.append((USD, f"{base}:usd:{period.id}", lim.budget_usd,
                                period.end.timestamp() if period.end else None))
        shown = tuple((what, limits, str(int(limits[0][1]))) for what in (RPM, TPM, USD)
                      if (limits := tuple((i, c[2]) for i, c in enumerate(charges) if c[0] == what)))
        if len(self._cache) >= CACHED_PRINCIPALS:
            self._cache.clear()  # keys come and go: the cache never holds more than this many
        # A principal with no limits is kept too, so that its requests pay one lookup.
        built = _Buckets(self.keys.generation, scopes, charges, window_end, shown,
                         any(c[0] == USD for c in charges))
        self._cache[(key, team)] = built
        return built if charges else None

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
        tokens_in, tokens_out = needs.prompt_tokens, needs.output_tokens
        cost, floor = 0.0, math.inf
        # A prompt marked for Claude's cache may be billed at its write rate, up to 2x the input price.
        premium = cache_write_premium(req) if buckets.budgeted else 0.0
        for m in plan.candidates:  # the most expensive candidate's price; the prompt at the cheapest's
            price_in = m.input_per_mtok * (1.0 + premium) if premium and m.bills_cache_writes else m.input_per_mtok
            cost = max(cost, (tokens_in * price_in + tokens_out * m.output_per_mtok) / 1e6)
            floor = min(floor, tokens_in * m.input_per_mtok / 1e6)
        amounts = (1.0, float(tokens_in + tokens_out), cost)  # indexed by RPM, TPM, USD
        counters = self.counters
        if isinstance(counters, MemoryCounters):  # no coroutine for a dict
            got, cells = counters.take(buckets.charges, amounts, now)
            if got.refused is None:
                return self._fits(QuotaPass(buckets, amounts, got.values, now, counters, None, cells), floor)
            raise self._refusal_of(buckets, amounts, got, now)
        if self.leases is not None and (lent := self.leases.lend(buckets.charges, amounts, now)) is not None:
            return self._fits(QuotaPass(buckets, amounts, lent.values, now, counters, lent), floor)
        asked = [Charge(bucket, limit, amounts[what], ends_at) for what, bucket, limit, ends_at in buckets.charges]
        try:
            got = await counters.reserve(asked, now)
        except QuotaStoreUnavailable:
            if not self.allowed_while_down(buckets.scopes):
                raise
            counters = self.fallback
            got = await counters.reserve(asked, now)
        if got.refused is not None:
            raise self._refusal_of(buckets, amounts, got, now)
        return self._fits(QuotaPass(buckets, amounts, got.values, now, counters), floor)

    def _fits(self, passed: QuotaPass, floor: float) -> QuotaPass:
        """Refuse, and give back, a request whose prompt alone costs more than its budget had left.

        A budget below its limit admits a request, whose true cost may then take it past the
        limit: by at most one request's cost for each request in flight. What a request's
        prompt costs is known before it is sent, and is billed whatever the answer, so a
        request that would overspend by its prompt alone is never sent.
        """
        if not floor or floor == math.inf:
            return passed
        for i, (what, bucket, limit, ends_at) in enumerate(passed.buckets.charges):
            spent = passed.values[i] - passed.amounts[USD] if what == USD else 0.0
            left = limit - spent if what == USD else math.inf
            if floor > left:
                self._settle(passed, (0.0, 0.0, 0.0))
                scope = next(s for s in passed.buckets.scopes if bucket.startswith(f"{s.kind}:{s.name}:"))
                refused = BudgetExceeded(
                    f"This request's prompt alone costs about {usd(floor)} at the cheapest candidate's price, "
                    f"more than the {usd(max(left, 0.0))} left of the budget of {scope.kind} '{scope.name}': "
                    f"{usd(spent)} of {usd(limit)} spent (per {scope.limits.budget_period}, requests in flight "
                    f"included). {_resets(ends_at)} Shorten the prompt, or raise budget_usd."
                )
                refused.limits = {**passed.headers(), _LEFT_USD: f"{max(left, 0.0):.6f}"}  # as any answer says
                raise refused
        return passed

    def _refusal_of(
        self, buckets: _Buckets, amounts: tuple[float, float, float], got: Reserved, now: float
    ) -> BudgetExceeded | RateLimitExceeded:
        i = got.refused or 0
        what, bucket, limit, ends_at = buckets.charges[i]
        refused = self.refusal(buckets.scopes, (_WHAT[what], Charge(bucket, limit, amounts[what], ends_at)),
                               got.values[i], now)
        if len(got.values) == len(buckets.charges):
            refused.limits = QuotaPass(buckets, amounts, got.values).headers()  # what is left, as any answer says
        return refused

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
            return BudgetExceeded(
                f"The budget of {who} has no room for this request: {usd(value)} of {usd(c.limit)} per {period} "
                f"is spent or held by requests in flight, and this one needs {usd(c.amount)} held, its worst case "
                f"(its prompt and max_tokens, or the default output, at its dearest candidate's price). Held amounts "
                f"come back as requests finish: a lower max_tokens, or fewer requests at once, may fit. "
                f"{_resets(c.ends_at)}"
            )
        unit = "requests" if what == "rpm" else "tokens"
        left = max((c.ends_at or now) - now, 0.001)  # the wait itself: retry-after-ms says it to the millisecond
        return RateLimitExceeded(
            f"Rate limit of {who} reached: {int(c.limit)} {unit} per minute. Retry after {max(math.ceil(left), 1)}s.",
            retry_after=left,
        )

    # -- settlement (the finished seam) -------------------------------------------------------

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        admitted = outcome.admitted
        if not isinstance(admitted, QuotaPass):
            return
        admitted.used = (float(report.usage["total_tokens"]), report.cost_usd)
        self._settle(admitted, (1.0, *admitted.used))

    def _settle(self, admitted: QuotaPass, true: tuple[float, float, float]) -> None:
        """Replace what ``admitted`` reserved by ``true`` (a request, its tokens, its cost)."""
        if admitted.cells is not None:  # no task for a dict
            MemoryCounters.settle_cells(admitted.cells, admitted.buckets.charges, admitted.amounts, true)
            return
        amounts = [true[charge[0]] for charge in admitted.buckets.charges]
        if admitted.lent is not None and self.leases is not None:
            self.leases.settle(admitted.lent, amounts)  # no task: in the process
            return
        now = time.time()
        counters = admitted.counters or self.counters
        settled = list(zip(admitted.asked, amounts, strict=True))
        if isinstance(counters, MemoryCounters):
            counters.settle_now(settled, now)  # no task for a dict
            if counters is self.fallback and self.fallback is not self.counters:
                self._owe(settled, now)
            return
        self._spawn(counters.settle(settled, admitted.reserved_at, now))

    def _owe(self, settled: list[tuple[Charge, float]], now: float) -> None:
        """What a request admitted while the shared counters were down spent, added to them too: the store keeps
        it while they are down and sends it when they are back, so no replica's spend of an outage is lost to
        the others (a budget spent alone is still spent)."""
        owed = [(Charge(c.bucket, math.inf, 0.0, c.ends_at), amount) for c, amount in settled if amount]
        if owed:
            self._spawn(self.counters.settle(owed, now, now))

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


def usd(amount: float) -> str:
    """Dollars as a person reads them: no rounding that turns $0.0001 into $0.00, no trailing zeros."""
    whole, _, cents = f"{amount:.8f}".rstrip("0").partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _resets(ends_at: float | None) -> str:
    if ends_at is None:
        return "This budget does not reset; raise budget_usd to go on."
    return f"It resets at {datetime.fromtimestamp(ends_at, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}."
