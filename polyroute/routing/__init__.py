"""Routing: which candidates of a route may serve a request, and in what order.

``Router.plan`` filters a route's models by policy and by what the request needs,
then orders them with the route's strategy. The order it returns is what failover
walks; every exclusion carries its reason so a refusal can explain itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.types import ChatRequest


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a configured key, or nobody on an open gateway."""

    key: str | None = None
    policy: str | None = None
    routes: frozenset[str] | None = None
    team: str | None = None


@dataclass
class Plan:
    route: Route
    candidates: list[ModelEntry]
    excluded: list[tuple[ModelEntry, str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    policy: str | None = None


class Router:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def plan(self, route: Route, req: ChatRequest, principal: Principal, narrow: str | None = None) -> Plan:
        return Plan(route=route, candidates=list(route.models))
