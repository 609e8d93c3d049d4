"""A key's and a team's fields as the admin API and the CLI take them: one set of names, one set of checks.

Named as in ``[keys.NAME]`` and ``[teams.NAME]``: ``name``, ``team``, ``policy``,
``routes``, ``budget_usd``, ``budget_period``, ``rpm``, ``tpm``, ``expires_at``, with
the config's bounds.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from polyroute.config import AwareTime, BudgetPeriod, BudgetUsd, Config, PerMinute
from polyroute.errors import InvalidRequest
from polyroute.tenancy.model import KeyRecord, Limits

# Starts with a letter or digit, so that no name is '.' or '..', which URLs and clients rewrite.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_usd: BudgetUsd | None = None
    budget_period: BudgetPeriod = "month"
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None

    def limits(self) -> Limits:
        return Limits(self.budget_usd, self.budget_period, self.rpm, self.tpm)


class KeyFields(_Fields):
    """A key's fields in the admin API's JSON (and the CLI's flags)."""

    name: str | None = None
    team: str | None = None
    policy: str | None = None
    routes: list[str] | None = None
    expires_at: AwareTime | None = None

    @field_validator("team")
    @classmethod
    def _team_name(cls, v: str | None) -> str | None:
        # A team is named as teams are made (``check_name``): it is shown, grouped by and exported.
        if v is not None and not _NAME.match(v):
            raise ValueError(f"a team's name is {NAME_RULE}")
        return v


class TeamFields(_Fields):
    name: str | None = None


def check_expiry(f: KeyFields) -> None:
    """A new key that would be refused from its first request is a mistake (a date typed wrong), not a key."""
    if f.expires_at is not None and f.expires_at <= datetime.now(UTC):
        raise InvalidRequest(f"expires_at {f.expires_at.isoformat()} has passed already", param="expires_at")


def check_name(name: str | None) -> str:
    """A new key's or team's name, or InvalidRequest naming the rule."""
    if not name or not _NAME.match(name):
        raise InvalidRequest(f"name is required: {NAME_RULE}", param="name")
    return name


def check_references(fields: Mapping[str, Any], config: Config | None, store_teams: Collection[str]) -> None:
    """Refuse a key's references to what neither the config nor the store defines, as the config itself would:
    a mistyped team would leave the key out of its team's budget and limits without a word. Without a config
    (a CLI on the store alone), only the team is checked, against the store's."""
    team = fields.get("team")
    if team is not None and team not in store_teams and (config is None or team not in config.teams):
        known = sorted({*store_teams, *(config.teams if config is not None else ())})
        unread = "; the config's teams are known with --config" if config is None else ""
        raise InvalidRequest(f"team {team!r} is not defined (known: {', '.join(known) or 'none'}{unread}); make it "
                             f"first (POST /admin/teams, or polyroute teams create {team})", param="team")
    if config is None:
        return
    policy = fields.get("policy")
    if policy is not None and policy not in config.policies:
        known_policies = ", ".join(sorted(config.policies)) or "none"
        raise InvalidRequest(f"policy {policy!r} is not defined (known: {known_policies})", param="policy")
    names = config.client_names()
    for r in fields.get("routes") or []:
        if r not in names:
            raise InvalidRequest(f"route {r!r} is not defined (known: {', '.join(names) or 'none'})", param="routes")


def team_members(team: str, config: Config | None, stored: Collection[KeyRecord]) -> list[str]:
    """The keys, of the config and of the store, that are not revoked and name ``team``: what deleting it would
    leave without its limits."""
    named = {k.name for k in stored if k.team == team and not k.revoked}
    named |= {n for n, k in (config.keys if config is not None else {}).items() if k.team == team and not k.revoked}
    return sorted(named)
