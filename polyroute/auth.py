"""API keys: who is asking, from ``[keys.NAME]`` in the config.

Each key's secret is read from its environment variable at start, hashed with
SHA-256, and the plaintext dropped (``Secret.seal``); a presented key is hashed
and compared with every stored digest using ``hmac.compare_digest``. A key is
sent as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

With no keys configured the gateway is open and everyone is the anonymous
``Principal()``. With keys, a missing, wrong or revoked key is a 401 whose
message echoes nothing and names no key; whether a key once existed is not told.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from polyroute.config import Config
from polyroute.errors import ConfigError, Unauthorized
from polyroute.routing import Principal

log = logging.getLogger("polyroute.auth")

_HOW = "Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."


@dataclass(frozen=True, slots=True)
class _Key:
    digest: bytes
    principal: Principal
    revoked: bool


class Keyring:
    def __init__(self, keys: list[_Key], enabled: bool) -> None:
        self._keys = keys
        # Keys configured (even if none is usable): every request must present one.
        self.enabled = enabled

    @classmethod
    def from_config(cls, config: Config) -> Keyring:
        keys: list[_Key] = []
        for name, principal in principals(config).items():
            kc = config.keys[name]
            digest = kc.secret.seal()
            if digest is None:  # its variable is unset: `serve` and `config check` warn about it
                continue
            keys.append(_Key(digest, principal, kc.revoked))
        return cls(keys, enabled=bool(config.keys))

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key; Unauthorized when keys are on and it is not a live key."""
        if not self.enabled:
            return Principal()
        if not presented:
            raise Unauthorized(f"No API key was sent. {_HOW}")
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        match: _Key | None = None
        for key in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                match = key
        if match is None or match.revoked:
            raise Unauthorized(f"The API key sent is not valid. {_HOW}")
        return match.principal


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
