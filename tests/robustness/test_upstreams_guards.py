"""What an upstream says, made safe: Retry-After within bounds, secrets out of every message and log line."""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from polyroute import config as cfg
from polyroute.adapters.http import parse_retry_after
from polyroute.errors import UpstreamRateLimited, UpstreamServerError
from polyroute.logs import BufferHandler, guard
from polyroute.redact import REDACTED, Redactor, UpstreamGuard

KEY = "sk-live-abcdef0123456789"


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    ("1.5", 1.5),
    ("0", 0.0),
    ("-5", 0.0),
    ("1e308", 1e9),
    ("inf", 1e9),
    ("Infinity", 1e9),
    ("-inf", 0.0),
    ("nan", None),
    ("soon", None),
    ("", None),
    (None, None),
    ("Fri, 31 Dec 9999 23:59:59 GMT", 1e9),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
])
def test_retry_after_is_always_a_finite_non_negative_number_or_nothing(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_as_an_http_date() -> None:
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    seconds = parse_retry_after(in_an_hour)
    assert seconds is not None and 3500 < seconds <= 3600


def test_the_guard_clamps_retry_after_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "polyroute.failover")
    check = UpstreamGuard(Redactor([KEY]), max_retry_after=300)
    err = check(UpstreamRateLimited("slow down", retry_after=1e9, backend="b", model="m"))
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == 300
    assert [r.getMessage() for r in caplog.records] == [
        "backend b asked to be left alone for 1000000000s (Retry-After); clamped to 300s (max_retry_after)"
    ]
    caplog.clear()
    within = check(UpstreamRateLimited("slow down", retry_after=30, backend="b", model="m"))
    assert isinstance(within, UpstreamRateLimited) and within.retry_after == 30 and not caplog.records


def test_max_retry_after_is_a_breakers_key() -> None:
    raw = {"gateway": {"breakers": {"max_retry_after": 60}}, "backends": {"f": {"type": "fake"}},
           "models": {"m": {"backend": "f"}}}
    assert cfg.parse(raw, source="<t>", env={}).gateway.breakers.max_retry_after == 60
    raw["gateway"] = {"breakers": {"max_retry_after": 0}}
    with pytest.raises(cfg.ConfigError, match="max_retry_after"):
        cfg.parse(raw, source="<t>", env={})


def test_the_guard_blanks_every_configured_secret_out_of_an_error() -> None:
    raw = {
        "backends": {"a": {"type": "openai", "base_url": "https://a.example", "api_key": "env:A_KEY",
                           "proxy": "http://p:3128", "proxy_auth": "env:P_AUTH"}},
        "models": {"m": {"backend": "a"}},
    }
    conf = cfg.parse(raw, source="<t>", env={"A_KEY": KEY, "P_AUTH": "bob:proxy-password"})
    check = UpstreamGuard.from_config(conf)
    err = check(UpstreamServerError(f"bad key Bearer {KEY}; proxy said bob:proxy-password", backend="a"))
    assert err.message == f"bad key Bearer {REDACTED}; proxy said {REDACTED}"
    assert str(err) == err.message and KEY not in err.describe()


def test_proxy_credentials_from_the_environment_are_secrets_too() -> None:
    conf = cfg.parse({"backends": {"f": {"type": "fake"}}, "models": {"m": {"backend": "f"}}}, source="<t>", env={})
    redact = Redactor.from_config(conf, {"HTTPS_PROXY": "http://carol:corp-pass-77@proxy:3128"})
    assert redact("407 for carol:corp-pass-77 and corp-pass-77") == f"407 for {REDACTED} and {REDACTED}"
    assert redact.data(b'{"detail": "corp-pass-77"}') == b'{"detail": "' + REDACTED.encode() + b'"}'


def test_the_log_handler_is_the_last_guard() -> None:
    root = logging.getLogger()
    handler = BufferHandler()
    root.addHandler(handler)
    try:
        guard(Redactor([KEY]))
        logging.getLogger("polyroute.test").warning("upstream said %s", KEY)
        handler.line("polyroute.access", "INFO", f"chat route=x {KEY}")
    finally:
        guard(None)
        root.removeHandler(handler)
    texts = [r if isinstance(r, str) else r.getMessage() for r in handler.records]
    assert texts[0] == f"upstream said {REDACTED}"
    assert texts[1].endswith(f"chat route=x {REDACTED}")
    assert handler.redact is None  # guard(None) takes it off again
