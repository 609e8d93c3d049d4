"""``polyroute_request_outcomes_total{route, outcome}``: answered, failed and refused by the ledger's one rule.

An alert on failures must not fire on a client that misbehaves: a wrong key, a bad body and the key's own
rate limit are refused, every candidate failing is failed, and ``polyroute_requests_total`` keeps its series.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_metrics import samples, scrape, value
from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute, wait_until

ADMIN = "admin-outcomes-0123456789abcdef"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "ALICE_KEY": "sk-alice-outcomes-0123456789", "BOB_KEY": "sk-bob-outcomes-0123"}
OUTCOMES = "polyroute_request_outcomes_total"


def raw(db: Path) -> dict[str, object]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}, "dead": {"backend": "f", "upstream": "error-500"}},
        "routes": {"main": {"models": ["echo"]}, "gone": {"models": ["dead"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"alice": {"secret": "env:ALICE_KEY"}, "bob": {"secret": "env:BOB_KEY", "rpm": 1}},
    }


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(tmp_path / "store.db"), env=ENV) as g:
        yield g


def chat(live: Live, key: str, body: dict[str, object]) -> int:
    resp = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"})
    return resp.status_code


def ask(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "count me"}]}


def outcomes(live: Live) -> dict[tuple[str, str], float]:
    return {(dict(labels)["route"], dict(labels)["outcome"]): v
            for (name, labels), v in samples(scrape(live, ADMIN).text).items() if name == OUTCOMES}


def test_outcomes_tell_failures_from_the_clients_refusals(live: Live) -> None:
    before = outcomes(live)
    # Every route (a model is one too) is there before its first request, so that a rate over it starts at 0.
    names = ("main", "gone", "echo", "dead", "-")
    assert before == {(r, o): 0.0 for r in names for o in ("answered", "failed", "refused")}
    room_in_this_minute()
    assert chat(live, ENV["ALICE_KEY"], ask("main")) == 200
    assert chat(live, "sk-not-a-key-0123456789", ask("main")) == 401
    assert chat(live, ENV["ALICE_KEY"], {"model": "main", "messages": "not a list"}) == 400
    assert chat(live, ENV["ALICE_KEY"], ask("gone")) == 502  # every candidate failed
    assert chat(live, ENV["BOB_KEY"], ask("main")) == 200
    assert chat(live, ENV["BOB_KEY"], ask("main")) == 429  # bob's own rpm
    wait_until(lambda: sum(outcomes(live).values()) == 6, what="six requests counted")
    after = outcomes(live)
    assert after[("main", "answered")] == 2
    assert after[("gone", "failed")] == 1
    assert after[("main", "failed")] == 0 and after[("-", "failed")] == 0
    # The wrong key is refused before its route is known; the bad body and the limit after.
    assert sum(v for (_, o), v in after.items() if o == "refused") == 3
    assert after[("main", "refused")] >= 1
    s = samples(scrape(live, ADMIN).text)
    # The series dashboards read are as they were.
    assert value(s, "polyroute_requests_total", route="main", model="echo", status="200") == 2
    assert value(s, "polyroute_requests_total", route="gone", model="-", status="502") == 1


def test_a_client_that_leaves_is_refused_not_failed(live: Live) -> None:
    """A client that stops waiting chose to: it must not raise the operator's error rate."""
    body = {"model": "main", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    with httpx.stream("POST", f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV['ALICE_KEY']}"}) as resp:
        assert resp.status_code == 200
    wait_until(lambda: sum(outcomes(live).values()) == 1, what="the stream counted")
    after = outcomes(live)
    assert after[("main", "failed")] == 0
    assert after[("main", "answered")] + after[("main", "refused")] == 1
