"""The columns of keys, teams and usage as the SQL stores (SQLite, PostgreSQL) hold them.

Both stores keep the same columns in the same order; only the SQL around them and
the type of a time differ (ISO text in SQLite, ``timestamptz`` in PostgreSQL). A
store passes the function that writes its times; reading accepts either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from polyroute.tenancy.fault import failed_sql, refused_sql
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord
from polyroute.tenancy.stores import UsageRow

KEY_COLS = ("name, digest, team, policy, routes, budget_usd, budget_period, rpm, tpm, expires_at, revoked, "
            "created_at")
TEAM_COLS = "name, budget_usd, budget_period, rpm, tpm"
USAGE_COLS = ("request_id, at, key, team, route, model, backend, attempts, tokens_in, tokens_out, cost_usd, "
              "estimated, latency_ms, ttft_ms, status, error, stream")

Stamp = Callable[[datetime], object]  # a time as the store writes it


def group_by(day: str) -> dict[str, str]:
    """The report's groups as SQL (``polyroute.tenancy.usage.group_of``): a missing name is "-", and a
    day is ``day``, the store's expression of the UTC date."""
    return {**{by: f"COALESCE(NULLIF({by}, ''), '-')" for by in ("key", "team", "model", "route")}, "day": day}


def traffic_sql(table: str, minute: str, where: str, bucket: Callable[[str], str]) -> tuple[str, str, str, str]:
    """The four statements of ``LedgerStore.traffic``: totals (failures and refusals apart, as
    ``polyroute.tenancy.fault`` tells them), latency and first-token histograms of the requests not
    refused, routes, each per minute. ``minute`` is the store's expression of a row's minute, ``bucket``
    makes its expression of a latency column's histogram bucket, ``where`` picks the rows."""
    answered = f"{where} AND NOT {refused_sql()}"
    return (
        f"SELECT {minute} AS m, count(*), sum(CASE WHEN {failed_sql()} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {refused_sql()} THEN 1 ELSE 0 END), "
        f"sum(cost_usd), sum(tokens_in), sum(tokens_out) FROM {table} WHERE {where} GROUP BY m",
        f"SELECT {minute} AS m, {bucket('latency_ms')} AS b, count(*) FROM {table} WHERE {answered} GROUP BY m, b",
        f"SELECT {minute} AS m, {bucket('ttft_ms')} AS b, count(*) FROM {table} WHERE {answered} "
        "AND ttft_ms IS NOT NULL GROUP BY m, b",
        f"SELECT {minute} AS m, route, count(*) FROM {table} WHERE {where} AND route <> '' GROUP BY m, route",
    )


def key_row(r: KeyRecord, stamp: Stamp) -> tuple[object, ...]:
    lim = r.limits
    return (r.name, r.digest, r.team, r.policy, json.dumps(list(r.routes)) if r.routes is not None else None,
            lim.budget_usd, lim.budget_period, lim.rpm, lim.tpm,
            stamp(r.expires_at) if r.expires_at else None, r.revoked, stamp(r.created_at))


def key_of(row: tuple[object, ...]) -> KeyRecord:
    name, dig, team, policy, routes, budget, period, rpm, tpm, expires, revoked, created = row
    return KeyRecord(
        str(name), bytes(dig) if isinstance(dig, (bytes, memoryview)) else b"", opt(team), opt(policy),
        tuple(json.loads(str(routes))) if routes is not None else None,
        limits_of(budget, period, rpm, tpm),
        time_of(expires) if expires else None, bool(revoked), time_of(created),
    )


def team_row(t: TeamRecord) -> tuple[object, ...]:
    lim = t.limits
    return (t.name, lim.budget_usd, lim.budget_period, lim.rpm, lim.tpm)


def team_of(row: tuple[object, ...]) -> TeamRecord:
    name, budget, period, rpm, tpm = row
    return TeamRecord(str(name), limits_of(budget, period, rpm, tpm))


def limits_of(budget: object, period: object, rpm: object, tpm: object) -> Limits:
    return Limits(None if budget is None else to_float(budget), str(period),
                  None if rpm is None else to_int(rpm), None if tpm is None else to_int(tpm))


def usage_row(r: UsageRow, stamp: Stamp) -> tuple[object, ...]:
    return (r.request_id, stamp(r.at), r.key, r.team, r.route, r.model, r.backend, r.attempts,
            r.tokens_in, r.tokens_out, r.cost_usd, r.estimated, r.latency_ms, r.ttft_ms, r.status, r.error,
            r.stream)


def usage_of(row: tuple[object, ...]) -> UsageRow:
    (rid, at, key, team, route, model, backend, attempts, tin, tout, cost, est, lat, ttft, status, error,
     stream) = row
    return UsageRow(
        str(rid), time_of(at), opt(key), opt(team), str(route), opt(model), opt(backend), str(attempts),
        to_int(tin), to_int(tout), to_float(cost), bool(est), to_float(lat),
        None if ttft is None else to_float(ttft), to_int(status), opt(error), bool(stream),
    )


def time_of(v: object) -> datetime:
    """A stored time, as UTC (``timestamptz`` comes back in the session's zone, text as written)."""
    at = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:  # an instant past either end of what a date holds, in UTC (a row from before it was checked)
        return (datetime.max if at.year > 1 else datetime.min).replace(tzinfo=UTC)


def opt(v: object) -> str | None:
    return None if v is None else str(v)


def to_int(v: object) -> int:
    return int(v) if isinstance(v, (int, float)) else 0


def to_float(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0
