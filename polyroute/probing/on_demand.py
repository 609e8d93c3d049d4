"""Probes of a running gateway's models at an operator's word: ``POST /admin/probe`` and the console.

An operator who has fixed what made a model fail (topped up the account, set the key,
waited out the provider's outage) should not wait for the breaker's next probe, which
traffic drives. Each model named is asked once, through the gateway's own adapters
(``polyroute.probing.ask``), and the outcome is told to its breakers as an attempt's is
(``Health.settle``): an answer closes the model's breaker and its backend's; a failure is
charged to its scope, with its cooldown and its reason. With ``[store] share_breakers``
a closing (or an opening) reaches every replica, as any attempt's does.

    names ──claim (one per model per SPACING)──▶ ask ──▶ Health.settle ──▶ Gateway.finish (ledger, logs, metrics)
             │ claimed within SPACING                      (the breaker closes, or stays open with the reason)
             └──▶ 429, Retry-After

A probe of a paid model costs money: each is a request of the gateway's, finished at
its one seam, so it is in the usage ledger (route ``(probe)``, key ``(admin)``: names no
client route or key can take), the access log and the metrics. The claim is kept in
Redis when the gateway has one (every replica and worker), else in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from polyroute.breakers import backend_key, model_key
from polyroute.errors import InvalidRequest, QuotaStoreUnavailable, RateLimitExceeded
from polyroute.failover import Report
from polyroute.fleet import ModelEntry
from polyroute.health import Ticket
from polyroute.probing.ask import Asked, ask
from polyroute.probing.hints import Hints
from polyroute.redact import Redactor
from polyroute.routing import Principal

if TYPE_CHECKING:
    from polyroute.gateway import Gateway

SPACING = 5.0  # seconds between two probes of one model
CONCURRENCY = 4  # models asked at once
ROUTE = "(probe)"  # the ledger's route of a probe
KEY = "(admin)"  # and its key: the admin's, a name no stored or configured key can take


class OnDemandProbes:
    """Asks the gateway's models on demand, feeds their breakers, and bills the probes."""

    def __init__(self, gateway: Gateway, spacing: float = SPACING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gateway = gateway
        self.fleet = gateway.fleet
        self.spacing = spacing
        self.clock = clock
        self.hints = Hints(self.fleet.config, self.fleet.catalog, timeout_flag=None, running=True)
        self.redact = Redactor.from_config(self.fleet.config)
        self.last: dict[str, float] = {}  # model -> when this process last probed it
        self._gate: asyncio.Semaphore | None = None

    def entries(self, names: Sequence[str] | None) -> list[ModelEntry]:
        """The models named (a route stands for its models), each once, in the order named; None: every model."""
        if names is None:
            return list(self.fleet.models.values())
        found: dict[str, ModelEntry] = {}
        for name in names:
            if name in self.fleet.models:
                found[name] = self.fleet.models[name]
            elif name in self.fleet.routes:
                found.update((m.name, m) for m in self.fleet.routes[name].models)
            else:
                known = ", ".join(self.fleet.models) or "none"
                raise InvalidRequest(f"no model or route named {name!r} (models: {known})", param="models")
        if not found:
            raise InvalidRequest("models names no model: leave it out to probe every model", param="models")
        return list(found.values())

    async def run(self, names: Sequence[str] | None) -> list[dict[str, Any]]:
        """Each model's result, with its breakers as they are after it; 429 when one was probed just now."""
        entries = self.entries(names)
        await self.claim([e.name for e in entries])
        if self._gate is None:
            self._gate = asyncio.Semaphore(CONCURRENCY)
        gate = self._gate

        async def one(entry: ModelEntry) -> dict[str, Any]:
            async with gate:
                asked = await ask(self.fleet, entry, self.hints)
            if asked.sent:
                await self.gateway.failover.health.settle(Ticket(entry), asked.error)
                self.bill(entry, asked)
            return {**asked.result.as_json(self.redact), "breaker": await self.breakers(entry)}

        return list(await asyncio.gather(*(one(e) for e in entries)))

    # -- at most one probe of a model per ``spacing`` ---------------------------------------------

    async def claim(self, names: list[str]) -> None:
        """Claim this interval's probe of every model named, or none of them (429 with the longest wait)."""
        now = self.clock()
        waits = {n: self.last[n] + self.spacing - now for n in names if n in self.last}
        waits = {n: w for n, w in waits.items() if w > 0}
        if not waits:
            waits = await self._claim_shared(names)
        if waits:
            wait = max(waits.values())
            listed = ", ".join(sorted(waits))
            raise RateLimitExceeded(
                f"probed less than {self.spacing:g}s ago: {listed}; a probe costs a request on a paid provider, "
                f"so a model is probed at most once every {self.spacing:g}s: try again in {math.ceil(wait)}s",
                retry_after=wait)
        for name in names:
            self.last[name] = now

    async def _claim_shared(self, names: list[str]) -> dict[str, float]:
        """With Redis, the claim is every replica's: the models another one probed within the interval, and how
        long until each may be probed again (none when Redis is unreachable: this process's claim stands)."""
        link = self.gateway.link
        if link is None:
            return {}
        ms = max(int(self.spacing * 1000), 1)
        keys = {n: link.key("probe-now", n) for n in names}
        won: list[str] = []
        waits: dict[str, float] = {}
        with contextlib.suppress(QuotaStoreUnavailable):
            for name, key in keys.items():
                if await link.run(lambda c, k=key: c.set(k, "1", nx=True, px=ms)):  # type: ignore[misc]
                    won.append(name)
                else:
                    left = await link.run(lambda c, k=key: c.pttl(k))  # type: ignore[misc]
                    waits[name] = max(float(left), 1.0) / 1000
            if waits and won:  # none of them, then: the others may be asked with the rest later
                await link.run(lambda c: c.delete(*(keys[n] for n in won)))
        return waits

    # -- what a probe leaves behind -----------------------------------------------------------------

    def bill(self, entry: ModelEntry, asked: Asked) -> None:
        """Finish the probe at the gateway's seam, as a request of the admin's: the ledger has its cost."""
        from polyroute.gateway import RequestContext

        report = Report(route=ROUTE)
        err = asked.error
        if err is None:
            report.record(entry, "ok", asked.started)
            report.model = entry
        else:
            report.fail(entry, err, asked.started)
        # What the upstream said it used: with the answer, or with a failure that came after part of one.
        used = asked.result.usage if asked.result.usage is not None else err.usage if err is not None else None
        if used is not None:
            report.bill(entry, used)
        ctx = RequestContext(principal=Principal(key=KEY), started=asked.started)
        self.gateway.finish(ctx, report, err, False, None, None)

    async def breakers(self, entry: ModelEntry) -> dict[str, Any]:
        """The model's breaker and its backend's, as they are now."""
        store = self.gateway.failover.health.store
        model, backend = await store.get(model_key(entry.name)), await store.get(backend_key(entry.backend))
        return {"model": str(model.state), "backend": str(backend.state),
                "reason": self.redact.thoroughly(model.reason or backend.reason) or None}
