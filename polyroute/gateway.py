"""Orchestration only: resolve the name, plan the candidates, admit, attempt them, tell the observers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyroute.auth import Keyring
from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.embeddings.plan import EmbeddingPlanner, not_for_chat
from polyroute.embeddings.types import Embedded, EmbeddingRequest
from polyroute.embeddings.walk import embed_over
from polyroute.failover import Failover, Report
from polyroute.finish import Finished, Gatekeeper, Observers, Pass, RequestIds, RequestObserver, Unanswered, ending
from polyroute.fleet import Fleet
from polyroute.health import Health
from polyroute.redislink import RedisLink
from polyroute.routing import Plan, Principal, Router
from polyroute.sharedbreakers import RedisBreakerStore
from polyroute.tenancy.setup import Tenancy
from polyroute.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from polyroute.quality.decisions import DecisionLog

_IDS = RequestIds()


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal = field(default_factory=Principal)
    # A policy named by the client to narrow (never widen) its own.
    narrow_policy: str | None = None
    # The client asked for the routing decision in a response header (x-polyroute-explain).
    explain: bool = False
    # The quality target the client asked for (x-polyroute-quality), for "quality" routes.
    quality: float | None = None
    # The gateway's own id for the request (never the provider's), and when it arrived (monotonic).
    request_id: str = field(default_factory=_IDS.next)
    started: float = field(default_factory=time.monotonic)
    # The client's W3C trace context, for traces (polyroute.spans) that continue the client's.
    traceparent: str | None = None


class RouterStats:
    """The observer that feeds finished requests to the router's moving averages."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        if not report.attempts:
            return
        # A stream the client left early, or one rescued by another model, times nothing useful.
        timed = (
            outcome.stream and outcome.first_token_at is not None and outcome.error is None and not report.rescued
        )
        if timed:
            self.router.observe(report, outcome.first_token_at, outcome.ended)
        else:
            self.router.observe(report)


class Gateway:
    def __init__(
        self,
        fleet: Fleet,
        router: Router | None = None,
        failover: Failover | None = None,
        observers: Sequence[RequestObserver] = (),
        gatekeeper: Gatekeeper | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.fleet = fleet
        self.router = router or Router(fleet)
        # The Redis that replicas share ([store] redis): counters, key changes, breakers.
        self.link = RedisLink.from_config(fleet.config) if tenancy is None else tenancy.link
        self.failover = failover or Failover(fleet, self._health())
        # Keys, teams, budgets, limits and the ledger: nothing at all unless the config asks for them.
        self.tenancy = tenancy or Tenancy(fleet.config, Keyring.from_config(fleet.config), self.link)
        self.keys = self.tenancy.keys
        self.gatekeeper = gatekeeper or self.tenancy.quota
        observers = [*self.tenancy.observers(), *observers]
        # Quality routes' decisions, kept for feedback (POST /v1/feedback) and retraining.
        self.decisions = decision_log(fleet)
        if self.decisions is not None:
            observers.append(self.decisions)
        # The gatekeeper settles first: what a request spent is counted before anyone reports it.
        first: list[RequestObserver] = [self.gatekeeper] if self.gatekeeper is not None else []
        self.observers = Observers([*first, RouterStats(self.router), *observers])
        self.embeddings = EmbeddingPlanner(self.fleet, self.router)

    @classmethod
    def from_config(cls, config: Config, catalog: Catalog) -> Gateway:
        return cls(Fleet.build(config, catalog))

    def _health(self) -> Health | None:
        policy = self.fleet.config.gateway.breakers
        if self.link is not None and self.fleet.config.store.share_breakers:
            return Health(policy, RedisBreakerStore(policy, self.link))
        return None

    async def start(self) -> None:
        if self.link is not None:
            await self.link.start()
        await self.tenancy.start()
        await self.fleet.start()
        self.router.start()
        if self.decisions is not None:
            self.decisions.start()

    async def aclose(self) -> None:
        try:
            await self.router.aclose()
            await self.fleet.aclose()
        finally:
            await self.tenancy.aclose()  # the ledger writes what it holds before the process ends
            if self.decisions is not None:
                await asyncio.to_thread(self.decisions.close)
            if self.link is not None:
                await self.link.aclose()

    def reload(self) -> None:
        """Read changed router files again now (SIGHUP), rather than at the next poll."""
        self.router.reload()

    def plan(self, req: ChatRequest, ctx: RequestContext) -> Plan:
        route = self.fleet.resolve(req.model)
        if route.models[0].embeds:  # a route is all embedding models or none (polyroute.config_embeddings)
            raise not_for_chat(route)
        plan = self.router.plan(route, req, ctx.principal, ctx.narrow_policy, ctx.quality)
        if plan.judged is not None and self.decisions is not None:
            self.decisions.note(ctx, plan)
        return plan

    async def admit(self, req: ChatRequest, ctx: RequestContext, plan: Plan) -> Pass | None:
        """Check and reserve the principal's budgets and limits; a refusal finishes the request here."""
        if self.gatekeeper is None:
            return None
        try:
            return await self.gatekeeper.admit(req, ctx, plan)
        except BaseException as exc:
            self.refused(ctx, exc, route=plan.route.name, stream=req.stream)
            raise

    async def complete(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None, admitted: Pass | None = None
    ) -> tuple[ChatResponse, Report]:
        plan = plan or self.plan(req, ctx)
        report = Report(route=plan.route.name, left_out=plan.left_out())
        error: BaseException | None = None
        try:
            resp = await self.failover.complete(plan.route, plan.candidates, req, report)
            report.response_id = resp.get("id") or None
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.finish(ctx, report, error, False, None, admitted)
        if report.model is not None:
            resp["model"] = report.model.name
        return resp, report

    def stream(
        self, req: ChatRequest, ctx: RequestContext, plan: Plan | None = None, admitted: Pass | None = None
    ) -> tuple[AsyncIterator[ChatChunk], Report]:
        """The chunks; the request finishes when the iterator ends or is closed (start it to own it)."""
        plan = plan or self.plan(req, ctx)
        report = Report(route=plan.route.name, left_out=plan.left_out())

        def ended(report: Report, first_token_at: float | None, error: BaseException | None) -> None:
            self.finish(ctx, report, error, True, first_token_at, admitted)

        return self.failover.stream(plan.route, plan.candidates, req, report, ended), report

    def plan_embeddings(self, req: EmbeddingRequest, ctx: RequestContext) -> Plan:
        return self.embeddings.plan(req, ctx.principal, ctx.narrow_policy)

    async def embed(
        self, req: EmbeddingRequest, ctx: RequestContext, plan: Plan, admitted: Pass | None = None
    ) -> tuple[Embedded, Report]:
        """Every input's vector, from one model of ``plan``; the request finishes here, as ``complete``'s does."""
        report = Report(route=plan.route.name, left_out=plan.left_out())
        error: BaseException | None = None
        try:
            return await embed_over(self.fleet, self.failover.health, plan, req, report), report
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.finish(ctx, report, error, False, None, admitted)

    def refused(
        self, ctx: RequestContext, exc: BaseException, *, route: str = "", stream: bool = False
    ) -> None:
        """Finish a request that ended before any attempt (its key, its body, its route, its limits)."""
        self.finish(ctx, Report(route=route), exc, stream, None, None)

    @contextmanager
    def finishing(self, ctx: RequestContext, report: Report, admitted: Pass | None) -> Iterator[None]:
        """The attempts at a whole answer, in a ``with``: the request finishes when they end, however they end,
        as ``complete``'s does (for answers of other APIs than chat)."""
        try:
            yield
        except BaseException as exc:
            self.finish(ctx, report, exc, False, None, admitted)
            raise
        self.finish(ctx, report, None, False, None, admitted)

    def finish(
        self, ctx: RequestContext, report: Report, error: BaseException | None, stream: bool,
        first_token_at: float | None, admitted: Pass | None,
    ) -> None:
        status, code = ending(error)
        if stream and first_token_at is not None:
            if isinstance(error, Unanswered):
                first_token_at = None  # it reached the gateway; the client had left before it went out
            else:
                status = 200  # the head left with the first token; how it ended is in ``error``
        outcome = Finished(ctx.request_id, status, stream, ctx.started, time.monotonic(), first_token_at, code,
                           admitted)
        self.observers.finish(ctx, report, outcome)


def decision_log(fleet: Fleet) -> DecisionLog | None:
    """The log of quality decisions, in the store's SQLite file; None without a "quality" route.

    With a PostgreSQL store the decisions stay in this machine's SQLite file (the default
    path in the user's data directory): feedback is taken by the replica that routed.
    """
    if not any(r.config.strategy == "quality" for r in fleet.routes.values()):
        return None
    from polyroute.quality.decision_store import DecisionStore
    from polyroute.quality.decisions import DecisionLog
    from polyroute.tenancy.sqlite import default_path, path_of

    url = fleet.config.store.url
    path = path_of(url) if url is None or url.startswith("sqlite:///") else default_path()
    return DecisionLog(DecisionStore(path))
