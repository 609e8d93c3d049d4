"""Heads that never end are refused early, and a closed connection's memory comes back (issue 14, point 2).

httptools hands a header over only once it ends, so the head limit is enforced on
the bytes as they come. And a closed connection must let go of what it held
without waiting for the cycle collector, which ``polyroute serve`` runs rarely
(``tune_gc``: frozen start-up heap, raised young-generation threshold).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyroute.server import http11
from polyroute.server.app import GC_THRESHOLD
from tests.robustness.gateway_proc import Reader, error_of, gateway
from tests.support.http11_app import Probe, make_app
from tests.support.live import serve_app
from tests.support.wait import wait_until

HEAD_START = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-A: "
MEMORY_BOUND_KIB = 50 * 1024


def _endless_header(port: int, total: int) -> bytes:
    """Send a header value that never ends, up to ``total`` bytes; what the gateway answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEAD_START)
        piece = b"a" * 65536
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        reader = Reader(sock)
        answer = reader.answer()
        assert reader.at_eof()
    assert answer.status == 431
    assert error_of(answer)["code"] == "request_header_fields_too_large"
    return answer.body


def test_a_header_value_that_never_ends_is_refused_early(tmp_path: Path) -> None:
    with gateway(tmp_path) as gw:
        _endless_header(gw.port, 8 * 1024 * 1024)


def test_many_endless_headers_at_once_leave_memory_bounded(tmp_path: Path) -> None:
    """200 connections, each sending a header value of up to 4 MiB: the issue saw 1.7 GB for 200 x 8 MiB."""
    with gateway(tmp_path) as gw:
        before = gw.rss_kib()
        socks = []
        try:
            for _ in range(200):
                sock = gw.connect(timeout=5)
                sock.sendall(HEAD_START)
                socks.append(sock)
            piece = b"a" * 65536
            peak = 0
            for _ in range(64):  # 64 rounds of 64 KiB on every connection that still takes bytes
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.sendall(piece)
                peak = max(peak, gw.rss_kib() - before)
            refused = 0
            for sock in socks:
                with contextlib.suppress(OSError):
                    if Reader(sock).answer().status == 431:
                        refused += 1
            assert refused == len(socks)
            assert peak < MEMORY_BOUND_KIB, f"RSS grew by {peak} KiB"
            print(f"\nrobustness: 200 endless header values: 431 for each, peak RSS +{peak / 1024:.1f} MiB")
        finally:
            for sock in socks:
                sock.close()


@pytest.fixture
def gc_as_served() -> Iterator[None]:
    """The collector as `polyroute serve` leaves it (``tune_gc``), and none running during the test."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *threshold[1:])
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _connections() -> list[http11.Connection]:
    return [o for o in gc.get_objects() if type(o) is http11.Connection]


def test_closed_connections_are_freed_without_a_collection(gc_as_served: None) -> None:
    """Connections holding unfinished heads (the parser keeps the unfinished header) and the
    refused ones: once their clients close, every one is freed by reference counting alone."""
    with serve_app(make_app(Probe())) as root:
        port = int(root.rsplit(":", 1)[1])
        socks = []
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(HEAD_START + b"a" * (30_000 if i % 2 else 200_000))  # held, or refused with 431
            socks.append(sock)
        for path in ("/hello", "/three", "/slow"):  # and connections that were answered, streams included
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            Reader(sock).answer()
            socks.append(sock)
        wait_until(lambda: len(_connections()) >= len(socks), 20)
        refs = [weakref.ref(c) for c in _connections()]
        assert len(refs) == len(socks)
        for sock in socks:
            sock.close()
        # No gc.collect() anywhere: the collector is disabled, as a frozen heap with a high threshold
        # would leave these for a long time.
        wait_until(lambda: all(r() is None for r in refs), 20)


def test_the_collector_threshold_is_what_serve_sets() -> None:
    """The fixture above mirrors tune_gc; if tune_gc changes, so must the test."""
    from polyroute.server import app

    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        app.tune_gc()
        assert gc.get_threshold()[0] == GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_head_limit_holds_within_one_piece_of_bytes() -> None:
    """Fed a piece at a time, the parser never holds more than the limit of an unfinished head."""
    loop = asyncio.new_event_loop()
    try:
        shared = http11.Shared(make_app(Probe()), 1024, loop)
        conn = http11.Connection(shared)
        conn.transport = _Sink()  # type: ignore[assignment]
        conn.data_received(HEAD_START)
        for _ in range(8):
            conn.data_received(b"a" * 40_000)
            assert conn.head_bytes <= http11.MAX_HEAD_BYTES + 1
        assert conn.close_after  # refused: 431 queued, nothing more read
    finally:
        loop.close()


class _Sink:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
