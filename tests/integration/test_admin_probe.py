"""``POST /admin/probe`` against fake upstreams: a model out of service comes back at once once its cause is fixed.

``paid`` is a priced model on an OpenAI-wire upstream whose account first cannot pay (DeepSeek's documented 402),
then is topped up; ``spare`` (the fake backend) stands in for it meanwhile. ``locked`` is an upstream that refuses
its key and quotes it back, and stays so. Each probe is a request of the admin's in the usage ledger.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.support.live import Live, live_gateway
from tests.support.upstreams import OPENAI, FakeUpstream, load

ADMIN = "admin-probe-0123456789abcdef"
CLIENT = "sk-client-probe-0123456789abcdef"
PAID_KEY = "sk-paid-probe-4f1c9a7e2b6d8035c1e9"
LOCKED_KEY = "sk-locked-probe-9b7e1d3c5a2f4e6d8c0b"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "CLIENT_KEY": CLIENT, "PAID_KEY": PAID_KEY, "LOCKED_KEY": LOCKED_KEY}


class Account(FakeUpstream):
    """An OpenAI-wire provider whose account cannot pay until ``topped_up``; it answers every request alike."""

    def __init__(self) -> None:
        super().__init__(OPENAI)
        self.topped_up = False
        self.asked = 0

    async def _handle(self, request: Request) -> Response:
        await request.body()
        self.asked += 1
        if self.topped_up:
            return Response(_json(load("openai", "completion")), 200, media_type="application/json")
        broke = load("deepseek", "errors/402_insufficient_balance")
        return Response(_json(broke["body"]), broke["status"], media_type="application/json")


class Locked(FakeUpstream):
    """Refuses the key it was sent, quoting it back whole and masked, as OpenAI's 401 does."""

    def __init__(self) -> None:
        super().__init__(OPENAI)

    async def _handle(self, request: Request) -> Response:
        await request.body()
        body = {"error": {"message": f"Incorrect API key provided: {LOCKED_KEY} ({LOCKED_KEY[:8]}****"
                                     f"{LOCKED_KEY[-12:]}).", "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
        return Response(_json(body), 401, media_type="application/json")


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture
def ups() -> Iterator[tuple[Account, Locked]]:
    account, locked = Account(), Locked()
    account.start()
    locked.start()
    try:
        yield account, locked
    finally:
        account.stop()
        locked.stop()


@pytest.fixture
def live(ups: tuple[Account, Locked], tmp_path: Path) -> Iterator[Live]:
    account, locked = ups
    raw = {
        "gateway": {"breakers": {"failures": 1, "probe_interval": 600, "billing_cooldown": 3600}},
        "backends": {
            "acct": {"type": "openai", "base_url": f"{account.url}/v1", "api_key": "env:PAID_KEY",
                     "locality": "remote"},
            "lock": {"type": "openai", "base_url": f"{locked.url}/v1", "api_key": "env:LOCKED_KEY",
                     "locality": "remote"},
            "f": {"type": "fake"},
        },
        "models": {"paid": {"backend": "acct", "upstream": "gpt-4.1-mini", "input_per_mtok": 0.4,
                            "output_per_mtok": 1.6},
                   "locked": {"backend": "lock", "upstream": "gpt-4.1-mini"},
                   "spare": {"backend": "f", "upstream": "echo"}},
        "routes": {"chat": {"models": ["paid", "spare"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "keys": {"app": {"secret": "env:CLIENT_KEY"}},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}", "flush_interval": 0.05, "ledger_writer": "thread"},
    }
    with live_gateway(raw, env=ENV) as g:
        yield g


def probe(live: Live, body: object = None, key: str | None = ADMIN) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{live.root}/admin/probe", json=body if body is not None else {}, headers=headers,
                      timeout=30)


def chat(live: Live) -> httpx.Response:
    return httpx.post(f"{live.base_url}/chat/completions", timeout=30, headers={"authorization": f"Bearer {CLIENT}"},
                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


def health(live: Live) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{live.base_url}/health/backends", timeout=10,
                                    headers={"authorization": f"Bearer {ADMIN}"}).json()
    return doc


def test_a_probe_after_the_fix_brings_the_model_back_at_once(live: Live, ups: tuple[Account, Locked],
                                                             tmp_path: Path) -> None:
    account, _ = ups
    first = chat(live)
    assert first.status_code == 200 and first.json()["model"] == "spare"  # paid failed over
    assert health(live)["backends"]["acct"]["state"] == "open"  # billing: the whole account, for an hour
    asked = account.asked
    assert chat(live).json()["model"] == "spare" and account.asked == asked  # skipped, not asked

    account.topped_up = True
    fixed = probe(live, {"models": ["chat"]})  # a route stands for its models
    assert fixed.status_code == 200, fixed.text
    rows = {r["model"]: r for r in fixed.json()["data"]}
    assert list(rows) == ["paid", "spare"]
    paid = rows["paid"]
    assert (paid["result"], paid["message"], paid["hint"]) == ("ok", None, None)
    assert (paid["prompt_tokens"], paid["completion_tokens"]) == (12, 9)  # the fixture's usage
    assert paid["cost_usd"] == pytest.approx((12 * 0.4 + 9 * 1.6) / 1e6) and paid["latency_ms"] >= 0
    assert paid["breaker"] == {"model": "closed", "backend": "closed", "reason": None}
    assert health(live)["backends"]["acct"]["state"] == "closed"

    asked = account.asked
    assert chat(live).json()["model"] == "paid" and account.asked == asked + 1  # first again, at once

    # Each probe is in the ledger, the admin's, priced as a request is.
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(tmp_path / "store.db") as db:
        probes = db.execute("SELECT model, backend, key, status, cost_usd, tokens_in FROM usage "
                            "WHERE route = '(probe)' ORDER BY model").fetchall()
    assert [(m, b, k, s) for m, b, k, s, _, _ in probes] == [("paid", "acct", "(admin)", 200),
                                                            ("spare", "f", "(admin)", 200)]
    assert probes[0][4] == pytest.approx(paid["cost_usd"]) and probes[0][5] == 12


def test_a_model_that_still_fails_stays_out_with_the_reason_and_no_secret(live: Live, tmp_path: Path) -> None:
    resp = probe(live, {"models": ["locked"]})
    assert resp.status_code == 200
    [row] = resp.json()["data"]
    assert (row["result"], row["words"], row["upstream_status"]) == ("auth_error", "key refused", 401)
    assert "LOCKED_KEY" in row["hint"] and "backends.lock.api_key" in row["hint"]
    assert row["breaker"]["backend"] == "open" and row["breaker"]["reason"] == "auth_error"
    assert health(live)["backends"]["lock"]["reason"] == "auth_error"
    for text in (resp.text, httpx.get(f"{live.root}/admin/keys", headers={"authorization": f"Bearer {ADMIN}"}).text):
        assert LOCKED_KEY not in text and PAID_KEY not in text
        assert not any(LOCKED_KEY[i:i + 12] in text for i in range(8, len(LOCKED_KEY) - 11))
    assert probe(live, {"models": ["locked"]}).status_code == 429  # probed just now
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(tmp_path / "store.db") as db:
        [(model, key, status, error, attempts)] = db.execute(
            "SELECT model, key, status, error, attempts FROM usage WHERE route = '(probe)'").fetchall()
    assert (model, key, error) == (None, "(admin)", "invalid_api_key") and status >= 400  # the upstream's code
    assert '"outcome":"auth_error"' in attempts and LOCKED_KEY[8:20] not in attempts


def test_a_model_is_probed_at_most_once_every_few_seconds(live: Live, ups: tuple[Account, Locked]) -> None:
    account, _ = ups
    assert probe(live, {"models": ["spare"]}).status_code == 200
    asked = account.asked
    again = probe(live)  # every model: spare among them
    assert again.status_code == 429
    assert 1 <= int(again.headers["retry-after"]) <= 5
    error = again.json()["error"]
    assert "spare" in error["message"] and "at most once every 5s" in error["message"]
    assert account.asked == asked  # refused whole: nothing asked


def test_the_admin_key_is_needed_and_the_body_is_checked(live: Live) -> None:
    assert probe(live, key=None).status_code == 401
    assert probe(live, key=CLIENT).status_code == 403
    unknown = probe(live, {"models": ["pied"]})
    assert unknown.status_code == 400 and "no model or route named 'pied'" in unknown.json()["error"]["message"]
    typo = probe(live, {"model": ["paid"]})
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "model"
    wrong = httpx.get(f"{live.root}/admin/probe", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert wrong.status_code == 405

