"""Clients that do not read their answers cannot grow the gateway's memory (issue 14, point 1).

A connection pipelines requests and never reads: the gateway must stop answering
(and reading) while the connection's write buffer is full, so the client ends up
blocked in ``send`` and the gateway's memory stays put. Other clients are served
meanwhile.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.robustness.gateway_proc import GatewayProc, Reader, ask, gateway, get

MEMORY_BOUND_KIB = 50 * 1024
OTHER_CLIENT_BOUND_S = 2.0  # generous: a shared 2-core machine; unbounded growth takes far longer
BATCH = 1000  # requests per sendall
BATCHES = 300  # at most: 300,000 requests, tens of MB of requests and hundreds of MB of answers


def _flood(gw: GatewayProc, path: str) -> tuple[socket.socket, int, bool]:
    """Pipeline requests on a socket with a small receive buffer, never reading.

    Returns the socket, how many batches were sent whole, and whether the gateway stopped
    taking them (a send that waited 2 s without the gateway reading)."""
    sock = gw.connect(rcvbuf=4096, timeout=2.0)
    batch = get(path) * BATCH
    sent = 0
    deadline = time.monotonic() + 30
    blocked = False
    while sent < BATCHES and time.monotonic() < deadline:
        try:
            sock.sendall(batch)
        except TimeoutError:
            blocked = True
            break
        sent += 1
    return sock, sent, blocked


@pytest.mark.parametrize("path", ["/v1/models", "/v1/health/backends"])
def test_pipelining_without_reading_leaves_memory_bounded(tmp_path: Path, path: str) -> None:
    with gateway(tmp_path) as gw:
        ask(gw, get(path))  # the answer's path warmed up
        before = gw.rss_kib()
        sock, sent, blocked = _flood(gw, path)
        try:
            assert blocked, f"the gateway read {sent * BATCH} pipelined requests without their answers being read"
            grown = gw.rss_kib() - before
            answer, took = ask(gw, get("/v1/models"))
            assert answer.status == 200
            assert took < OTHER_CLIENT_BOUND_S, f"another client waited {took:.2f}s"
            assert grown < MEMORY_BOUND_KIB, f"RSS grew by {grown} KiB"
            print(f"\nrobustness: non-reading client on {path}: {sent * BATCH} requests taken, "
                  f"RSS +{grown / 1024:.1f} MiB, other client {took * 1000:.0f} ms")
        finally:
            sock.close()
        # The stuck connection is gone; the gateway serves as before.
        assert ask(gw, get(path))[0].status == 200


def test_a_client_that_reads_late_gets_every_answer_in_order(tmp_path: Path) -> None:
    """Backpressure pauses the answers; it loses none: a reader that finally reads gets them all."""
    count = 3000
    with gateway(tmp_path) as gw, gw.connect(rcvbuf=4096, timeout=30.0) as sock:
        sock.sendall(get("/healthz") * count)
        reader = Reader(sock)
        statuses = [reader.answer().status for _ in range(count)]
        assert statuses == [200] * count
