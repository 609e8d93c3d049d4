"""Text completions through the gateway: plan, attempt, and finish at the gateway's one seam.

What ``Gateway.complete`` and ``Gateway.embed`` do for their requests, for a text
completion: a ``Report`` per request, the walk over the plan's candidates, and one
call to the gateway's finished seam however the request ends (the ledger, the
metrics, the access log, the router's statistics and the key's settled budget).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from polyroute.failover import Report
from polyroute.finish import Pass
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan

from .plan import CompletionPlanner
from .types import CompletionRequest, TextChunk, TextCompletion
from .walk import complete_over, stream_over


class TextCompletions:
    """The gateway's text completions, built once per app."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.planner = CompletionPlanner(gateway.fleet, gateway.router)

    def plan(self, req: CompletionRequest, ctx: RequestContext) -> tuple[Plan, list[str]]:
        return self.planner.plan(req, ctx.principal, ctx.narrow_policy)

    async def complete(self, req: CompletionRequest, ctx: RequestContext, plan: Plan, left_out: list[str],
                       admitted: Pass | None) -> tuple[TextCompletion, Report]:
        """A whole answer from one model of ``plan``; the request finishes here."""
        gateway = self.gateway
        report = Report(route=plan.route.name, left_out=left_out)
        # The gateway's one finished seam (its own requests end there too), not a second one beside it.
        with gateway.finishing(ctx, report, admitted):
            got = await complete_over(gateway.fleet, gateway.failover.health, plan, req, report)
            report.response_id = got.get("id") or None
        return got, report

    def stream(self, req: CompletionRequest, ctx: RequestContext, plan: Plan, left_out: list[str],
               admitted: Pass | None) -> tuple[AsyncIterator[TextChunk], Report]:
        """The chunks; the request finishes when the iterator ends or is closed (start it to own it)."""
        gateway = self.gateway
        report = Report(route=plan.route.name, left_out=left_out)

        def ended(report: Report, first_at: float | None, error: BaseException | None) -> None:
            gateway.finish(ctx, report, error, True, first_at, admitted)

        return stream_over(gateway.fleet, gateway.failover.health, plan, req, report, ended), report
