"""Keys, teams and their limits: one set of field names in TOML, JSON and CLI flags.

A virtual key's secret is ``pr-`` and 32 random bytes (URL-safe base64), shown once
when it is made; only its SHA-256 is kept. The same fields describe a key from the
config (``[keys.NAME]``) and one from the store (``/admin/keys``, ``polyroute keys``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, get_args

from polyroute.config import BudgetPeriod, Config, KeyConfig, LimitsConfig, TeamConfig

SECRET_PREFIX = "pr-"
PERIODS: tuple[str, ...] = get_args(BudgetPeriod)

# The fields a key has, as every interface names them (``name`` is the key's address).
KEY_FIELDS = ("team", "policy", "routes", "budget_usd", "budget_period", "rpm", "tpm", "expires_at")
TEAM_FIELDS = ("budget_usd", "budget_period", "rpm", "tpm")


def new_secret() -> str:
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Limits:
    budget_usd: float | None = None
    budget_period: str = "month"
    rpm: int | None = None
    tpm: int | None = None

    @property
    def limited(self) -> bool:
        return self.budget_usd is not None or self.rpm is not None or self.tpm is not None

    @classmethod
    def of(cls, c: LimitsConfig) -> Limits:
        return cls(c.budget_usd, c.budget_period, c.rpm, c.tpm)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as stored. ``digest`` is the SHA-256 of its secret; the secret itself is never kept."""

    name: str
    digest: bytes
    team: str | None = None
    policy: str | None = None
    routes: tuple[str, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    expires_at: datetime | None = None
    revoked: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def live(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, Any]:
        """The key as the admin API and the CLI show it: every field, never the secret nor its hash."""
        return {
            "name": self.name, "team": self.team, "policy": self.policy,
            "routes": list(self.routes) if self.routes is not None else None,
            **asdict(self.limits),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked, "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_config(cls, name: str, kc: KeyConfig, key_digest: bytes) -> KeyRecord:
        routes = tuple(kc.routes) if kc.routes is not None else None
        return cls(name, key_digest, kc.team, kc.policy, routes, Limits.of(kc), kc.expires_at, kc.revoked)


@dataclass(frozen=True, slots=True)
class TeamRecord:
    name: str
    limits: Limits = field(default_factory=Limits)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self.limits)}

    @classmethod
    def from_config(cls, name: str, tc: TeamConfig) -> TeamRecord:
        return cls(name, Limits.of(tc))


def with_changes(record: KeyRecord, changes: dict[str, Any]) -> KeyRecord:
    """``record`` with the fields of ``changes`` (already validated by ``KeyFields``) applied."""
    limits = replace(record.limits, **{k: v for k, v in changes.items() if k in TEAM_FIELDS})
    rest = {k: v for k, v in changes.items() if k not in TEAM_FIELDS}
    if "routes" in rest and rest["routes"] is not None:
        rest["routes"] = tuple(rest["routes"])
    return replace(record, limits=limits, **rest)


def listed(
    config: Config | None, keys: list[KeyRecord], teams: list[TeamRecord],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every key and team as a listing shows them: the config's first, then the store's, each with its ``source``.

    A config key has no creation time (it is as old as the file) and never shows its ``env:`` location.
    """
    in_keys = config.keys if config is not None else {}
    in_teams = config.teams if config is not None else {}
    shown_keys = [
        {**KeyRecord.from_config(name, kc, b"").public(), "created_at": None, "source": "config"}
        for name, kc in in_keys.items()
    ]
    shown_keys += [{**k.public(), "source": "store"} for k in keys]
    shown_teams = [{**TeamRecord.from_config(name, tc).public(), "source": "config"} for name, tc in in_teams.items()]
    shown_teams += [{**t.public(), "source": "store"} for t in teams]
    return shown_keys, shown_teams


class Period(NamedTuple):
    id: str  # names the counter of this period ("m202612")
    start: datetime
    end: datetime | None  # None: ``total`` never ends


def period_of(period: str, now: datetime) -> Period:
    """The budget period ``now`` falls in: days start at 00:00 UTC, weeks on Monday, months on the 1st."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return Period(day.strftime("d%Y%m%d"), day, day + timedelta(days=1))
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return Period(start.strftime("w%Y%m%d"), start, start + timedelta(days=7))
    if period == "month":
        start = day.replace(day=1)
        return Period(start.strftime("m%Y%m"), start, (start + timedelta(days=32)).replace(day=1))
    return Period("total", datetime(1970, 1, 1, tzinfo=UTC), None)
