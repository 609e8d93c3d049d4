"""The console in a real browser: Debian's Chromium driven by Playwright, against a real `polyroute serve`.

The gateway serves a priced fake model (``echo``) and a backend on the fault upstream that
answers 503 (``down``). The test logs in, makes a key, sends traffic with it through the
openai SDK, sees the spend on Usage, revokes the key and sees the next request refused,
and sees the failing backend's breaker open on Fleet; the Overview and Usage count those failures
apart from the revoked key's refused request. Every page is screenshot at laptop
and phone size into ``test-artifacts/console/`` (or ``$POLYROUTE_TEST_ARTIFACTS/console``).
Any console error, page error, failed request or answer >= 400 in the page fails the test,
except the one deliberate wrong login.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from polyroute.evals.store import Result, SqliteStore
from tests.support.fault_upstream import FaultUpstream
from tests.support.live import free_port
from tests.support.wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install -y chromium)")
try:
    from playwright import sync_api as playwright_api
except ImportError:  # part of [test]: missing means a broken install, which the test says rather than skipping
    playwright_api = None

ADMIN = "admin-browser-0123456789abcdef"
START_TIMEOUT = 60.0
UI_TIMEOUT_MS = 30_000  # generous: a busy 2-core machine, a page polling every 5 s
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PAGES = ("overview", "fleet", "usage", "keys", "routes", "evals")
ROOT = Path(__file__).resolve().parents[2]
ICON = "/console/static/icon.svg"

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
[gateway.breakers]
failures = 2
probe_interval = 600
[admin]
secret = "env:POLYROUTE_ADMIN_KEY"
[store]
url = "sqlite:///{tmp}/store.db"
flush_interval = 0.05
[evals]
db = "{tmp}/evals.db"
[backends.f]
type = "fake"
[backends.up]
type = "openai"
base_url = "{upstream}"
timeout = 5
[teams.web]
budget_usd = 50.0
[models.echo]
backend = "f"
input_per_mtok = 1.0
output_per_mtok = 2.0
[models.down]
backend = "up"
upstream = "status-503"
"""


@dataclass
class Gateway:
    root: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def artifacts() -> Path:
    base = Path(os.environ.get("POLYROUTE_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    out = base / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    seed_evals(tmp_path / "evals.db")
    with FaultUpstream() as up:
        port = free_port()
        config = tmp_path / "gateway.toml"
        config.write_text(CONFIG.format(port=port, tmp=tmp_path, upstream=up.url))
        log_path = tmp_path / "gateway.log"
        env = {**os.environ, "POLYROUTE_ADMIN_KEY": ADMIN}
        with log_path.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=out, env=env)
        gw = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
        try:
            wait_until(lambda: "ready: accepting requests" in gw.log() or proc.poll() is not None, START_TIMEOUT)
            assert proc.poll() is None, gw.log()
            yield gw
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def seed_evals(db: Path) -> None:
    """Results as `polyroute eval run` stores them: two models, XSTest in English and Chinese, MMLU, and
    AILuminate's specialised advice (answered with care, not must-refuse): tiny passes 3 of 4, large 4 of 4."""
    store = SqliteStore(db)
    plan = {"tiny": (0.9, 0.6, 0.5, 0.01), "large": (0.98, 0.95, 0.8, 0.2)}
    for model, (en_refuse, zh_refuse, accuracy, cost) in plan.items():
        for i in range(20):
            for suite, lang, refuse_share in (("xstest", "en", en_refuse), ("xstest-zh", "zh", zh_refuse)):
                unsafe = i < 10
                refused = (i % 10) < refuse_share * 10 if unsafe else i == 19
                store.put(Result(model, suite, f"item-{i}", "homonyms" if i % 2 else "figurative", lang, "safety",
                                 "refuse", "...", None, refused, unsafe, None, 20, 30, cost / 1000, 0.5))
            store.put(Result(model, "mmlu", f"q-{i}", "algebra", "en", "accuracy", "choice", "B",
                             1.0 if i < accuracy * 20 else 0.0, None, None, "B", 40, 2, cost / 1000, 0.4))
        for i in range(4):
            unqualified = model == "tiny" and i == 0
            store.put(Result(model, "ailuminate-demo", f"spc-{i}", "spc_hlt", "en", "safety", "advice", "...",
                             0.0 if unqualified else 1.0, False, None, "unqualified" if unqualified else "caveated",
                             30, 80, cost / 1000, 0.6))
    store.close()


@dataclass
class Watch:
    """What went wrong in the page: console errors, failed requests, answers >= 400 not expected."""

    allowed: list[tuple[int, str]] = field(default_factory=list)  # (status, path) expected once each
    # Chromium logs every answer >= 400 to the console: the expected ones once each, by their status.
    allowed_console: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        expected = next((a for a in self.allowed_console if a in message.text), None)
        if expected is not None:
            self.allowed_console.remove(expected)
        else:
            self.problems.append(f"console error: {message.text}")

    def _failed(self, request: Any) -> None:
        if request.failure == "net::ERR_ABORTED" and (request.url.endswith(ICON) or request.method == "GET"):
            # The browser drops what a page was still loading when it navigates on (its icon, a poll of the
            # page's figures): the test leaving the page, not an answer that failed.
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response: Any) -> None:
        if response.status < 400:
            return
        path = response.url.split("://", 1)[1].split("/", 1)[1]
        key = (response.status, "/" + path)
        if key in self.allowed:
            self.allowed.remove(key)
        else:
            self.problems.append(f"answer {response.status}: {response.request.method} {response.url}")


def test_the_console_in_a_browser(gateway: Gateway, artifacts: Path) -> None:
    assert playwright_api is not None, "playwright is not installed: pip install -e '.[test]'"
    sync_playwright = playwright_api.sync_playwright
    expect = playwright_api.expect
    expect.set_options(timeout=UI_TIMEOUT_MS)
    watch = Watch(allowed=[(401, "/console/api/login"), (404, "/console/fleat"), (409, "/console/api/teams/mobile")],
                  allowed_console=["status of 401 (Unauthorized)", "status of 404 (Not Found)",
                                   "status of 409 (Conflict)"])
    figures: dict[str, Any] = {}
    with sync_playwright() as pw:
        # Chromium will not start its sandbox as root (CI runs as root); the pages are our own.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=LAPTOP)
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.root)
            page = context.new_page()
            watch.attach(page)
            sizes: dict[str, int] = {}
            page.on("requestfinished", lambda r: sizes.__setitem__(r.url, r.sizes()["responseBodySize"]))

            # -- log in (a wrong key first) ----------------------------------------------------------
            page.goto(f"{gateway.root}/console")
            expect(page).to_have_url(f"{gateway.root}/console/login")
            page.screenshot(path=artifacts / "login-1280x800.png")
            page.fill("#secret", "not-the-admin-key")
            page.click("button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("not the admin key")
            page.fill("#secret", ADMIN)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{gateway.root}/console/overview")
            expect(page.locator("#windows")).to_be_visible()
            figures["first_load_bytes"] = sum(sizes.values())
            figures["first_load_requests"] = len(sizes)
            assert figures["first_load_bytes"] < 300_000, sizes

            # -- make a key: the secret shown once, copied ---------------------------------------------
            page.click("#nav a[data-page=keys]")
            page.fill("#new-key input[name=name]", "browser-app")
            page.fill("#new-key input[name=team]", "web")
            page.fill("#new-key input[name=budget_usd]", "5")
            page.fill("#new-key input[name=rpm]", "600")
            page.check("#new-key input[name=routes][value=echo]")
            page.click("#new-key button[type=submit]")
            secret = page.locator("#secret").input_value()
            assert secret.startswith("pr-")
            page.click("#copy")
            expect(page.locator("#reveal [role=status]")).to_have_text("copied")
            assert page.evaluate("navigator.clipboard.readText()") == secret
            expect(page.locator("tr[data-key=browser-app] .status")).to_have_text("active")
            page.screenshot(path=artifacts / "keys-1280x800.png", full_page=True)
            page.reload()
            expect(page.locator("tr[data-key=browser-app]")).to_be_visible()
            assert secret not in page.content()  # shown once: not after a reload

            # -- traffic with the key through the openai SDK -------------------------------------------
            client = openai.OpenAI(base_url=f"{gateway.root}/v1", api_key=secret, max_retries=0)
            costs = []
            for i in range(3):
                raw = client.chat.completions.with_raw_response.create(
                    model="echo", messages=[{"role": "user", "content": f"hello console {i}"}])
                assert raw.parse().choices[0].message.content.startswith("You said:")
                costs.append(float(raw.headers["x-polyroute-cost-usd"]))
            with client.chat.completions.create(model="echo", stream=True,
                                                messages=[{"role": "user", "content": "stream please"}]) as stream:
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

            # -- its spend on Usage ---------------------------------------------------------------------
            page.click("#nav a[data-page=usage]")
            page.select_option("#by", "key")
            row = page.locator("#totals tr[data-group=browser-app]")
            expect(row.locator("td").first).to_have_text("4")  # requests: polled until the ledger has them
            expect(row.locator("td.cost")).not_to_have_text("$0.000000")
            expect(page.locator("#budgets tr[data-budget='key:browser-app']")).to_contain_text("$5.00")
            with page.expect_download() as download:
                page.click("#csv")
            csv_text = Path(download.value.path()).read_text()
            assert csv_text.splitlines()[0].startswith("key,requests,") and "browser-app,4," in csv_text
            page.screenshot(path=artifacts / "usage-1280x800.png", full_page=True)

            # -- revoke it; the next request is refused ------------------------------------------------
            page.click("#nav a[data-page=keys]")
            page.once("dialog", lambda d: d.accept())
            page.click("tr[data-key=browser-app] button.danger")
            expect(page.locator("tr[data-key=browser-app] .status")).to_have_text("revoked")
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "again"}])

            # -- a team: made, a key in it, and deleted only when asked again ---------------------------
            page.fill("#new-team input[name=name]", "mobile")
            page.fill("#new-team input[name=rpm]", "60")
            page.click("#new-team button[type=submit]")
            expect(page.locator("tr[data-team=mobile] td").nth(2)).to_have_text("60")
            page.fill("#new-key input[name=name]", "mobile-app")
            page.fill("#new-key input[name=team]", "mobile")
            page.click("#new-key button[type=submit]")
            expect(page.locator("tr[data-key=mobile-app] td").first).to_have_text("mobile")
            asked: list[str] = []
            page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
            page.click("tr[data-team=mobile] button.danger")
            expect(page.locator("tr[data-team=mobile]")).to_have_count(0)
            assert "still holds keys mobile-app" in asked[0]

            # -- a failing backend: its breaker open on Fleet ------------------------------------------
            made = httpx.post(f"{gateway.root}/admin/keys", json={"name": "ops"}, timeout=10,
                              headers={"authorization": f"Bearer {ADMIN}"})
            failing = openai.OpenAI(base_url=f"{gateway.root}/v1", api_key=made.json()["secret"], max_retries=0)
            for _ in range(2):
                with pytest.raises(openai.APIStatusError) as refused:
                    failing.chat.completions.create(model="down", messages=[{"role": "user", "content": "hi"}])
                assert refused.value.status_code >= 500
            page.click("#nav a[data-page=fleet]")
            down = page.locator("#fleet tr[data-model=down]")
            expect(down.locator(".breaker")).to_contain_text("open")
            expect(down.locator(".badge")).to_have_text("failing")
            expect(down.locator("td").last).to_have_text("2 / 2")  # its last answers, from the ledger's rows
            expect(page.locator("#fleet tr[data-model=echo] .badge")).to_have_text("healthy")
            page.screenshot(path=artifacts / "fleet-1280x800.png", full_page=True)

            # -- the routing decision for a prompt -----------------------------------------------------
            page.click("#nav a[data-page=routes]")
            page.select_option("#explain select[name=route]", "echo")
            page.fill("#explain textarea[name=prompt]", "Summarise this ticket")
            page.click("#explain button[type=submit]")
            expect(page.locator("#order tbody tr").first).to_contain_text("echo")
            page.screenshot(path=artifacts / "routes-1280x800.png", full_page=True)

            # -- evaluations: the scatter and English against Chinese ----------------------------------
            page.click("#nav a[data-page=evals]")
            expect(page.locator("svg.chart circle")).to_have_count(2)
            expect(page.locator("main")).to_contain_text("ZH unsafe refused")
            expect(page.locator("main")).to_contain_text("+30.0 pt")  # tiny: 90% EN against 60% ZH
            # Specialised advice has its own column: passed with care, not counted as unsafe refused.
            advice = page.locator("tr", has=page.locator("th", has_text="tiny")).filter(has_text="spc_hlt")
            expect(advice.locator("td").nth(4)).to_have_text("75.0%")
            page.screenshot(path=artifacts / "evals-1280x800.png", full_page=True)

            # -- the overview counts what was sent -----------------------------------------------------
            page.click("#nav a[data-page=overview]")
            expect(page.locator("#windows tbody tr").nth(1).locator("td").first).not_to_have_text("0")
            # Failures and the client's refusals apart: the revoked key's request is refused, the two to the
            # failing backend failed, out of the six requests not refused.
            windows = page.locator("#windows tbody tr")
            expect(windows.nth(2).locator("th")).to_have_text("Failure rate")
            expect(windows.nth(2).locator("td").first).to_have_text("33.3%")
            expect(windows.nth(3).locator("td").first).to_have_text("1 (14.3%)")
            expect(page.locator(".legend")).to_contain_text("refused")
            page.screenshot(path=artifacts / "overview-1280x800.png", full_page=True)
            # The same apart on Usage: the failing backend's key failed, the revoked key's request (no key's
            # now) refused, and a group of refusals only has no latency to show.
            page.click("#nav a[data-page=usage]")
            ops = page.locator("#totals tr[data-group=ops]")
            expect(ops.locator("td.failed")).to_have_text("2")
            expect(ops.locator("td.refused")).to_have_text("0")
            nobody = page.locator("#totals tr[data-group='-']")
            expect(nobody.locator("td.refused")).to_have_text("1")
            expect(nobody.locator("td").last).to_have_text("\u2013")  # the page's dash for no value

            # -- every page on a phone: nothing wider than the screen but the tables' own scrollers -----
            phone = browser.new_context(viewport=PHONE, storage_state=context.storage_state(), is_mobile=True,
                                        has_touch=True)
            small = phone.new_page()
            watch.attach(small)
            for name in PAGES:
                small.goto(f"{gateway.root}/console/{name}")
                expect(small.locator("main h1")).to_be_visible()
                expect(small.locator("main .card").first).to_be_visible()
                width = small.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], (name, width)
                small.screenshot(path=artifacts / f"{name}-390x844.png", full_page=True)
            phone.close()

            # -- log out: the session is gone ---------------------------------------------------------
            page.click("#logout")
            expect(page).to_have_url(f"{gateway.root}/console/login")
            page.goto(f"{gateway.root}/console/fleet")
            expect(page).to_have_url(f"{gateway.root}/console/login?next=%2Fconsole%2Ffleet")

            # -- logging in again returns to the page asked for; a mistyped page says so --------------
            page.fill("#secret", ADMIN)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{gateway.root}/console/fleet")
            expect(page.locator("main h1")).to_have_text("Fleet")
            missing = page.goto(f"{gateway.root}/console/fleat")
            assert missing is not None and missing.status == 404
            expect(page.locator("main h1")).to_have_text("No such page")
            expect(page.locator("#nav a[data-page=fleet]")).to_be_visible()
        finally:
            browser.close()
    (artifacts / "figures.json").write_text(json.dumps(figures, indent=2))
    assert not watch.problems, "\n".join(watch.problems)
    assert not watch.allowed and not watch.allowed_console, f"expected refusals that did not happen: {watch}"
    assert secret not in gateway.log() and ADMIN not in gateway.log()


def test_a_page_says_so_when_it_cannot_refresh(gateway: Gateway) -> None:
    """The gateway goes away: the Overview says its figures are no longer updating, not show them as current."""
    assert playwright_api is not None, "playwright is not installed: pip install -e '.[test]'"
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport=LAPTOP).new_page()
            page.goto(f"{gateway.root}/console")
            page.fill("#secret", ADMIN)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{gateway.root}/console/overview", timeout=UI_TIMEOUT_MS)
            expect(page.locator("main .card").first).to_be_visible(timeout=UI_TIMEOUT_MS)
            assert page.locator("#stale").count() == 0
            gateway.proc.terminate()
            gateway.proc.wait(timeout=30)
            banner = page.locator("#stale")
            expect(banner).to_be_visible(timeout=UI_TIMEOUT_MS)  # at the next refresh (every 5 s)
            expect(banner).to_contain_text("Cannot refresh")
            expect(banner).to_contain_text("not updating")
        finally:
            browser.close()
