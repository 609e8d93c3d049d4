"""The usage ledger: one row per request in SQLite, written in batches, flushed on SIGTERM; reports over it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from polyroute.cli import main
from tests.support.live import Live, free_port, live_gateway
from tests.support.wait import wait_until

ENV = {"ALICE_KEY": "sk-alice-0123456789abcdef", "BOB_KEY": "sk-bob-0123456789abcdef"}


def raw(db: Path, flush_interval: float = 0.05) -> dict[str, object]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
                   "down": {"backend": "f", "upstream": "error-503"}},
        "routes": {"main": {"models": ["down", "echo"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": flush_interval},
        "teams": {"red": {"budget_usd": 10.0}},
        "keys": {"alice": {"secret": "env:ALICE_KEY", "team": "red", "budget_usd": 1.0},
                 "bob": {"secret": "env:BOB_KEY"}},
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def live(db: Path) -> Iterator[Live]:
    with live_gateway(raw(db), env=ENV) as g:
        yield g


def chat(base: str, key: str, model: str = "main", stream: bool = False) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "count me"}]}
    return httpx.post(f"{base}/chat/completions", json=body, timeout=10, headers={"authorization": f"Bearer {key}"})


def rows(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY at")]


def test_every_request_is_one_row_with_what_happened(live: Live, db: Path) -> None:
    answers = [chat(live.base_url, ENV["ALICE_KEY"]), chat(live.base_url, ENV["BOB_KEY"], stream=True),
               chat(live.base_url, ENV["BOB_KEY"], model="nope"), chat(live.base_url, "sk-wrong")]
    assert [a.status_code for a in answers] == [200, 200, 404, 401]
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    got = rows(db)
    assert len(got) == 4 and len({r["request_id"] for r in got}) == 4
    # The client reads the id the ledger keeps, the gateway's own, on answers and refusals alike.
    assert {a.headers["x-polyroute-request-id"] for a in answers} == {r["request_id"] for r in got}
    alice = next(r for r in got if r["key"] == "alice")
    assert (alice["team"], alice["route"], alice["model"], alice["backend"], alice["status"]) == (
        "red", "main", "echo", "f", 200)
    assert [a["outcome"] for a in json.loads(str(alice["attempts"]))] == ["server_error", "ok"]
    assert alice["tokens_in"] > 0 and alice["tokens_out"] > 0
    assert alice["cost_usd"] == pytest.approx(float(answers[0].headers["x-polyroute-cost-usd"]))
    bob_stream = next(r for r in got if r["key"] == "bob" and r["stream"])
    assert bob_stream["ttft_ms"] is not None and bob_stream["ttft_ms"] <= bob_stream["latency_ms"]
    assert {(r["key"], r["status"]) for r in got if r["status"] >= 400} == {("bob", 404), (None, 401)}
    for key in ENV.values():
        assert key not in json.dumps(got)


def test_v1_usage_shows_a_key_its_own_usage_and_budget_only(live: Live) -> None:
    for _ in range(2):
        assert chat(live.base_url, ENV["ALICE_KEY"]).status_code == 200
    assert chat(live.base_url, ENV["BOB_KEY"]).status_code == 200
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    mine = httpx.get(f"{live.base_url}/usage", headers={"authorization": f"Bearer {ENV['ALICE_KEY']}"}).json()
    assert mine["key"] == "alice" and mine["usage"]["requests"] == 2 and mine["usage"]["group"] == "alice"
    budget = mine["budget"]["key"]
    assert budget["budget_usd"] == 1.0 and budget["budget_period"] == "month" and budget["resets_at"]
    assert budget["spent_usd"] == pytest.approx(mine["usage"]["cost_usd"])
    assert mine["budget"]["team"]["name"] == "red"
    bob = httpx.get(f"{live.base_url}/usage", headers={"authorization": f"Bearer {ENV['BOB_KEY']}"}).json()
    assert bob["usage"]["requests"] == 1 and "alice" not in json.dumps(bob)
    assert httpx.get(f"{live.base_url}/usage").status_code == 401


def test_polyroute_usage_reports_by_group(
    live: Live, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("ALICE_KEY", "ALICE_KEY", "BOB_KEY"):
        assert chat(live.base_url, ENV[key]).status_code == 200
    assert chat(live.base_url, ENV["BOB_KEY"], model="down").status_code == 502
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    store = f"sqlite:///{db}"
    assert main(["usage", "--store", store, "--by", "key", "--since", "1h", "--format", "json"]) == 0
    report = {r["group"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(report) == {"alice", "bob"}
    assert (report["alice"]["requests"], report["alice"]["errors"]) == (2, 0)
    assert (report["bob"]["requests"], report["bob"]["errors"]) == (2, 1)
    assert set(report["alice"]) == {"group", "requests", "tokens_in", "tokens_out", "cost_usd", "errors",
                                    "refused", "p50_ms", "p95_ms"}
    assert report["alice"]["p50_ms"] <= report["alice"]["p95_ms"]
    assert main(["usage", "--store", store, "--by", "model", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "group,requests,tokens_in,tokens_out,cost_usd,errors,refused,p50_ms,p95_ms"
    assert {line.split(",")[0] for line in lines[1:]} == {"echo", "-"}
    assert main(["usage", "--store", store, "--by", "team"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[0] == "team" and "red" in table
    assert main(["usage", "--store", store, "--since", "yesterday-ish"]) == 2


def test_sigterm_writes_every_queued_row_before_the_process_ends(tmp_path: Path, db: Path) -> None:
    port = free_port()
    cfg = tmp_path / "gw.toml"
    # Rows would wait a minute for their batch: only the shutdown can have written them.
    cfg.write_text(f"""
[gateway]
listen = "127.0.0.1:{port}"
[backends.f]
type = "fake"
[models.echo]
backend = "f"
[store]
url = "sqlite:///{db}"
flush_interval = 60
batch_size = 1000
[keys.alice]
secret = "env:ALICE_KEY"
""")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=out, env={**os.environ, **ENV})
    try:
        wait_until(lambda: "ready: accepting requests" in log.read_text() or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()
        for _ in range(25):
            assert chat(f"http://127.0.0.1:{port}/v1", ENV["ALICE_KEY"], model="echo").status_code == 200
        assert rows(db) == []  # still queued
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    got = rows(db)
    assert len(got) == 25 and {r["key"] for r in got} == {"alice"}
    assert ENV["ALICE_KEY"] not in log.read_text()


def test_a_budget_spent_before_a_restart_stays_spent(db: Path) -> None:
    conf = raw(db)
    conf["models"] = {"echo": {"backend": "f", "input_per_mtok": 1000.0, "output_per_mtok": 2000.0}}
    conf["routes"] = {}
    conf["keys"] = {"alice": {"secret": "env:ALICE_KEY", "budget_usd": 0.01, "budget_period": "total"}}
    with live_gateway(conf, env=ENV) as first:
        assert chat(first.base_url, ENV["ALICE_KEY"], model="echo").status_code == 200
    # The shutdown wrote the row; the next gateway counts it against the budget at start.
    with live_gateway(conf, env=ENV) as second:
        refused = chat(second.base_url, ENV["ALICE_KEY"], model="echo")
        assert refused.status_code == 402 and "does not reset" in refused.json()["error"]["message"]


def test_without_keys_budgets_or_store_there_is_no_gatekeeper_and_no_ledger() -> None:
    plain = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(plain) as g:
        assert g.gateway.gatekeeper is None and g.gateway.tenancy.ledger is None
        assert g.gateway.tenancy.store is None
        assert len(g.gateway.observers) == 3  # the router's statistics, the access log and the metrics
        assert chat(g.base_url, "unused", model="echo").status_code == 200


def test_concurrent_requests_cannot_all_pass_the_same_spend_check(db: Path) -> None:
    """40 requests at once against a budget that covers about 5: admission reserves each one's worst case
    atomically, so the spend ends near the budget, and the ledger's total is the sum of the costs answered."""
    import asyncio

    conf = raw(db)
    conf["models"] = {"echo": {"backend": "f", "upstream": "slow-300+echo",
                               "input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}
    conf["routes"] = {}
    conf["keys"] = {"alice": {"secret": "env:ALICE_KEY", "budget_usd": 0.05, "budget_period": "total"}}
    body = {"model": "echo", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}

    async def burst(base: str) -> list[httpx.Response]:
        h = {"authorization": f"Bearer {ENV['ALICE_KEY']}"}
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=40)) as client:
            return list(await asyncio.gather(*(
                client.post(f"{base}/chat/completions", json=body, headers=h) for _ in range(40))))

    with live_gateway(conf, env=ENV) as g:
        answers = asyncio.run(burst(g.base_url))
        ledger = g.gateway.tenancy.ledger
        assert ledger is not None and ledger.flush()
    ok = [a for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} == {200, 402}
    costs = [float(a.headers["x-polyroute-cost-usd"]) for a in ok]
    # Every admitted request was below the budget when it was admitted: at most one worst case over it.
    # It stops short by at most one request and one prompt: a request whose prompt alone costs more than
    # what the others' reservations left is refused (a prompt is billed whatever the answer).
    assert sum(costs) + 2 * max(costs) >= 0.05 and sum(costs) <= 0.05 + 2 * max(costs)
    assert len(ok) < 20
    got = rows(db)
    assert sum(float(str(r["cost_usd"])) for r in got if r["status"] == 200) == pytest.approx(sum(costs))
    assert len(got) == 40
