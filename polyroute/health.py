"""Backend health: the breakers of each candidate, as failover and operators see them.

``Health.admit`` asks both breakers of a candidate (its backend's and its model's)
whether an attempt may go; ``Health.settle`` tells them how it ended, charging the
failure to its scope (and widening it to the backend when several of its models
fail the same way), and logs every state change with the scope and why.
``Health.report`` is what ``GET /v1/health/backends`` shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from polyroute.adapters.base import Adapter
from polyroute.breakers import (
    RELEASE,
    SUCCESS,
    Admission,
    BreakerStore,
    MemoryBreakerStore,
    Outcome,
    State,
    Verdict,
    View,
    backend_key,
    model_key,
    outcomes,
    widens,
)
from polyroute.config import BreakerConfig
from polyroute.errors import (
    UpstreamAuthError,
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from polyroute.fleet import Fleet, ModelEntry

log = logging.getLogger("polyroute.breakers")

# Skips that a request may override when every candidate is skipped (see attempts.Walk): only a
# breaker opened by failures. A cooldown the upstream asked for (Retry-After) or earned (a block,
# a refused key, an unpaid bill, a retired model) is never overridden.
PANIC_CODES = frozenset({"circuit_open"})
SKIP_CODES = {
    "blocked": "blocked_cooldown",
    "auth_error": "auth_cooldown",
    "billing": "billing_cooldown",
    "model_not_found": "retired_cooldown",
    "rate_limited": "rate_limited_cooldown",
}


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted attempt: which of its breakers it probes."""

    entry: ModelEntry
    probes: tuple[str, ...] = ()


class Health:
    def __init__(self, policy: BreakerConfig, store: BreakerStore | None = None) -> None:
        self.policy = policy
        self.store: BreakerStore = store or MemoryBreakerStore(policy)

    async def admit(self, entry: ModelEntry) -> Ticket | UpstreamError:
        """A ticket for an attempt at ``entry``, or the error that says why it is skipped."""
        bkey, mkey = backend_key(entry.backend), model_key(entry.name)
        backend = await self.store.admit(bkey)
        if not backend.allowed:
            return _skipped(entry, backend, whole_backend=True)
        model = await self.store.admit(mkey)
        if not model.allowed:
            if backend.probe:
                await self.store.record(bkey, RELEASE)
            return _skipped(entry, model)
        probes = tuple(k for k, a in ((bkey, backend), (mkey, model)) if a.probe)
        for key in probes:
            log.info("breaker %s half-open: probing (%s)", key, (backend if key == bkey else model).reason)
        return Ticket(entry, probes)

    async def settle(self, ticket: Ticket, err: UpstreamError | None, *, counts: bool = True) -> None:
        """Account an attempt's end. ``counts=False`` when it ended for a reason not its own."""
        entry = ticket.entry
        if not counts:
            b_out, m_out = RELEASE, RELEASE
        elif err is None:
            b_out, m_out = SUCCESS, SUCCESS
        else:
            b_out, m_out = outcomes(err, self.policy, operator_detail(entry, err))
        bkey = backend_key(entry.backend)
        await self._record(bkey, b_out)
        await self._record(model_key(entry.name), m_out)
        if err is not None and m_out.verdict is Verdict.FAILURE and widens(err):
            await self._widen(bkey, entry, m_out)

    async def _widen(self, bkey: str, entry: ModelEntry, failed: Outcome) -> None:
        """Several models of one backend failing the same way within the window: the backend is charged."""
        models = await self.store.spread(bkey, entry.name, failed.reason)
        if len(models) < self.policy.widen_after_models:
            return
        why = f"{len(models)} models {failed.reason} within {self.policy.window:g}s ({', '.join(models)})"
        await self._record(bkey, Outcome(Verdict.FAILURE, failed.cooldown or self.policy.probe_interval,
                                         failed.reason, failed.detail, why))

    async def release(self, ticket: Ticket) -> None:
        """The attempt was abandoned (hedge lost, client gone): it tells nothing."""
        for key in ticket.probes:
            await self.store.record(key, RELEASE)

    async def _record(self, key: str, outcome: Outcome) -> None:
        before, after = await self.store.record(key, outcome)
        if before is after:
            return
        if after is State.CLOSED:
            log.info("breaker %s closed (was %s)", key, before)
        elif after is State.OPEN and before is State.CLOSED:
            view = await self.store.get(key)
            log.warning(
                "breaker %s open: %s (%s); scope %s: %s; next probe in %.1fs",
                key, outcome.reason, outcome.detail, key.partition(":")[0], outcome.why, view.retry_in,
            )
        elif after is State.OPEN:
            log.info("breaker %s probe failed: %s; stays open", key, outcome.reason)

    async def report(self, fleet: Fleet) -> dict[str, Any]:
        """Every backend and model with its breaker, for ``GET /v1/health/backends``."""
        views = {v.key: v for v in await self.store.snapshot()}

        def show(key: str) -> dict[str, Any]:
            v = views.get(key) or View(key, State.CLOSED)
            closed = v.state is State.CLOSED
            return {
                "state": str(v.state),
                # The scope charged (this key's kind) and why, while it is out.
                "scope": None if closed else key.partition(":")[0],
                "reason": v.reason or None,
                "why": v.why or None,
                "detail": v.detail or None,
                "next_probe_in": v.retry_in if v.state is not State.CLOSED else None,
                "consecutive_failures": v.consecutive_failures,
                "window": {"attempts": v.window_attempts, "failures": v.window_failures},
            }

        backends = {name: _backend_view(show(backend_key(name)), adapter) for name, adapter in fleet.adapters.items()}
        models = {name: {"backend": m.backend, **show(model_key(name))} for name, m in fleet.models.items()}
        # A backend that cannot take requests (its key unset, its weights loading) degrades the fleet
        # as an open breaker does: some models of the config will not answer.
        degraded = any(b["state"] != "closed" or not b["ready"] for b in backends.values()) or any(
            m["state"] != "closed" for m in models.values()
        )
        up = [b for b in backends.values() if b["state"] != "open" and b["ready"]]
        status = "down" if not up else "degraded" if degraded else "ok"
        return {"status": status, "backends": backends, "models": models}


def operator_detail(entry: ModelEntry, err: UpstreamError) -> str:
    """The failure in words that tell the operator what to do, where the fix is theirs."""
    if isinstance(err, UpstreamModelNotFound):
        return (f"model {entry.upstream} on backend {entry.backend}: the provider says it does not exist "
                f"({err.message[:120]}); update the catalog or [models.{entry.name}].upstream")
    return err.message


def _backend_view(view: dict[str, Any], adapter: Adapter) -> dict[str, Any]:
    """A backend's breaker, whether it can take requests, and if not why (before any attempt said so)."""
    why = adapter.unready_reason()
    return {**view, "ready": why is None, "detail": view["detail"] or why}


def _skipped(entry: ModelEntry, why: Admission, *, whole_backend: bool = False) -> UpstreamError:
    """The error a skipped candidate adds to the report, so a refusal explains itself."""
    retry = round(why.retry_in, 1)
    # Only a breaker opened by failures may be overridden when nothing else is left (PANIC_CODES).
    code = SKIP_CODES.get(why.reason, "circuit_open")
    kw: dict[str, Any] = {"backend": entry.backend, "model": entry.name, "code": code}
    # Why it opened, in the upstream's or the adapter's own words: what the operator must fix.
    said = f": {why.detail[:200]}" if why.detail else ""
    if whole_backend and why.why:
        # The backend was charged for its other models' failures: this model may never have failed itself.
        said = f" (backend {entry.backend} out: {why.why[:200]}){said}"
    if why.reason == "blocked":
        return UpstreamBlocked(f"skipped: blocked, next probe in {retry}s{said}", **kw)
    if why.reason == "rate_limited":
        return UpstreamRateLimited(f"skipped: rate limited for {retry}s more{said}", retry_after=why.retry_in, **kw)
    if why.reason == "billing":
        return UpstreamBilling(f"skipped: billing, next probe in {retry}s{said}", **kw)
    if why.reason == "model_not_found":
        return UpstreamModelNotFound(f"skipped: model not found, next probe in {retry}s{said}", **kw)
    if why.reason == "auth_error":  # a refused or missing key: lasting, as the failure that opened it
        return UpstreamAuthError(f"skipped: circuit open (auth_error), next probe in {retry}s{said}", **kw)
    return UpstreamUnavailable(f"skipped: circuit open ({why.reason or 'failing'}), next probe in {retry}s{said}", **kw)
