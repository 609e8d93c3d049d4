"""A web page's script calls the gateway from another origin, in a real Chromium: CORS as a browser enforces it."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import free_port, live_gateway

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install -y chromium)")

KEY = "sk-page-0123456789abcdef"
# The page's script: a whole answer and a stream, read as a web app reads them (its key in Authorization).
CALL = """async ([url, key]) => {
  const ask = (stream) => fetch(url + "/chat/completions", {method: "POST",
    headers: {"authorization": "Bearer " + key, "content-type": "application/json"},
    body: JSON.stringify({model: "echo", stream, messages: [{role: "user", content: "hello page"}]})});
  try {
    const whole = await ask(false);
    const body = await whole.json();
    const streamed = await (await ask(true)).text();
    return {content: body.choices[0].message.content, model: whole.headers.get("x-polyroute-model"),
            streamed: streamed.includes("[DONE]")};
  } catch (e) { return {blocked: String(e)}; }
}"""


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """A page served from its own origin (another port), as a web app's dev server would serve it."""
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def config(origins: list[str]) -> dict[str, Any]:
    return {"gateway": {"cors_origins": origins}, "backends": {"f": {"type": "fake"}},
            "models": {"echo": {"backend": "f"}}, "keys": {"page": {"secret": "env:PAGE_KEY"}}}


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "not-allowed"])
def test_a_page_reads_answers_only_from_a_gateway_that_allows_its_origin(page_origin: str, allowed: bool) -> None:
    from playwright.sync_api import sync_playwright

    origins = [page_origin] if allowed else ["https://elsewhere.test"]
    with live_gateway(config(origins), env={"PAGE_KEY": KEY}) as g, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(page_origin + "/index.html")
            got = page.evaluate(CALL, [g.base_url, KEY])
        finally:
            browser.close()
    if allowed:
        assert got == {"content": "You said: hello page", "model": "echo", "streamed": True}
    else:
        assert "Failed to fetch" in got["blocked"]  # the browser's own refusal: the page reads nothing
