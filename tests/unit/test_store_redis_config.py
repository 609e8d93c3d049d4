"""``[store] redis``, ``on_redis_down`` and ``share_breakers``: what the config takes and refuses."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.errors import ConfigError
from polyroute.redislink import safe_url

BASE: dict[str, Any] = {"backends": {"f": {"type": "fake"}}, "models": {"m": {"backend": "f"}}}


def parse(store: dict[str, Any], env: dict[str, str] | None = None) -> cfg.Config:
    return cfg.parse({**BASE, "store": {"url": "sqlite:////tmp/x.db", **store}}, env=env or {})


def test_a_plain_url_is_taken_as_written() -> None:
    store = parse({"redis": "redis://10.0.0.5:6379/2"}).store
    assert store.redis_url() == "redis://10.0.0.5:6379/2"
    assert store.redis_prefix == "polyroute:" and store.on_redis_down is None and not store.share_breakers


def test_a_url_with_a_password_must_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"store\.redis: a Redis URL with a password is a secret"):
        parse({"redis": "redis://:hunter2@10.0.0.5:6379/0"})
    c = parse({"redis": "env:REDIS_URL"}, {"REDIS_URL": "redis://:hunter2@10.0.0.5:6379/0"})
    assert c.store.redis_url() == "redis://:hunter2@10.0.0.5:6379/0"
    assert "hunter2" not in str(c.redacted()) and c.redacted()["store"]["redis"] == "env:REDIS_URL (set)"


def test_an_unset_variable_is_reported_like_every_secret() -> None:
    c = parse({"redis": "env:REDIS_URL"})
    assert c.store.redis_url() is None and ("store.redis", "REDIS_URL") in c.unset_secrets()


@pytest.mark.parametrize(("store", "said"), [
    ({"redis": "http://10.0.0.5"}, "redis must start with redis://"),
    ({"redis": "redis://h", "on_redis_down": "maybe"}, "store.on_redis_down"),
    ({"share_breakers": True}, "share_breakers = true needs redis"),
    ({"redis": "redis://h", "redis_prefix": ""}, "store.redis_prefix"),
])
def test_bad_values_are_refused(store: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        parse(store)


def test_the_logged_url_hides_the_password() -> None:
    assert safe_url("redis://user:hunter2@h:6380/1") == "redis://user:***@h:6380/1"
    assert safe_url("rediss://:hunter2@h/0") == "rediss://:***@h/0"
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"
