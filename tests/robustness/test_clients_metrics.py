"""``polyroute_connections_closed_total{reason}`` and ``polyroute_connections_open`` on a real ``polyroute serve``.

Raw-socket clients make the gateway end their connections for each reason it counts (a head or body too
slow, too large, not HTTP, a coding it does not take, a wrong key before the body, a client that resets,
one that stops reading, one connection past the file limit), and the scrape shows each counted.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyroute.metrics import CLOSE_REASONS
from tests.robustness.gateway_proc import GatewayProc, Reader, get, limit_files, post, serving
from tests.support.live import free_port
from tests.support.wait import wait_until

ADMIN = "admin-conn-metrics-0123456789abcdef"
ALICE = "sk-alice-conn-metrics-0123456789"
CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
header_timeout = 1
body_timeout = 1
send_timeout = 1
max_body_bytes = 16777216
[admin]
secret = "env:ADMIN_KEY"
[keys.alice]
secret = "env:ALICE_KEY"
[backends.f]
type = "fake"
[models.echo]
backend = "f"
"""
CLOSED = "polyroute_connections_closed_total"
OPEN = "polyroute_connections_open"
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset


@contextlib.contextmanager
def started(tmp: Path, preexec: Callable[[], None] | None = None) -> Iterator[GatewayProc]:
    port = free_port()
    config = tmp / "gateway.toml"
    config.write_text(CONFIG.format(port=port))
    with serving(config, port, tmp / "gateway.log", env={"ADMIN_KEY": ADMIN, "ALICE_KEY": ALICE},
                 preexec=preexec) as gw:
        yield gw


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    with started(tmp_path_factory.mktemp("conn-metrics")) as proc:
        yield proc


def scrape_text(gw: GatewayProc) -> str:
    resp = httpx.get(f"http://127.0.0.1:{gw.port}/metrics", headers={"authorization": f"Bearer {ADMIN}"},
                     timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.text


def scraped(gw: GatewayProc) -> dict[str, float]:
    """The closes by reason, and the open connections under ``OPEN``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(scrape_text(gw)):
        for s in family.samples:
            if s.name == CLOSED:
                out[s.labels["reason"]] = s.value
            elif s.name == OPEN:
                out[OPEN] = s.value
    return out


def answer_to(gw: GatewayProc, data: bytes) -> int:
    """The status of the answer to ``data`` sent on a new connection, which is then left as it is."""
    with gw.connect() as sock:
        sock.sendall(data)
        return Reader(sock).answer().status


def reset_mid_head(gw: GatewayProc) -> None:
    sock = gw.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
    Reader(sock)  # nothing to read: the gateway waits for the rest of the head
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    sock.close()


def stop_reading(gw: GatewayProc) -> None:
    """Ask for an answer of about 10 MB, more than the kernel holds for us, and read none of it."""
    body = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "a" * 10_000_000}]})
    with gw.connect(rcvbuf=4096, timeout=60) as sock:
        sock.sendall(post("/v1/chat/completions", body, f"Authorization: Bearer {ALICE}\r\n"))
        cuts = gw.log().count("it has stopped reading")
        wait_until(lambda: gw.log().count("it has stopped reading") > cuts, 60, "the cut (send_timeout)")
        assert Reader(sock).at_eof()  # only now is it read: what was sent, then the reset


TRIGGERS: dict[str, Callable[[GatewayProc], object]] = {
    "header_timeout": lambda gw: answer_to(gw, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n") == 408,
    "body_timeout": lambda gw: answer_to(
        gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{") == 408,
    "body_too_large": lambda gw: answer_to(
        gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 20000000\r\n"
            b"Expect: 100-continue\r\n\r\n") == 413,
    "head_too_large": lambda gw: answer_to(gw, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000) == 431,
    "bad_request": lambda gw: answer_to(gw, b"HELLO THERE\r\n\r\n") == 400,
    "unsupported_coding": lambda gw: answer_to(
        gw, post("/v1/chat/completions", b"\x1f\x8b", "Content-Encoding: gzip\r\n")) == 415,
    "expect_refused": lambda gw: answer_to(
        gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-wrong-0123456789\r\n"
            b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n") == 401,
    "client_reset": reset_mid_head,
    "send_timeout": stop_reading,
}


@pytest.mark.parametrize("reason", sorted(TRIGGERS))
def test_each_reason_the_gateway_ends_a_connection_for_is_counted(gw: GatewayProc, reason: str) -> None:
    before = scraped(gw)
    assert set(CLOSE_REASONS) <= set(before)  # every reason is there at 0 before it happens once
    assert TRIGGERS[reason](gw) is not False
    wait_until(lambda: scraped(gw)[reason] == before[reason] + 1, what=f"{reason} counted")
    after = scraped(gw)
    others = {r: v for r, v in after.items() if r not in (reason, OPEN)}
    assert others == {r: before[r] for r in others}, "another reason was counted too"


def test_the_open_connections_are_shown(gw: GatewayProc) -> None:
    wait_until(lambda: scraped(gw)[OPEN] == 1, what="only the scrape's own connection open")
    socks = [gw.connect() for _ in range(3)]
    try:
        for sock in socks:  # each is served once, so the gateway has surely taken it
            sock.sendall(get("/healthz"))
            assert Reader(sock).answer().status == 200
        assert scraped(gw)[OPEN] == 4
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: scraped(gw)[OPEN] == 1, what="their closes seen")


def test_the_scrape_shows_no_secret(gw: GatewayProc) -> None:
    assert answer_to(gw, post("/v1/chat/completions", b'{"model": "echo", "messages": []}',
                              f"Authorization: Bearer {ALICE}\r\n")) == 400
    text = scrape_text(gw)
    assert ADMIN not in text and ALICE not in text and "sk-" not in text
    assert "sk-wrong" not in text


FILE_LIMIT = 48  # the gateway keeps max(8, (48 - 32) // 2) = 8 connections for clients


def test_a_connection_past_the_limit_is_counted(tmp_path: Path) -> None:
    with started(tmp_path, preexec=limit_files(FILE_LIMIT)) as gw:
        kept = [gw.connect() for _ in range(8)]
        past: list[socket.socket] = []
        try:
            for sock in kept:  # each served once: the gateway holds all eight
                sock.sendall(get("/healthz"))
                assert Reader(sock).answer().status == 200
            past = [gw.connect() for _ in range(3)]
            for sock in past:
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""  # closed at once
        finally:
            for sock in kept + past:
                sock.close()
        wait_until(lambda: scraped(gw)["connection_limit"] == 3, what="the three refused connections counted")
