"""Probe now, from the console's Fleet page: in Debian's Chromium, and over HTTP for its CSRF guard.

The gateway (in this process, on localhost) routes ``chat`` to ``paid`` first, on an
OpenAI-wire upstream whose account cannot pay until the test tops it up, then to ``spare``.
A request fails over and opens ``paid``'s backend. On Fleet the operator clicks Probe: the
button says it is asking (the upstream holds the probe until the test has seen that), and the
classified error comes back inline with what to do. The account is topped up, the button is
ready again once the probe spacing has passed, and a second click shows ok with its latency and
the breaker closed. Probe all then asks every model. The page is checked at phone width too, and screenshot
into ``test-artifacts/console/`` (or ``$POLYROUTE_TEST_ARTIFACTS/console``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.console.test_console_browser import CHROMIUM, LAPTOP, PHONE, ROOT, UI_TIMEOUT_MS, Watch, playwright_api
from tests.integration.test_admin_probe import CLIENT, ENV, Account
from tests.support.live import Live, live_gateway

ADMIN = ENV["POLYROUTE_ADMIN_KEY"]
HOLD_TIMEOUT = 60.0  # bounds a failure only


class HeldAccount(Account):
    """``Account``, but a request waits while ``held`` is set, until ``release``; ``arrived`` says one came."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def _handle(self, request: Request) -> Response:
        if self.held:
            self.arrived.set()
            await _wait(self.release)
        return await super()._handle(request)


async def _wait(event: threading.Event) -> None:
    await asyncio.to_thread(event.wait, HOLD_TIMEOUT)


@pytest.fixture
def artifacts() -> Path:
    out = Path(os.environ.get("POLYROUTE_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def account() -> Iterator[HeldAccount]:
    up = HeldAccount()
    up.start()
    try:
        yield up
    finally:
        up.release.set()
        up.stop()


@pytest.fixture
def live(account: HeldAccount, tmp_path: Path) -> Iterator[Live]:
    raw = {
        "gateway": {"breakers": {"failures": 1, "probe_interval": 600, "billing_cooldown": 3600}},
        "backends": {"acct": {"type": "openai", "base_url": f"{account.url}/v1", "api_key": "env:PAID_KEY",
                              "locality": "remote"},
                     "f": {"type": "fake"}},
        "models": {"paid": {"backend": "acct", "upstream": "gpt-4.1-mini", "input_per_mtok": 0.4,
                            "output_per_mtok": 1.6},
                   "spare": {"backend": "f", "upstream": "echo"}},
        "routes": {"chat": {"models": ["paid", "spare"]}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "keys": {"app": {"secret": "env:CLIENT_KEY"}},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}", "flush_interval": 0.05, "ledger_writer": "thread"},
        "evals": {"db": str(tmp_path / "evals.db")},
    }
    with live_gateway(raw, env=ENV) as g:
        yield g


def fail_over(live: Live) -> None:
    answer = httpx.post(f"{live.base_url}/chat/completions", headers={"authorization": f"Bearer {CLIENT}"},
                        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert answer.status_code == 200 and answer.json()["model"] == "spare"


def test_probe_now_from_the_fleet_page(live: Live, account: HeldAccount, artifacts: Path) -> None:
    assert playwright_api is not None, "playwright is not installed: pip install -e '.[test]'"
    expect = playwright_api.expect
    expect.set_options(timeout=UI_TIMEOUT_MS)
    fail_over(live)
    watch = Watch()
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport=LAPTOP).new_page()
            watch.attach(page)
            page.goto(f"{live.root}/console/login?next=%2Fconsole%2Ffleet")
            page.fill("#secret", ADMIN)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live.root}/console/fleet")
            paid = page.locator("#fleet tr[data-model=paid]")
            expect(paid.locator(".breaker")).to_contain_text("open")
            expect(paid.locator(".badge").first).to_have_text("failing")

            # -- the account still cannot pay: the probe says so, and what to do ------------------------
            account.held = True
            button = paid.locator("td.probe button")
            button.click()
            expect(button).to_have_text("Probing…")
            expect(button).to_be_disabled()
            assert account.arrived.wait(HOLD_TIMEOUT)
            account.held = False
            account.release.set()
            result = paid.locator("td.probe .result")
            expect(result.locator(".badge")).to_have_text("account cannot pay")
            expect(result).to_contain_text("Insufficient Balance")
            expect(result.locator(".hint")).to_contain_text("top up the account behind backends.acct")
            expect(paid.locator(".breaker")).to_contain_text("open")
            page.screenshot(path=artifacts / "fleet-probe-failed-1280x800.png", full_page=True)

            # -- topped up: once the spacing has passed, probe again: ok, and the breaker closed ---------
            account.topped_up = True
            expect(button).to_have_text("Probe")
            expect(button).to_be_enabled()
            button.click()
            expect(result.locator(".badge")).to_have_text("ok")
            expect(result).to_contain_text(" ms")
            expect(result).to_contain_text("12+9 tokens")
            expect(paid.locator(".breaker")).to_have_text("closed")
            expect(paid.locator(".badge").first).to_have_text("healthy")

            # -- probe all: every model asked, each result in its row ----------------------------------
            every = page.locator("#probe-all")
            expect(every).to_be_enabled()
            every.click()
            for name in ("paid", "spare"):
                expect(page.locator(f"#fleet tr[data-model={name}] td.probe .result .badge")).to_have_text("ok")
            expect(every).to_have_text("Probe all")
            page.screenshot(path=artifacts / "fleet-probe-all-1280x800.png", full_page=True)

            # -- on a phone: the results wrap within the screen ------------------------------------------
            page.set_viewport_size(PHONE)
            expect(page.locator("#fleet tr[data-model=paid] td.probe .result")).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], width
            page.screenshot(path=artifacts / "fleet-probe-390x844.png", full_page=True)
        finally:
            browser.close()
    assert not watch.problems, "\n".join(watch.problems)
    assert httpx.post(f"{live.base_url}/chat/completions", headers={"authorization": f"Bearer {CLIENT}"}, timeout=30,
                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).json()["model"] == "paid"


def test_a_probe_from_the_console_needs_the_sessions_csrf_token(live: Live, account: HeldAccount) -> None:
    with httpx.Client(base_url=live.root, timeout=30) as c:
        csrf = c.post("/console/api/login", json={"secret": ADMIN}).json()["csrf"]
        for headers in ({}, {"x-csrf-token": "not-the-token"}):
            refused = c.post("/console/api/probe", json={"models": ["paid"]}, headers=headers)
            assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
        assert account.asked == 0  # nothing was sent
        done = c.post("/console/api/probe", json={"models": ["paid"]}, headers={"x-csrf-token": csrf})
        assert done.status_code == 200 and done.json()["data"][0]["result"] == "billing"
        assert account.asked == 1 and done.json()["spacing_s"] == 5
