"""``polyroute serve --workers 2``: whichever worker a scrape reaches, it counts every worker's requests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.server import workers
from tests.support.live import free_port
from tests.support.wait import wait_until

pytestmark = pytest.mark.skipif(not workers.BALANCED, reason="SO_REUSEPORT balancing is Linux's")

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
[metrics]
public = true
[backends.f]
type = "fake"
[models.echo]
backend = "f"
input_per_mtok = 1.0
"""
ASK = {"model": "echo", "messages": [{"role": "user", "content": "count me"}]}
REQUESTS = 32


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(port=port))
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(cfg), "--workers", "2", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=log, text=True,
        )
    try:
        wait_until(lambda: proc.poll() is not None or log_path.read_text().count(" serving (pid ") >= 2,
                   timeout=60, what="two workers serving")
        assert proc.poll() is None, log_path.read_text()
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def requests_counted(root: str) -> float:
    with httpx.Client(timeout=10) as fresh:  # a new connection: the kernel picks the worker
        text = fresh.get(f"{root}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "polyroute_requests_total")


def test_a_scrape_of_either_worker_counts_both(two_workers: tuple[str, Path]) -> None:
    root, _ = two_workers
    for _ in range(REQUESTS):
        with httpx.Client(timeout=10) as fresh:
            assert fresh.post(f"{root}/v1/chat/completions", json=ASK).status_code == 200
    wait_until(lambda: requests_counted(root) == REQUESTS, what=f"{REQUESTS} requests counted")
    # Sixteen scrapes over new connections reach both workers (all on one: p = 2 * 2**-16); each sees all.
    assert {requests_counted(root) for _ in range(16)} == {REQUESTS}
