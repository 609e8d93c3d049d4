"""``GET /admin/usage``: the rows of ``polyroute usage`` over HTTP, behind the admin key.

``GET /v1/usage`` shows a key its own usage only; the access log names keys, never their secrets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from polyroute.cli import main
from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

ADMIN = "admin-usage-0123456789abcdef"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "ALICE_KEY": "sk-alice-usage-0123456789", "BOB_KEY": "sk-bob-usage-0123456789",
       "CAROL_KEY": "sk-carol-usage-0123456789"}


def raw(db: Path) -> dict[str, object]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
                   "down": {"backend": "f", "upstream": "error-503"}},
        "routes": {"main": {"models": ["down", "echo"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "teams": {"red": {"budget_usd": 10.0}, "blue": {"budget_usd": 20.0}},
        "keys": {"alice": {"secret": "env:ALICE_KEY", "team": "red", "budget_usd": 1.0},
                 "bob": {"secret": "env:BOB_KEY", "team": "blue", "budget_usd": 2.0},
                 "carol": {"secret": "env:CAROL_KEY", "team": "red"}},  # held by her team's budget only
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "usage.db"


@pytest.fixture
def live(db: Path) -> Iterator[Live]:
    with live_gateway(raw(db), env=ENV) as g:
        for key, n in ((ENV["ALICE_KEY"], 2), (ENV["BOB_KEY"], 1)):
            for _ in range(n):
                body = {"model": "main", "messages": [{"role": "user", "content": "count me"}]}
                resp = httpx.post(f"{g.base_url}/chat/completions", json=body, timeout=10,
                                  headers={"authorization": f"Bearer {key}"})
                assert resp.status_code == 200
        assert g.gateway.tenancy.ledger is not None and g.gateway.tenancy.ledger.flush()
        yield g


def usage(live: Live, query: str, key: str | None = ADMIN) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{live.root}/admin/usage{query}", headers=headers, timeout=10)


@pytest.mark.parametrize("by", ["key", "team", "model", "route", "day"])
def test_admin_usage_serves_the_rows_polyroute_usage_prints(
    live: Live, db: Path, by: str, capsys: pytest.CaptureFixture[str]
) -> None:
    resp = usage(live, f"?by={by}&since=7d&format=json")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert doc["object"] == "list" and doc["by"] == by
    assert main(["usage", "--store", f"sqlite:///{db}", "--by", by, "--since", "7d", "--format", "json"]) == 0
    assert doc["data"] == json.loads(capsys.readouterr().out)
    if by == "key":
        rows = {r["group"]: r for r in doc["data"]}
        assert (rows["alice"]["requests"], rows["bob"]["requests"]) == (2, 1)
        assert rows["alice"]["cost_usd"] > 0 and rows["alice"]["tokens_in"] > 0


def test_admin_usage_as_csv_is_what_the_cli_writes(live: Live, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    resp = usage(live, "?by=team&format=csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert main(["usage", "--store", f"sqlite:///{db}", "--by", "team", "--format", "csv"]) == 0
    assert resp.text == capsys.readouterr().out
    assert resp.text.splitlines()[0] == "group,requests,tokens_in,tokens_out,cost_usd,errors,refused,p50_ms,p95_ms"
    assert [line.split(",")[0] for line in resp.text.splitlines()[1:]] == ["blue", "red"]


def test_admin_usage_defaults_and_a_percent_encoded_date(live: Live) -> None:
    default = usage(live, "")
    assert default.status_code == 200 and default.json()["by"] == "key"
    assert {r["group"] for r in default.json()["data"]} == {"alice", "bob"}
    future = usage(live, "?since=2999-01-01T00%3A00%3A00%2B00%3A00")
    assert future.status_code == 200 and future.json()["data"] == []
    assert future.json()["since"] == "2999-01-01T00:00:00Z"


@pytest.mark.parametrize(("query", "param"), [
    ("?by=colour", "by"), ("?format=xml", "format"), ("?since=yesterday-ish", "since"), ("?bye=key", "bye"),
])
def test_admin_usage_refuses_bad_parameters_in_the_openai_shape(live: Live, query: str, param: str) -> None:
    resp = usage(live, query)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_admin_usage_needs_the_admin_key(live: Live) -> None:
    assert usage(live, "?by=key", key=None).status_code == 401
    refused = usage(live, "?by=key", key=ENV["ALICE_KEY"])
    assert refused.status_code == 403 and "alice" not in refused.text
    assert httpx.post(f"{live.root}/admin/usage", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 405


def test_v1_usage_shows_a_key_nothing_of_another(live: Live) -> None:
    for me, other, my_team, other_team in (("alice", "bob", "red", "blue"), ("bob", "alice", "blue", "red")):
        resp = httpx.get(f"{live.base_url}/usage", timeout=10,
                         headers={"authorization": f"Bearer {ENV[me.upper() + '_KEY']}"})
        doc = resp.json()
        assert resp.status_code == 200 and doc["key"] == me and doc["team"] == my_team
        assert doc["usage"]["group"] == me and doc["usage"]["requests"] == (2 if me == "alice" else 1)
        assert doc["budget"]["key"]["name"] == me and doc["budget"]["team"]["name"] == my_team
        assert doc["budget"]["key"]["remaining_usd"] < doc["budget"]["key"]["budget_usd"]
        assert other not in resp.text and other_team not in resp.text
        assert ENV[other.upper() + "_KEY"] not in resp.text and ENV[me.upper() + "_KEY"] not in resp.text


def test_v1_usage_counts_from_the_budget_period_that_binds_the_key(live: Live) -> None:
    """A key with no budget of its own is bound by its team's: its usage is counted from that period's start
    (the month, the default), as for a key with its own budget, not over the last 30 days."""
    from datetime import UTC, datetime

    start = datetime.now(UTC).strftime("%Y-%m-01T00:00:00Z")
    for key in ("CAROL_KEY", "ALICE_KEY"):
        doc = httpx.get(f"{live.base_url}/usage", timeout=10, headers={"authorization": f"Bearer {ENV[key]}"}).json()
        assert doc["since"] == start, doc
    carol = httpx.get(f"{live.base_url}/usage", timeout=10, headers={"authorization": f"Bearer {ENV['CAROL_KEY']}"})
    assert carol.json()["budget"]["team"]["name"] == "red" and "key" not in carol.json()["budget"]


def test_the_access_log_names_the_key_and_team_never_the_secret(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "polyroute.access"):
        body = {"model": "main", "messages": [{"role": "user", "content": "log me"}]}
        ok = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                        headers={"authorization": f"Bearer {ENV['ALICE_KEY']}"})
        wrong = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                           headers={"authorization": "Bearer sk-wrong-secret-0123456789"})
        assert ok.status_code == 200 and wrong.status_code == 401
        wait_until(lambda: len([r for r in caplog.records if r.name == "polyroute.access"]) >= 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "polyroute.access"]
    mine = next(line for line in lines if ok.headers["x-polyroute-request-id"] in line)
    assert "key=alice" in mine and "team=red" in mine and "status=200" in mine
    refused = next(line for line in lines if wrong.headers["x-polyroute-request-id"] in line)
    assert "key=-" in refused and "status=401" in refused
    for line in lines:
        assert ENV["ALICE_KEY"] not in line and "sk-wrong-secret" not in line and ADMIN not in line
