"""Circuit breakers per backend and per model.

A breaker is *closed* while its key (``backend:NAME`` or ``model:NAME``) answers. It
*opens* after ``failures`` failures in a row, when more than ``error_rate`` of the
attempts in the last ``window`` seconds failed, or at once for a cooldown the
upstream asked for (``Retry-After``) or earned (a region block, a refused key, an
account that cannot pay, a model that no longer exists).
An open breaker lets **one probe per** ``probe_interval`` through (*half-open*);
the probe's success closes it, its failure keeps it open for another interval.
So during an outage a dead primary sees one request per interval, not one per
client request, while traffic flows to the fallback.

    closed ──failures / error rate / cooldown──▶ open ──interval passed──▶ half-open
      ▲                                            ▲                           │
      └──────────────── probe succeeded ───────────┼─────── probe failed ──────┘

Scopes: a failure is charged to the narrowest scope that explains it (the error's
``scope``, see ``polyroute.errors``). A model key is one configured model, so the
same upstream id on two backends has two breakers.

    model:NAME     a 429, a 5xx, a timeout, a malformed answer, a cut stream,
                   a retired model (404 model_not_found): that model only
    backend:NAME   a connection that fails, or an account-wide code (a refused
                   key, billing, a region block of the whole API): every model
        ▲
        └── widened: ``widen_after_models`` distinct models of the backend failing
            the same way within ``window`` open the backend's breaker too
            (a retired model never widens: a catalog may retire several ids at once)

The client's own 400 counts against neither (it proves the upstream is up).

State lives behind ``BreakerStore`` (async, so a shared store such as Redis can
implement it, the per-backend record of recent failures by model included);
``MemoryBreakerStore`` is the default, one per process.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from polyroute.config import BreakerConfig
from polyroute.errors import (
    UpstreamAuthError,
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)

log = logging.getLogger("polyroute.breakers")

_BUCKETS = 10  # the error-rate window is kept as this many counters, not one entry per call


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    # The attempt ended without saying anything about the key (cancelled, or failed
    # for another key's reason): a probe it held is given back.
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    # Open at once for this long (Retry-After, a block, a refused key).
    cooldown: float | None = None
    reason: str = ""  # an UpstreamError.outcome: "blocked", "rate_limited", "unavailable" ...
    detail: str = ""
    why: str = ""  # why this key's scope was charged ("account-wide ...", "3 models rate_limited within 30s")


SUCCESS = Outcome(Verdict.SUCCESS)
RELEASE = Outcome(Verdict.RELEASE)


@dataclass(frozen=True, slots=True)
class Admission:
    """May an attempt go to this key now? ``probe`` when it is the one probe of an open breaker."""

    allowed: bool
    probe: bool = False
    state: State = State.CLOSED
    reason: str = ""
    retry_in: float = 0.0
    # What the failure that opened it said ("no API key: DEEPSEEK_API_KEY is not set ..."), for errors.
    detail: str = ""
    # Why its scope was charged, when that is not plain ("3 models rate_limited within 30s (a, b, c)").
    why: str = ""


@dataclass(frozen=True, slots=True)
class View:
    """A breaker as the health endpoint shows it."""

    key: str
    state: State
    reason: str = ""
    detail: str = ""
    why: str = ""
    retry_in: float = 0.0  # seconds until the next probe may go
    consecutive_failures: int = 0
    window_attempts: int = 0
    window_failures: int = 0


class BreakerStore(Protocol):
    """Where breaker state lives. Every method is atomic per key."""

    async def admit(self, key: str) -> Admission:
        """Whether an attempt may go now; claims the probe slot of an open breaker."""

    async def record(self, key: str, outcome: Outcome) -> tuple[State, State]:
        """Account one attempt's end; returns the state before and after."""

    async def get(self, key: str) -> View: ...

    async def snapshot(self) -> list[View]:
        """Every key the store has seen."""

    async def spread(self, key: str, member: str, reason: str) -> list[str]:
        """Note that ``member`` (a model of backend ``key``) failed as ``reason``; return the distinct
        members that failed as ``reason`` within the window, this one included, in name order."""


@dataclass
class Breaker:
    """One key's state machine. Pure: time comes in as ``now``."""

    policy: BreakerConfig
    state: State = State.CLOSED
    consecutive: int = 0
    next_probe: float = 0.0  # while open: the earliest time a probe may go
    reason: str = ""
    detail: str = ""
    why: str = ""
    # The error-rate window as ring buckets: [bucket start, attempts, failures].
    buckets: list[list[float]] = field(default_factory=lambda: [[0.0, 0, 0] for _ in range(_BUCKETS)])

    def admit(self, now: float) -> Admission:
        if self.state is State.CLOSED:
            return Admission(True)
        if now < self.next_probe:
            return Admission(False, state=self.state, reason=self.reason, retry_in=self.next_probe - now,
                             detail=self.detail, why=self.why)
        # One probe per interval: the next one may go only after another interval,
        # even if this one hangs.
        self.state = State.HALF_OPEN
        self.next_probe = now + self.policy.probe_interval
        return Admission(True, probe=True, state=self.state, reason=self.reason)

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome.verdict is Verdict.RELEASE:
            if self.state is State.HALF_OPEN:
                self.next_probe = now  # the probe told nothing: let the next attempt be one
            return
        failed = outcome.verdict is Verdict.FAILURE
        self._count(failed, now)
        if not failed:
            self.consecutive = 0
            if self.state is not State.CLOSED:
                self.state, self.reason, self.detail, self.why = State.CLOSED, "", "", ""
            return
        self.consecutive += 1
        if outcome.cooldown is not None:
            self._open(outcome, max(self.next_probe, now + outcome.cooldown))
        elif self.state is State.HALF_OPEN or self._tripped(now):
            self._open(outcome, now + self.policy.probe_interval)

    def view(self, key: str, now: float) -> View:
        attempts, failures = self._window(now)
        return View(
            key=key,
            state=self.state,
            reason=self.reason,
            detail=self.detail,
            why=self.why,
            retry_in=round(max(0.0, self.next_probe - now), 3) if self.state is not State.CLOSED else 0.0,
            consecutive_failures=self.consecutive,
            window_attempts=attempts,
            window_failures=failures,
        )

    def _open(self, outcome: Outcome, until: float) -> None:
        self.state = State.OPEN
        self.next_probe = until
        self.reason = outcome.reason
        self.detail = outcome.detail
        self.why = outcome.why

    def _tripped(self, now: float) -> bool:
        if self.consecutive >= self.policy.failures:
            return True
        attempts, failures = self._window(now)
        return attempts >= self.policy.min_requests and failures > self.policy.error_rate * attempts

    def _count(self, failed: bool, now: float) -> None:
        width = self.policy.window / _BUCKETS
        start = now - now % width
        bucket = self.buckets[int(now / width) % _BUCKETS]
        if bucket[0] != start:
            bucket[:] = [start, 0, 0]
        bucket[1] += 1
        bucket[2] += failed

    def _window(self, now: float) -> tuple[int, int]:
        oldest = now - self.policy.window
        live = [b for b in self.buckets if b[0] > oldest]
        return int(sum(b[1] for b in live)), int(sum(b[2] for b in live))


class MemoryBreakerStore:
    """Breakers in this process's memory: the default store."""

    def __init__(self, policy: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._breakers: dict[str, Breaker] = {}
        # (backend key, reason) -> model -> when it last failed so: what widening counts.
        self._spread: dict[tuple[str, str], dict[str, float]] = {}

    def _get(self, key: str) -> Breaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = Breaker(self.policy)
        return breaker

    def breaker(self, key: str, make: bool = False) -> Breaker | None:
        """The state machine of ``key`` (made when ``make``), for a store that shares it."""
        return self._get(key) if make else self._breakers.get(key)

    async def admit(self, key: str) -> Admission:
        breaker = self._breakers.get(key)
        if breaker is None or breaker.state is State.CLOSED:
            return Admission(True)  # the hot path: nothing to allocate, nothing to compute
        return breaker.admit(self.clock())

    async def record(self, key: str, outcome: Outcome) -> tuple[State, State]:
        breaker = self._get(key)
        before = breaker.state
        breaker.record(outcome, self.clock())
        return before, breaker.state

    async def get(self, key: str) -> View:
        breaker = self._breakers.get(key)
        return breaker.view(key, self.clock()) if breaker else View(key, State.CLOSED)

    async def snapshot(self) -> list[View]:
        now = self.clock()
        return [b.view(k, now) for k, b in sorted(self._breakers.items())]

    async def spread(self, key: str, member: str, reason: str) -> list[str]:
        now = self.clock()
        seen = self._spread.setdefault((key, reason), {})
        seen[member] = now
        oldest = now - self.policy.window
        for name in [n for n, at in seen.items() if at <= oldest]:
            del seen[name]
        return sorted(seen)


# --- what an error says, and about whom ---------------------------------------------------


def backend_key(backend: str) -> str:
    return f"backend:{backend}"


def model_key(model: str) -> str:
    return f"model:{model}"


def outcomes(
    err: UpstreamError | None, policy: BreakerConfig, detail: str | None = None
) -> tuple[Outcome, Outcome]:
    """What an attempt's end means for its backend's breaker and its model's.

    ``err`` is the failure as the adapter raised it (a cut stream's cause, not the cut);
    it is charged to its own ``scope``. ``detail`` replaces the error's message in the breaker.
    """
    if err is None or isinstance(err, UpstreamRejected):
        return SUCCESS, SUCCESS  # an answer, even "your request is wrong", proves the upstream is up
    said = (detail or err.message)[:300]
    failure = Outcome(Verdict.FAILURE, cooldown(err, policy), err.outcome, said, why_charged(err))
    if err.scope == "backend":
        return failure, RELEASE
    return RELEASE, failure


def cooldown(err: UpstreamError, policy: BreakerConfig) -> float | None:
    """How long a failure takes its scope out at once, if it does."""
    if isinstance(err, UpstreamBlocked):
        return policy.block_cooldown
    if isinstance(err, UpstreamAuthError):
        return policy.auth_cooldown
    if isinstance(err, UpstreamBilling):
        return policy.billing_cooldown
    if isinstance(err, UpstreamModelNotFound):
        return policy.retired_cooldown
    if isinstance(err, (UpstreamRateLimited, UpstreamServerError)) and err.retry_after:
        return min(err.retry_after, policy.block_cooldown)  # what the upstream said, within the block's bound
    return None


def why_charged(err: UpstreamError) -> str:
    if err.scope == "model":
        return "this model only: the backend's other models keep serving"
    if err.account_wide:
        return f"account-wide: the provider's {err.outcome} applies to every model of the backend"
    return "the backend itself did not answer"


def widens(err: UpstreamError) -> bool:
    """Whether a model's failure counts toward opening its backend's breaker (see the module doc)."""
    return err.scope == "model" and not isinstance(err, UpstreamModelNotFound)
