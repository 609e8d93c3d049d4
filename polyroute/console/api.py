"""The console's JSON API, ``/console/api/...``: each page's data, the actions on keys and teams, and probes.

The caller is already authorised (``polyroute.console.web`` checks the session, and
the CSRF token of every action). Key and team actions go through the admin API's own code
(``Admin.serve``), so a key made here is made exactly as ``POST /admin/keys`` makes it, and a
probe is ``POST /admin/probe``'s (its spacing, its ledger row).

    GET    overview                   rolling figures of every worker, from the ledger (5 min, 1 h, 1 day)
    GET    fleet                      every model, its facts, breakers and recent speed
    POST   probe                      ask models one tiny real request now, their breakers told (as ``/admin/probe``)
    GET    usage/SPAN/BY[/csv]        spend over SPAN (1h, 1d, 7d, 30d) by team, key, model or route; budgets
    GET    keys                       stored keys (never a secret), teams, policies, routes
    POST   keys                       make a key: its secret is in this answer only
    PATCH  keys/NAME  DELETE keys/NAME  POST keys/NAME/rotate
    GET    teams                      the config's teams and the store's, each with its source
    POST   teams  PATCH teams/NAME  DELETE teams/NAME   as ``/admin/teams`` (a team keys name: {"force": true})
    GET    routes                     routes with candidates and strategy
    POST   explain                    the routing decision for a prompt (as ``polyroute route explain``)
    GET    evals                      the latest ``polyroute eval`` results
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polyroute.auth import principal_named
from polyroute.console import evals_view, views
from polyroute.console.ledger_tail import LedgerTail
from polyroute.console.recent import Recent, overview
from polyroute.errors import InvalidRequest, MethodNotAllowed, NotFound, PolyrouteError
from polyroute.gateway import Gateway
from polyroute.routing import Principal
from polyroute.routing.explain import explain
from polyroute.server.admin import Admin
from polyroute.server.answers import Reply
from polyroute.server.errors import error_response, from_validation
from polyroute.types import ChatRequest


class ExplainAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    route: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=200_000)
    key: str | None = None
    policy: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)


class ConsoleApi:
    def __init__(self, gateway: Gateway, admin: Admin, recent: Recent) -> None:
        self.gateway = gateway
        self.admin = admin
        self.recent = recent
        store = gateway.tenancy.store
        self.tail = LedgerTail(store, recent=recent) if store is not None else None
        self.config = gateway.fleet.config
        self.eval_db = Path(self.config.evals.db).expanduser()

    async def answer(self, method: str, parts: list[str], body: bytes) -> Reply:
        try:
            return await self._route(method, parts, body)
        except ValidationError as exc:
            return error_response(from_validation(exc))
        except PolyrouteError as exc:
            return error_response(exc)

    async def _route(self, method: str, parts: list[str], body: bytes) -> Reply:
        head, rest = (parts[0] if parts else ""), parts[1:]
        if head == "keys":
            return await self.keys(method, rest, body)
        if head == "teams":
            if method == "GET" and rest:
                raise MethodNotAllowed("The console lists teams only as a whole.")
            return await self.admin.serve(method, "/".join(["teams", *rest]), body)
        if head == "probe" and not rest:
            _only(method, "POST")
            return await self.admin.serve(method, "probe", body)
        if head == "explain":
            _only(method, "POST")
            return _json(await self.explain(body))
        _only(method, "GET")
        if head == "overview" and not rest:
            return _json(await self.overview())
        if head == "fleet" and not rest:
            if self.tail is not None:
                await self.tail.refresh()  # the answers that landed in the ledger since the last look
            return _json(views.fleet(self.gateway, await self.health(), self.recent))
        if head == "usage" and len(rest) in (2, 3):
            return await self.usage(rest)
        if head == "routes" and not rest:
            return _json({"routes": views.routes(self.gateway), "policies": sorted(self.config.policies),
                          # Config keys too: explaining as one of them is as useful as as a stored one.
                          "keys": sorted({*self.config.keys, *(k.name for k in await self._store_keys())})})
        if head == "evals" and not rest:
            rows, by_category = await asyncio.to_thread(evals_view.rows_from_store, self.eval_db)
            return _json({"db": str(self.eval_db), **evals_view.view(rows, by_category)})
        raise NotFound(f"Unknown console API path: /{'/'.join(parts)}")

    # -- pages -----------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        report = orjson.dumps(await self.gateway.failover.health.report(self.gateway.fleet))
        redact = self.gateway.fleet.guard.redact
        doc: dict[str, Any] = orjson.loads(redact.data(report) if redact else report)
        return doc

    async def overview(self) -> dict[str, Any]:
        health = await self.health()
        traffic = await self.tail.overview() if self.tail else {**overview([], time.time()), "source": None}
        return {"status": health["status"], "models_total": len(health["models"]),
                "models_failing": views.failing(self.gateway, health), **traffic}

    async def usage(self, rest: list[str]) -> Reply:
        span, by = rest[0], rest[1]
        if span not in views.SPANS:
            raise InvalidRequest(f"span must be one of {', '.join(views.SPANS)}", param="span")
        if by not in views.BY:
            raise InvalidRequest(f"by must be one of {', '.join(views.BY)}", param="by")
        if rest[2:] not in ([], ["csv"]):
            raise NotFound("Unknown console API path")
        store = self.gateway.tenancy.store
        now = datetime.now(UTC)
        since, step = views.start_of(span, now), int(views.SPANS[span][1].total_seconds())
        totals: list[dict[str, Any]] = []
        costs: list[tuple[str, int, float]] = []
        if store is not None:
            totals = await asyncio.to_thread(store.rollup_summary, since, by)
            costs = await asyncio.to_thread(store.cost_by_step, since, by, step)
        doc = views.usage(totals, costs, span, by, now)
        if rest[2:] == ["csv"]:
            name = f"polyroute-usage-{span}-by-{by}.csv"
            return Reply(views.csv_of(doc["totals"], by), 200,
                         {"content-disposition": f'attachment; filename="{name}"'}, content_type="text/csv")
        doc["budgets"] = await self.budgets()
        return _json(doc)

    async def budgets(self) -> list[dict[str, Any]]:
        quota = self.gateway.tenancy.quota
        if quota is None:
            return []
        out = []
        for kind, name, _ in self.gateway.keys.budgeted():
            scopes = await quota.remaining(name if kind == "key" else None, name if kind == "team" else None)
            scope = scopes.get(kind)
            if scope is not None:
                share = scope["spent_usd"] / scope["budget_usd"] if scope["budget_usd"] else None
                out.append({"kind": kind, **scope, "share_used": None if share is None else round(share, 4)})
        return out

    async def keys(self, method: str, rest: list[str], body: bytes) -> Reply:
        path = "/".join(["keys", *rest])
        if method == "GET" and not rest:
            return _json({"keys": [k.public() for k in await self._store_keys()],
                          "config_keys": sorted(self.config.keys),
                          "teams": sorted({*self.config.teams, *(t.name for t in await self._store_teams())}),
                          "policies": sorted(self.config.policies), "routes": sorted(self.config.client_names())})
        if method == "GET":
            raise MethodNotAllowed("The console lists keys only as a whole.")
        return await self.admin.serve(method, path, body)

    async def explain(self, body: bytes) -> dict[str, Any]:
        try:
            raw = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
        ask = ExplainAsk.model_validate(raw)
        chat: dict[str, Any] = {"model": ask.route, "messages": [{"role": "user", "content": ask.prompt}]}
        if ask.max_tokens is not None:
            chat["max_tokens"] = ask.max_tokens
        principal = await self._principal(ask.key)
        started = time.perf_counter()
        plan = self.gateway.router.decide(self.gateway.fleet.resolve(ask.route), ChatRequest.from_json(chat),
                                          principal, ask.policy or None)
        doc = explain(plan)
        doc["decided_in_ms"] = round((time.perf_counter() - started) * 1000, 3)
        doc["refusal"] = None if plan.candidates else plan.refusal().message
        return doc

    async def _principal(self, key: str | None) -> Principal:
        if not key:
            return Principal()
        if key in self.config.keys:
            return principal_named(self.config, key)
        store = self.gateway.tenancy.store
        record = await store.key(key) if store is not None else None
        if record is None:
            raise InvalidRequest(f"no key named {key!r}", param="key")
        return Principal(key=record.name, policy=record.policy, team=record.team,
                         routes=None if record.routes is None else frozenset(record.routes))

    async def _store_keys(self) -> list[Any]:
        store = self.gateway.tenancy.store
        return await store.keys() if store is not None else []

    async def _store_teams(self) -> list[Any]:
        store = self.gateway.tenancy.store
        return await store.teams() if store is not None else []


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"Method {method} is not allowed here (allowed: {allowed})")


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(orjson.dumps(doc), status)
