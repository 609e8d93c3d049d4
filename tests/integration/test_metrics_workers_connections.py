"""``polyroute serve --workers 2``: the connection closes and the request outcomes of every worker, in any scrape."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_metrics_workers import ASK, pytestmark, two_workers
from tests.robustness.gateway_proc import Reader
from tests.support.wait import wait_until

__all__ = ["pytestmark", "two_workers"]  # the fixture and the skip, as test_metrics_workers has them
BAD = 16
ANSWERED = 8


def counted(root: str) -> tuple[float, float, float]:
    """bad_request closes, answered requests, open connections, from one scrape on a new connection."""
    with httpx.Client(timeout=10) as fresh:  # a new connection: the kernel picks the worker
        text = fresh.get(f"{root}/metrics").text
    bad = answered = opened = -1.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "polyroute_connections_closed_total" and s.labels["reason"] == "bad_request":
                bad = s.value
            elif s.name == "polyroute_request_outcomes_total" and s.labels == {"route": "echo", "outcome": "answered"}:
                answered = s.value
            elif s.name == "polyroute_connections_open":
                opened = s.value
    return bad, answered, opened


def test_a_scrape_of_either_worker_counts_both_workers_closes_and_outcomes(two_workers: tuple[str, Path]) -> None:
    root, _ = two_workers
    port = int(root.rsplit(":", 1)[1])
    for _ in range(BAD):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"HELLO THERE\r\n\r\n")
            assert Reader(sock).answer().status == 400
    for _ in range(ANSWERED):
        with httpx.Client(timeout=10) as fresh:
            assert fresh.post(f"{root}/v1/chat/completions", json=ASK).status_code == 200
    wait_until(lambda: counted(root)[:2] == (BAD, ANSWERED), what="every close and answer counted")
    # Sixteen scrapes over new connections reach both workers (all on one: p = 2 * 2**-16); each sees all.
    scrapes = [counted(root) for _ in range(16)]
    assert {s[:2] for s in scrapes} == {(BAD, ANSWERED)}
    assert all(s[2] >= 1 for s in scrapes)  # the answering worker's open connections, its scrape's among them
