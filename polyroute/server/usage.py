"""``GET /v1/usage``: a key's own usage this budget period (else the last 30 days) and what it has left.

It shows the key that asks, and nothing of anyone else. Rows reach the ledger in
batches, so the last ``[store] flush_interval`` seconds may not show yet.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from polyroute.auth import presented_key
from polyroute.errors import PolyrouteError, QuotaStoreUnavailable, Unauthorized
from polyroute.gateway import Gateway
from polyroute.server.answers import Reply
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.tenancy.model import period_of
from polyroute.tenancy.usage import summarize


class UsageEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: Request) -> Reply:
        try:
            principal = self.gateway.keys.authenticate(
                presented_key(request.header(b"authorization"), request.header(b"x-api-key")))
            if principal.key is None:
                raise Unauthorized("Usage is kept per key: send one as 'Authorization: Bearer <key>'.")
        except PolyrouteError as exc:
            return error_response(exc)
        tenancy = self.gateway.tenancy
        now = datetime.now(UTC)
        limits = self.gateway.keys.limits(principal.key)
        since = period_of(limits.budget_period, now).start if limits and limits.budget_usd else now - timedelta(30)
        doc: dict[str, Any] = {"object": "usage", "key": principal.key, "team": principal.team,
                               "since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if tenancy.quota is not None:
            try:
                doc["budget"] = await tenancy.quota.remaining(principal.key, principal.team)
            except QuotaStoreUnavailable as exc:  # the shared counters (Redis) are down
                return error_response(exc)
        store = tenancy.store
        if store is not None:
            rows = await asyncio.to_thread(store.rows, since, principal.key)
            summary = summarize(rows, "key")
            doc["usage"] = summary[0] if summary else None
        return Reply(orjson.dumps(doc))
