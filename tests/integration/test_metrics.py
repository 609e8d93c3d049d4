"""``GET /metrics``: Prometheus' text format, counted at the finish seam, behind the admin key, no secret in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

ADMIN = "admin-metrics-0123456789abcdef"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "ALICE_KEY": "sk-alice-metrics-0123456789", "BOB_KEY": "sk-bob-metrics-0123456"}


def raw(db: Path, **extra: object) -> dict[str, object]:
    return {
        "gateway": {"breakers": {"failures": 1, "probe_interval": 600}},
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
                   "down": {"backend": "f", "upstream": "error-503"},
                   "dead": {"backend": "f", "upstream": "error-500"}},
        "routes": {"main": {"models": ["down", "echo"]}, "gone": {"models": ["dead"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "teams": {"red": {"budget_usd": 10.0}},
        "keys": {"alice": {"secret": "env:ALICE_KEY", "team": "red", "budget_usd": 1.0},
                 "bob": {"secret": "env:BOB_KEY"}},
        **extra,
    }


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(tmp_path / "store.db"), env=ENV) as g:
        yield g


def chat(live: Live, key: str, model: str = "main", stream: bool = False) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "count me"}]}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"})


def scrape(live: Live, key: str | None = ADMIN) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{live.root}/metrics", headers=headers, timeout=10)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(all_: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str) -> float:
    return all_[(metric, frozenset(labels.items()))]


def finished(live: Live, n: int) -> None:
    """Wait until the observers have seen ``n`` requests (the answer leaves before the seam is passed)."""
    def seen() -> bool:
        requests = [v for (name, _), v in samples(scrape(live).text).items() if name == "polyroute_requests_total"]
        return sum(requests) >= n
    wait_until(seen, what=f"{n} requests counted")


def test_metrics_count_requests_attempts_tokens_cost_and_times(live: Live) -> None:
    assert chat(live, ENV["ALICE_KEY"]).status_code == 200
    assert chat(live, ENV["BOB_KEY"], stream=True).status_code == 200
    assert chat(live, ENV["ALICE_KEY"], model="gone").status_code == 502
    finished(live, 3)
    resp = scrape(live)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "_created" not in resp.text  # one series per label set, not two
    s = samples(resp.text)
    assert value(s, "polyroute_requests_total", route="main", model="echo", status="200") == 2
    assert value(s, "polyroute_requests_total", route="gone", model="-", status="502") == 1
    # The first request failed over; the second found the breaker of "down" open (failures = 1) and skipped it.
    assert value(s, "polyroute_attempts_total", backend="f", model="down", outcome="server_error") == 1
    assert value(s, "polyroute_attempts_total", backend="f", model="echo", outcome="ok") == 2
    assert value(s, "polyroute_attempts_total", backend="f", model="dead", outcome="server_error") == 1
    tokens_in = value(s, "polyroute_tokens_total", route="main", model="echo", type="input")
    tokens_out = value(s, "polyroute_tokens_total", route="main", model="echo", type="output")
    assert tokens_in > 0 and tokens_out > 0
    cost = value(s, "polyroute_cost_usd_total", route="main", model="echo")
    assert cost == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)
    assert value(s, "polyroute_request_duration_seconds_count", route="main", model="echo") == 2
    assert value(s, "polyroute_request_duration_seconds_bucket", route="main", model="echo", le="+Inf") == 2
    assert value(s, "polyroute_time_to_first_token_seconds_count", route="main", model="echo") == 1  # the stream


def test_metrics_read_breakers_budgets_and_the_ledger_when_scraped(live: Live) -> None:
    assert chat(live, ENV["ALICE_KEY"]).status_code == 200
    finished(live, 1)
    s = samples(scrape(live).text)
    assert value(s, "polyroute_breaker_state", scope="model", name="down") == 2  # open
    assert value(s, "polyroute_breaker_state", scope="model", name="echo") == 0
    assert value(s, "polyroute_breaker_state", scope="backend", name="f") == 0
    spent = value(s, "polyroute_cost_usd_total", route="main", model="echo")
    assert value(s, "polyroute_budget_remaining_usd", scope="key", name="alice") == pytest.approx(1.0 - spent)
    assert value(s, "polyroute_budget_remaining_usd", scope="team", name="red") == pytest.approx(10.0 - spent)
    assert ("polyroute_budget_remaining_usd", frozenset({("scope", "key"), ("name", "bob")})) not in s  # no budget
    assert live.gateway.tenancy.ledger is not None and live.gateway.tenancy.ledger.flush()
    assert value(samples(scrape(live).text), "polyroute_ledger_queue_depth") == 0


def test_metrics_need_the_admin_key_and_show_no_secret(live: Live) -> None:
    unauthenticated = scrape(live, None)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["type"] == "authentication_error"
    assert "polyroute_" not in unauthenticated.text
    wrong = scrape(live, ENV["ALICE_KEY"])
    assert wrong.status_code == 403 and "polyroute_" not in wrong.text
    for key in (ENV["ALICE_KEY"], ENV["BOB_KEY"]):
        chat(live, key)
        chat(live, key, stream=True)
    chat(live, "sk-not-a-key-0123456789")
    finished(live, 5)
    text = scrape(live).text
    for secret in ENV.values():
        assert secret not in text
    assert "sk-" not in text


def test_a_model_no_one_configured_is_not_a_label(live: Live) -> None:
    assert chat(live, ENV["BOB_KEY"], model="made-up-model-name").status_code == 404
    finished(live, 1)
    text = scrape(live).text
    assert "made-up-model-name" not in text
    assert value(samples(text), "polyroute_requests_total", route="-", model="-", status="404") == 1


def test_public_metrics_need_no_key(tmp_path: Path) -> None:
    with live_gateway(raw(tmp_path / "store.db", metrics={"public": True}), env=ENV) as g:
        resp = scrape(g, None)
    assert resp.status_code == 200 and "# TYPE polyroute_requests_total counter" in resp.text


def test_without_an_admin_key_metrics_say_how_to_open_them() -> None:
    plain = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(plain) as g:
        resp = scrape(g, None)
        also = scrape(g, "anything")
    assert resp.status_code == 401 and also.status_code == 401
    message = resp.json()["error"]["message"]
    assert "[admin] secret" in message and "[metrics] public = true" in message


def test_an_unknown_metrics_setting_is_refused() -> None:
    from polyroute import config as cfg
    from polyroute.errors import ConfigError

    with pytest.raises(ConfigError, match="metrics"):
        cfg.parse({"metrics": {"publik": True}}, source="<test>", env={})
