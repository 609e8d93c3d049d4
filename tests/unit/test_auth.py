"""API keys: hashed at start, compared in constant time, refused without a word too many."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.auth import Keyring, presented_key, principal_named
from polyroute.errors import ConfigError, Unauthorized
from polyroute.routing import Principal

ENV = {"ACME_KEY": "sk-acme-0123456789", "OLD_KEY": "sk-old-abcdef", "TEAM_KEY": "sk-team-xyz"}


def config(keys: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> cfg.Config:
    raw = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "other": {"backend": "f"}},
        "policies": {"onprem": {"locality": "local"}},
        "keys": keys if keys is not None else {
            "acme": {"secret": "env:ACME_KEY", "policy": "onprem", "team": "red"},
            "old": {"secret": "env:OLD_KEY", "revoked": True},
            "team": {"secret": "env:TEAM_KEY", "routes": ["echo"]},
        },
    }
    return cfg.parse(raw, env=ENV if env is None else env)


def test_a_live_key_gives_its_principal() -> None:
    ring = Keyring.from_config(config())
    assert ring.authenticate("sk-acme-0123456789") == Principal(key="acme", policy="onprem", team="red")
    assert ring.authenticate("sk-team-xyz").routes == frozenset({"echo"})


@pytest.mark.parametrize(("presented", "message"), [
    (None, "No API key was sent. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."),
    ("", "No API key was sent. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."),
    ("sk-acme-012345678", "The API key sent is not valid. Send it as 'Authorization: Bearer <key>' or "
                          "'x-api-key: <key>'."),
    ("sk-old-abcdef", "The API key sent is not valid. Send it as 'Authorization: Bearer <key>' or "
                      "'x-api-key: <key>'."),
])
def test_missing_wrong_and_revoked_keys_are_401_and_leak_nothing(presented: str | None, message: str) -> None:
    ring = Keyring.from_config(config())
    with pytest.raises(Unauthorized) as info:
        ring.authenticate(presented)
    err = info.value
    assert err.status == 401 and err.type == "authentication_error" and err.code == "invalid_api_key"
    assert err.message == message  # no echo of the key, no key names, no hint that a key was revoked


def test_the_plaintext_is_not_kept_only_its_hash() -> None:
    conf = config()
    secret = conf.keys["acme"].secret
    Keyring.from_config(conf)
    assert secret.get() is None
    assert secret.present and "sk-acme" not in repr(secret)
    assert secret.seal() == hashlib.sha256(b"sk-acme-0123456789").digest()
    # Sealing again (a second gateway from the same config) keeps keys working.
    assert Keyring.from_config(conf).authenticate("sk-acme-0123456789").key == "acme"
    assert "sk-acme" not in str(conf.redacted())


def test_a_key_whose_variable_is_unset_cannot_be_used_but_the_gateway_stays_closed() -> None:
    conf = config(env={})
    ring = Keyring.from_config(conf)
    assert ring.enabled
    with pytest.raises(Unauthorized):
        ring.authenticate("anything")
    assert ("keys.acme.secret", "ACME_KEY") in conf.unset_secrets()


def test_without_keys_everyone_is_the_anonymous_principal() -> None:
    ring = Keyring.from_config(config(keys={}))
    assert not ring.enabled
    assert ring.authenticate(None) == Principal()
    assert ring.authenticate("whatever the SDK sends") == Principal()


@pytest.mark.parametrize(("authorization", "x_api_key", "expected"), [
    ("Bearer sk-1", None, "sk-1"),
    ("bearer   sk-1 ", None, "sk-1"),
    (None, "sk-2", "sk-2"),
    ("Basic dXNlcjpwYXNz", "sk-2", "sk-2"),
    ("Bearer ", None, None),
    (None, None, None),
])
def test_presented_key(authorization: str | None, x_api_key: str | None, expected: str | None) -> None:
    assert presented_key(authorization, x_api_key) == expected


def test_principal_by_name_needs_no_secret() -> None:
    conf = config(env={})
    assert principal_named(conf, "acme").policy == "onprem"
    with pytest.raises(ConfigError) as info:
        principal_named(conf, "nobody")
    assert "no key named 'nobody' (known: acme, old, team)" in info.value.message


def test_revocation_is_a_config_key() -> None:
    assert config().keys["old"].revoked is True
    with pytest.raises(ConfigError) as info:
        config(keys={"k": {"secret": "env:ACME_KEY", "revokd": True}})
    assert info.value.message == "<memory>: keys.k.revokd: unknown key (did you mean 'revoked'?)"
