"""Clients that stop reading are cut after ``gateway.send_timeout``; clients that read slowly are not.

A client that opens a stream and never reads used to keep its connection, and the stream's
upstream connection and generation, for ever. Now, once bytes wait for it and it has taken
none of them for ``send_timeout`` (3 s here), the gateway resets the connection: the upstream
sees its connection closed, and the request ends as one whose client left (``client_closed``),
billed for what the upstream sent. A client that reads a little at a time keeps its stream,
however long that takes, and so does every other client meanwhile. A real ``polyroute serve``
process with raw sockets as clients; the fast upstream is ``HostileUpstream``'s ``flood``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.robustness.gateway_proc import Reader, ask, chat, gateway
from tests.robustness.hostile_upstream import HostileUpstream
from tests.robustness.test_upstreams_hostile import Gateway, serving
from tests.support.clients import gateway_lines
from tests.support.live import free_port
from tests.support.wait import wait_until

SEND_TIMEOUT = 3
CUT_WITHIN_S = 60.0  # bounds a failure only: a passing test waits a few seconds
STOPPED_READING = "it has stopped reading"
# Endless for these tests: a client reading as slowly as the slow one below never reaches its end.
CUT_MODEL, SLOW_MODEL = "flood-2000001", "flood-2000002"


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("send-timeout")
    port = free_port()
    config = "\n".join([
        "[gateway]", f'listen = "127.0.0.1:{port}"', f"send_timeout = {SEND_TIMEOUT}", *gateway_lines(),
        "[store]", f'url = "sqlite:///{tmp / "ledger.db"}"', "flush_interval = 0.05",
        "[backends.fast]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.cut]", 'backend = "fast"', f'upstream = "{CUT_MODEL}"',
        "[models.slow]", 'backend = "fast"', f'upstream = "{SLOW_MODEL}"',
    ]) + "\n"
    with serving(tmp, port, config, {"UP_KEY": "sk-up-send-timeout"}) as gateway:
        yield gateway


def _stream_request(model: str) -> bytes:
    return chat({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})


def _connect(gw: Gateway, rcvbuf: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(CUT_WITHIN_S)
    sock.connect(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
    return sock


def _ledger(db: Path, model: str) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage WHERE route = ?", (model,))]


def test_a_stream_whose_client_stops_reading_is_cut_and_its_upstream_stopped(
    gw: Gateway, up: HostileUpstream
) -> None:
    with _connect(gw, rcvbuf=4096) as sock, httpx.Client(base_url=gw.url, timeout=30) as other:
        sock.sendall(_stream_request("cut"))
        sent_at = time.monotonic()
        wait_until(lambda: any(h.model == CUT_MODEL for h in up.hits), CUT_WITHIN_S, "the upstream asked")
        served = 0
        # Another client is served while the stuck stream waits for its cut.
        while CUT_MODEL not in up.hangups:
            assert other.get("/healthz").status_code == 200
            served += 1
            assert served < CUT_WITHIN_S * 100, "the upstream's connection was never closed"
            time.sleep(0.01)
        cut_after = time.monotonic() - sent_at
        log = gw.logged(STOPPED_READING)
        # Only now does the client read: what was sent, then the reset (or the end).
        assert Reader(sock).at_eof()
    line = next(ln for ln in log.splitlines() if STOPPED_READING in ln)
    assert "send_timeout" in line and "127.0.0.1:" in line, line
    access = gw.logged("route=cut ")
    entry = next(ln for ln in access.splitlines() if "route=cut " in ln)
    # Its head had gone: 200, with the code of a client that left (nginx's 499 is for one gone before it).
    assert " status=200 " in entry and entry.endswith("error=client_closed"), entry
    db = gw.log.parent / "ledger.db"
    wait_until(lambda: _ledger(db, "cut"), CUT_WITHIN_S, "the ledger row")
    [row] = _ledger(db, "cut")
    assert (row["status"], row["error"], row["stream"]) == (200, "client_closed", 1)
    assert row["tokens_out"] > 0  # what the upstream generated before it was stopped is billed
    print(f"\nrobustness: a stream not read (send_timeout {SEND_TIMEOUT} s): its upstream closed {cut_after:.1f} s "
          f"after the request; another client served {served} times meanwhile; "
          f"upstream sent {up.sent.get(CUT_MODEL, 0) / 2**20:.1f} MiB")


def test_a_client_that_reads_slowly_is_never_cut(gw: Gateway, up: HostileUpstream) -> None:
    """4 KiB every half second, far below what the upstream sends, for three times send_timeout.

    TCP moves a reader's bytes in pieces of up to half its receive window: with the 4 KiB buffer
    asked for here, each read lets the kernel take more from the gateway at once. (A reader with a
    window of megabytes that reads this slowly shows progress only every few seconds: well within
    the default ``send_timeout`` of 60 s, not within 3.)"""
    with _connect(gw, rcvbuf=4096) as sock:
        sock.sendall(_stream_request("slow"))
        reader = Reader(sock)
        status, _ = reader.head()
        assert status == 200
        got = 0
        started = time.monotonic()
        while time.monotonic() - started < 3 * SEND_TIMEOUT:
            data = sock.recv(4096)
            assert data, f"the gateway closed a client that read {got} bytes in {time.monotonic() - started:.1f}s"
            got += len(data)
            time.sleep(0.5)
        assert SLOW_MODEL not in up.hangups
        port = sock.getsockname()[1]
    print(f"\nrobustness: a client reading {got} bytes over {3 * SEND_TIMEOUT} s kept its stream "
          f"(send_timeout {SEND_TIMEOUT} s)")
    assert f"127.0.0.1:{port}: {STOPPED_READING}" not in gw.log.read_text()


def test_a_whole_answer_to_a_client_that_never_reads_is_cut(tmp_path: Path) -> None:
    """A non-streamed answer far larger than the sockets' buffers: once it is written, nobody takes it."""
    words = " ".join("w" * 200_000 for _ in range(40))  # echoed back: about 8 MB of answer
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": words}]}).encode()
    keys = f"send_timeout = {SEND_TIMEOUT}\nmax_body_bytes = {16 * 2**20}\n"
    with gateway(tmp_path, keys) as gw, gw.connect(rcvbuf=4096, timeout=CUT_WITHIN_S) as sock:
        sock.sendall(chat(body))
        wait_until(lambda: STOPPED_READING in gw.log(), CUT_WITHIN_S, "the connection cut")
        assert Reader(sock).at_eof()
        assert ask(gw, chat({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))[0].status == 200
