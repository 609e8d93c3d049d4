"""Usage from the ledger, over HTTP.

``GET /v1/usage``: a key's own usage this budget period (else the last 30 days) and
what it has left. It shows the key that asks, and nothing of anyone else.

``GET /admin/usage?by=key&since=7d&format=json``: with the admin key, the rows
``polyroute usage`` prints (``by``: key, team, model, route or day; ``since``: a span
such as 7d, 12h, 30m, 2w, or an ISO date; ``format``: json or csv).

Both count failures (``errors``) and the client's refused requests (``refused``) apart, as
``polyroute.tenancy.fault`` tells them.

Rows reach the ledger in batches, so the last ``[store] flush_interval`` seconds may not show yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from polyroute.errors import InvalidRequest, PolyrouteError, QuotaStoreUnavailable, StoreUnavailable, Unauthorized
from polyroute.gateway import Gateway
from polyroute.server.answers import Reply
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.tenancy.model import period_of
from polyroute.tenancy.usage import GROUPS, as_csv, parse_since

FORMATS = ("json", "csv")
_PARAMS = ("by", "since", "format")


class UsageEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: Request) -> Reply:
        try:
            principal = self.gateway.keys.authenticate(
                request_key(request))
            if principal.key is None:
                raise Unauthorized("Usage is kept per key: send one as 'Authorization: Bearer <key>'.")
        except PolyrouteError as exc:
            return error_response(exc)
        tenancy = self.gateway.tenancy
        now = datetime.now(UTC)
        keys = self.gateway.keys
        # The key's budget period, else its team's (the budget that binds it), else the last 30 days.
        budgeted = [lim for lim in (keys.limits(principal.key), keys.team_limits(principal.team))
                    if lim is not None and lim.budget_usd is not None]
        since = period_of(budgeted[0].budget_period, now).start if budgeted else now - timedelta(30)
        doc: dict[str, Any] = {"object": "usage", "key": principal.key, "team": principal.team,
                               "since": _iso(since)}
        if tenancy.quota is not None:
            try:
                doc["budget"] = await tenancy.quota.remaining(principal.key, principal.team)
            except QuotaStoreUnavailable as exc:  # the shared counters (Redis) are down
                return error_response(exc)
        store = tenancy.store
        if store is not None:
            try:
                summary = await asyncio.to_thread(store.summary, since, "key", principal.key)
            except StoreUnavailable as exc:
                return error_response(exc)
            doc["usage"] = summary[0] if summary else None
        else:  # no ledger: say so, rather than leave the field out as if nothing had been asked
            doc["usage"] = None
            doc["note"] = ("This gateway keeps no usage ledger (no [store] or [admin] in its config): only the "
                           "budget and limits of this key are shown.")
        return Reply(orjson.dumps(doc))


class AdminUsageEndpoint:
    """``GET /admin/usage``: everyone's usage, grouped, for the holder of the admin key."""

    def __init__(self, summary: Callable[[datetime, str], list[dict[str, Any]]],
                 authorize: Callable[[Request], None]) -> None:
        self.summary = summary  # the store's rows since a time, grouped (run in a thread: the store blocks)
        self.authorize = authorize

    async def handle(self, request: Request) -> Reply:
        try:
            self.authorize(request)
            by, since, fmt = self.query(request)
            rows = await asyncio.to_thread(self.summary, since, by)
        except PolyrouteError as exc:  # StoreUnavailable too: a 503, not a 500
            return error_response(exc)
        if fmt == "csv":
            return Reply(as_csv(rows).encode("utf-8"), content_type="text/csv; charset=utf-8")
        return Reply(orjson.dumps({"object": "list", "by": by, "since": _iso(since), "data": rows}))

    @staticmethod
    def query(request: Request) -> tuple[str, datetime, str]:
        params = request.params()
        for name in params:
            if name not in _PARAMS:
                raise InvalidRequest(f"Unknown query parameter {name!r} (known: {', '.join(_PARAMS)}).", param=name)
        by = request.param("by") or "key"
        if by not in GROUPS:
            raise InvalidRequest(f"by must be one of {', '.join(GROUPS)}, not {by[:40]!r}.", param="by")
        fmt = request.param("format") or "json"
        if fmt not in FORMATS:
            raise InvalidRequest(f"format must be json or csv, not {fmt[:40]!r}.", param="format")
        try:
            since = parse_since(request.param("since") or "7d", datetime.now(UTC))
        except ValueError as exc:
            raise InvalidRequest(str(exc).replace("--since", "since"), param="since") from None
        return by, since.astimezone(UTC), fmt


def _iso(at: datetime) -> str:
    """ISO 8601 to the second, UTC as ``Z`` (``strftime`` writes year 1 as ``1``, not ``0001``)."""
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
