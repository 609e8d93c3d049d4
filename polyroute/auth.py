"""API keys: who is asking, from ``[keys.NAME]`` in the config.

Each key's secret is read from its environment variable at start, hashed with
SHA-256, and the plaintext dropped (``Secret.seal``); virtual keys from the store
(``polyroute.tenancy``) are kept only as that digest. A presented key is hashed and
looked up by its digest; an expired key is refused like a revoked one. A key is
sent as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

With no keys configured the gateway is open and everyone is the anonymous
``Principal()``. With keys, a missing, wrong or revoked key is a 401 whose
message echoes nothing and names no key; whether a key once existed is not told.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime

from polyroute.config import Config
from polyroute.errors import ConfigError, StoreUnavailable, Unauthorized
from polyroute.routing import Principal
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord

log = logging.getLogger("polyroute.auth")

_HOW = "Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."


class Keyring:
    """Every usable key by the SHA-256 of its secret: those of the config and those of the store."""

    def __init__(self, configured: list[KeyRecord], teams: list[TeamRecord], enabled: bool) -> None:
        self._configured = configured
        self._config_teams = teams
        # Keys configured (even if none is usable) or an admin API: every request must present one.
        self.enabled = enabled
        self._by_digest: dict[bytes, tuple[KeyRecord, Principal]] = {}
        self._limits: dict[str, Limits] = {}
        self._team_limits: dict[str, Limits] = {}
        self.generation = 0  # counts ``load_stored``: what was built from the limits is stale when it moves
        # The store has not been read, nor budgets counted from its ledger, since the gateway started (it
        # was down): a key not found may be one of its, its keys wait, and so do keys with a budget while
        # ``hold_budgeted`` (what they spent before the start is not counted yet).
        self.waiting_for_store = False
        self.hold_budgeted = True
        self._configured_names = frozenset(k.name for k in configured)
        self.admin_digest: bytes | None = None  # the admin key's: told apart from a client key that is wrong
        self.load_stored([], [])

    @classmethod
    def from_config(cls, config: Config) -> Keyring:
        keys: list[KeyRecord] = []
        for name, kc in config.keys.items():
            digest = kc.secret.seal()
            if digest is None:  # its variable is unset: `serve` and `config check` warn about it
                continue
            keys.append(KeyRecord.from_config(name, kc, digest))
        check_admin_apart(config, keys)
        teams = [TeamRecord.from_config(name, tc) for name, tc in config.teams.items()]
        admin = config.admin.secret is not None
        ring = cls(keys, teams, enabled=bool(config.keys) or admin)
        ring.admin_digest = config.admin.secret.seal() if config.admin.secret is not None else None
        return ring

    def load_stored(self, keys: list[KeyRecord], teams: list[TeamRecord]) -> None:
        """Take the store's keys and teams (replacing those taken before); the config's win a name clash."""
        configured = {k.name for k in self._configured}
        records = [*self._configured, *(k for k in keys if k.name not in configured)]
        self._by_digest = {k.digest: (k, _principal(k)) for k in records}
        self._limits = {k.name: k.limits for k in records if k.limits.limited}
        named = {t.name: t for t in teams} | {t.name: t for t in self._config_teams}
        self._team_limits = {name: t.limits for name, t in named.items() if t.limits.limited}
        self.generation += 1

    @property
    def limited(self) -> bool:
        """Some key or team has a budget or a rate limit."""
        return bool(self._limits or self._team_limits)

    def budgeted(self) -> list[tuple[str, str, Limits]]:
        """("key" | "team", name, limits) of everything with a budget."""
        return [*(("key", n, lim) for n, lim in self._limits.items() if lim.budget_usd is not None),
                *(("team", n, lim) for n, lim in self._team_limits.items() if lim.budget_usd is not None)]

    def limits(self, key: str | None) -> Limits | None:
        return self._limits.get(key) if key is not None else None

    def team_limits(self, team: str | None) -> Limits | None:
        return self._team_limits.get(team) if team is not None else None

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key; Unauthorized when keys are on and it is not a live key."""
        if not self.enabled:
            return Principal()
        if not presented:
            raise Unauthorized(f"No API key was sent. {_HOW}")
        # A lookup by the digest of a high-entropy secret: its timing tells nothing of any secret.
        sent = hashlib.sha256(presented.encode("utf-8")).digest()
        found = self._by_digest.get(sent)
        if found is None:
            if self.admin_digest is not None and hmac.compare_digest(sent, self.admin_digest):
                raise Unauthorized("This is the admin key: it opens /admin, /metrics and the console, not the API "
                                   "clients call. Make a client key with `polyroute keys create NAME` "
                                   "(or POST /admin/keys) and send that.")
            if self.waiting_for_store:
                raise StoreUnavailable("The API keys kept in the store cannot be read yet (it is unreachable); "
                                       "try again shortly.")
            raise Unauthorized(f"The API key sent is not valid. {_HOW}")
        record, principal = found
        if record.revoked or (record.expires_at is not None and datetime.now(UTC) >= record.expires_at):
            raise Unauthorized(f"The API key sent is not valid. {_HOW}")
        if self.waiting_for_store and (record.name not in self._configured_names
                                       or (self.hold_budgeted and self._budgeted(record))):
            raise StoreUnavailable("This key's budget cannot be counted yet: the store is unreachable; "
                                   "try again shortly.")
        return principal

    def operator(self, presented: str | None) -> Principal:
        """``authenticate``, where the admin key is taken too (what an operator reads: health, the models)."""
        if presented and self.admin_digest is not None and hmac.compare_digest(
                hashlib.sha256(presented.encode("utf-8")).digest(), self.admin_digest):
            return Principal()
        return self.authenticate(presented)

    def _budgeted(self, record: KeyRecord) -> bool:
        own, team = self._limits.get(record.name), self._team_limits.get(record.team or "")
        return (own is not None and own.budget_usd is not None) or (team is not None and team.budget_usd is not None)


def check_admin_apart(config: Config, keys: list[KeyRecord] | None = None) -> None:
    """Refuse a config whose admin secret is also a client key's: whoever holds that key could use the admin API
    (make keys, read everyone's usage), which a client key must never open."""
    admin = config.admin.secret.seal() if config.admin.secret is not None else None
    if admin is None:
        return
    if keys is None:
        keys = [KeyRecord.from_config(n, kc, d) for n, kc in config.keys.items() if (d := kc.secret.seal())]
    for k in keys:
        if hmac.compare_digest(k.digest, admin):
            raise ConfigError("is the admin secret too: a client holding this key could use the admin API; give "
                              "[admin] secret a value of its own", source=config.source, key=f"keys.{k.name}.secret")


def _principal(k: KeyRecord) -> Principal:
    return Principal(key=k.name, policy=k.policy, routes=None if k.routes is None else frozenset(k.routes),
                     team=k.team)


def principals(config: Config) -> dict[str, Principal]:
    """Every configured key's principal, by key name."""
    return {
        name: Principal(
            key=name,
            policy=kc.policy,
            routes=None if kc.routes is None else frozenset(kc.routes),
            team=kc.team,
        )
        for name, kc in config.keys.items()
    }


def principal_named(config: Config, name: str) -> Principal:
    """The principal of the key configured as ``name``; no secret is needed (for explanations)."""
    found = principals(config).get(name)
    if found is None:
        known = ", ".join(sorted(config.keys)) or "none configured"
        raise ConfigError(f"no key named {name!r} (known: {known})", source=config.source, key="keys")
    return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: a Bearer token, else ``x-api-key``."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None
