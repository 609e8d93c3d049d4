"""A client that leaves before its stream's first token: logged and kept in the ledger as 499, not 200.

A stream's status is 200 once its head has gone out, however it ends then (a client that leaves mid-stream
keeps 200, with the code ``client_closed``). A client gone before the head got nothing: nginx's 499.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

ENV = {"EARLY_KEY": "sk-early-0123456789abcdef"}
FIRST_TOKEN_MS = 600  # the client leaves well before it


def raw(db: Path) -> dict[str, Any]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"slow": {"backend": "f", "upstream": f"slow-{FIRST_TOKEN_MS}+text-a-b-c-d-e"},
                   "gappy": {"backend": "f", "upstream": "gap-200+text-a-b-c-d-e-f-g-h-i-j"}},
        "routes": {"main": {"models": ["slow"]}, "gaps": {"models": ["gappy"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"early": {"secret": "env:EARLY_KEY"}},
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def live(db: Path) -> Iterator[Live]:
    with live_gateway(raw(db), env=ENV) as g:
        yield g


def _request(route: str) -> bytes:
    body = json.dumps({"model": route, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ENV['EARLY_KEY']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _port(live: Live) -> int:
    return int(live.base_url.rsplit(":", 1)[1].split("/")[0])


def _row(live: Live, db: Path, route: str) -> dict[str, Any]:
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None
    wait_until(lambda: ledger.flush() and _rows(db, route), what="the ledger row")
    [row] = _rows(db, route)
    return row


def _rows(db: Path, route: str) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage WHERE route = ?", (route,))]


def _access_line(caplog: pytest.LogCaptureFixture, route: str) -> str:
    wait_until(lambda: any(f"route={route} " in r.getMessage() for r in caplog.records), what="the access log line")
    return next(r.getMessage() for r in caplog.records if f"route={route} " in r.getMessage())


@pytest.mark.parametrize("how", ["close", "half-close"])
def test_a_client_gone_before_the_first_token_is_499(
    live: Live, db: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.access")
    with socket.create_connection(("127.0.0.1", _port(live)), timeout=10) as sock:
        sock.sendall(_request("main"))
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)  # stops sending: for a stream not begun, gone as for one begun
            assert sock.recv(65536) == b""  # and nothing of the stream is sent to it
    line = _access_line(caplog, "main")
    assert " status=499 " in line and line.endswith("error=client_closed"), line
    row = _row(live, db, "main")
    assert (row["status"], row["error"], row["stream"], row["ttft_ms"]) == (499, "client_closed", 1, None)
    assert row["tokens_in"] > 0  # the upstream was asked, and bills it: so does the ledger


def test_a_client_gone_mid_stream_keeps_200_with_client_closed(
    live: Live, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polyroute.access")
    body = {"model": "gaps", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {ENV['EARLY_KEY']}"}
    with httpx.stream("POST", f"{live.base_url}/chat/completions", json=body, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        next(line for line in r.iter_lines() if '"content"' in line)
    line = _access_line(caplog, "gaps")
    assert " status=200 " in line and line.endswith("error=client_closed"), line
    row = _row(live, db, "gaps")
    assert (row["status"], row["error"]) == (200, "client_closed") and row["ttft_ms"] is not None
