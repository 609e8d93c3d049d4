"""The headers that tell a refused client when to come back: whole seconds, and the wait itself in ms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyroute.adapters import openai_compat
from polyroute.adapters.http import error_from_status
from polyroute.errors import (
    AllAttemptsFailed,
    RateLimitExceeded,
    UpstreamRateLimited,
    UpstreamServerError,
    retry_headers,
)


@pytest.mark.parametrize(("seconds", "after", "ms"), [
    (59.2, "60", "59200"),  # rounded up in seconds; in ms below the minute the Vercel AI SDK honours
    (60, "60", "60000"),
    (0.25, "1", "250"),
    (0.0, "1", "1"),  # never "0": a client told 0 may retry at once, into the same refusal
    (-3.0, "1", "1"),
])
def test_retry_headers(seconds: float, after: str, ms: str) -> None:
    assert retry_headers(seconds) == {"retry-after": after, "retry-after-ms": ms}


def test_a_rate_limit_refusal_carries_both_beside_its_limits() -> None:
    err = RateLimitExceeded("slow down", retry_after=12.5)
    err.limits = {"x-ratelimit-remaining-requests": "0"}
    assert err.headers() == {"x-ratelimit-remaining-requests": "0", "retry-after": "13", "retry-after-ms": "12500"}


def test_an_upstream_wait_passed_on_is_what_is_left_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("polyroute.errors.time.monotonic", lambda: clock[0])
    early = UpstreamRateLimited("429", retry_after=5.0, backend="a", model="m")
    clock[0] += 2.0  # another candidate was tried meanwhile
    late = UpstreamRateLimited("429", retry_after=4.0, backend="b", model="n")
    clock[0] += 0.5
    failed = AllAttemptsFailed("all failed", attempts=[], errors=[early, late])
    assert failed.status == 429 and failed.retry_after == pytest.approx(2.5)  # 5 s said 2.5 s ago
    assert failed.headers() == {"retry-after": "3", "retry-after-ms": "2500"}


@pytest.mark.parametrize(("status", "headers", "wait"), [
    (503, {"retry-after": "20"}, 20.0),  # still loading: out for as long as it said
    (503, {}, None),
    (500, {"retry-after": "20"}, None),  # only an unavailable server's wait is a promise of when to come back
])
def test_a_503_that_says_when_keeps_its_wait(status: int, headers: dict[str, str], wait: float | None) -> None:
    doc = json.loads((Path(__file__).parent.parent / "fixtures" / "llamacpp" / "errors" / "503_loading_model.json")
                     .read_text())
    err = error_from_status(status, json.dumps(doc["body"]).encode(), headers, openai_compat.read_error,
                            backend="local", model="m")
    assert isinstance(err, UpstreamServerError) and err.retry_after == wait
