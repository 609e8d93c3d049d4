"""Orchestration only: resolve the name, plan the candidates, attempt them, report."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from polyroute.auth import Keyring
from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.failover import Failover, Report
from polyroute.fleet import Fleet
from polyroute.routing import Plan, Principal, Router
from polyroute.types import ChatChunk, ChatRequest, ChatResponse


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal = field(default_factory=Principal)
    # A policy named by the client to narrow (never widen) its own.
    narrow_policy: str | None = None
    # The client asked for the routing decision in a response header (x-polyroute-explain).
    explain: bool = False
    # The quality target the client asked for (x-polyroute-quality), for "quality" routes.
    quality: float | None = None


class Gateway:
    def __init__(self, fleet: Fleet, router: Router | None = None, failover: Failover | None = None) -> None:
        self.fleet = fleet
        self.router = router or Router(fleet)
        self.failover = failover or Failover(fleet)
        self.keys = Keyring.from_config(fleet.config)

    @classmethod
    def from_config(cls, config: Config, catalog: Catalog) -> Gateway:
        return cls(Fleet.build(config, catalog))

    async def start(self) -> None:
        await self.fleet.start()

    async def aclose(self) -> None:
        await self.fleet.aclose()

    def plan(self, req: ChatRequest, ctx: RequestContext) -> Plan:
        route = self.fleet.resolve(req.model)
        return self.router.plan(route, req, ctx.principal, ctx.narrow_policy, ctx.quality)

    async def complete(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None
    ) -> tuple[ChatResponse, Report]:
        plan = plan or self.plan(req, ctx)
        report = Report(route=plan.route.name)
        try:
            resp = await self.failover.complete(plan.route, plan.candidates, req, report)
        finally:
            self.router.observe(report)
        if report.model is not None:
            resp["model"] = report.model.name
        return resp, report

    def stream(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None
    ) -> tuple[AsyncIterator[ChatChunk], Report]:
        plan = plan or self.plan(req, ctx)
        report = Report(route=plan.route.name)
        return self.failover.stream(plan.route, plan.candidates, req, report, self._stream_ended), report

    def _stream_ended(self, report: Report, first_token_at: float | None) -> None:
        """Time the stream for the router's moving averages."""
        # A stream the client left early, or one rescued by another model, times nothing useful.
        timed = first_token_at is not None and not report.streaming and not report.rescued
        self.router.observe(report, first_token_at if timed else None, time.monotonic() if timed else None)
