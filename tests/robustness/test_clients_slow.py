"""Slow heads and bodies meet a deadline; past the file limit the gateway goes on (issue 14, point 3).

A head trickled a byte at a time (slowloris) used to reset the idle timer at each
byte and hold its connection for ever. Now the whole head must arrive within
``gateway.header_timeout`` and the body within ``gateway.body_timeout``; the
request is answered 408 in OpenAI's shape, then the connection closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from polyroute import config as cfg
from tests.robustness.gateway_proc import Reader, ask, error_of, gateway, get, limit_files, post
from tests.support.wait import wait_until

TIMEOUTS = "header_timeout = 1\nbody_timeout = 1\n"
CLOSED_WITHIN_S = 15.0  # the socket timeout while waiting for the close: generous, not the measure


def _trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, a byte every 100 ms, until told to stop or the peer is gone."""
    for byte in data:
        if stop.wait(0.1):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def _trickled(port: int, opening: bytes, rest: bytes) -> tuple[int, dict[str, object], float]:
    """Send ``opening`` at once, trickle ``rest``: the status, error and seconds until the gateway closed."""
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSED_WITHIN_S) as sock:
        started = time.monotonic()
        sock.sendall(opening)
        sender = threading.Thread(target=_trickle, args=(sock, rest, stop), daemon=True)
        sender.start()
        try:
            reader = Reader(sock)
            answer = reader.answer()
            assert reader.at_eof()
            closed_after = time.monotonic() - started
        finally:
            stop.set()
            sender.join(5)
    return answer.status, error_of(answer), closed_after


def test_a_head_trickled_byte_by_byte_is_answered_408_at_the_deadline(tmp_path: Path) -> None:
    with gateway(tmp_path, TIMEOUTS) as gw:
        status, error, took = _trickled(gw.port, b"GET /v1/models HTTP/1.1\r\n", b"X-Slow: " + b"a" * 10_000)
        assert status == 408
        assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
        assert "headers" in str(error["message"])
        assert took < 10, f"closed after {took:.1f}s; the trickle would have lasted 1000 s"
        print(f"\nrobustness: slowloris head closed after {took:.2f}s (header_timeout 1 s)")
        assert ask(gw, get("/v1/models"))[0].status == 200


def test_a_body_trickled_byte_by_byte_is_answered_408_at_the_deadline(tmp_path: Path) -> None:
    with gateway(tmp_path, TIMEOUTS) as gw:
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000\r\n\r\n"
        status, error, took = _trickled(gw.port, head, b"x" * 5000)
        assert status == 408
        assert error["code"] == "request_timeout" and "body" in str(error["message"])
        assert took < 10, f"closed after {took:.1f}s"


def test_a_connection_that_opens_a_request_and_goes_silent_is_closed(tmp_path: Path) -> None:
    """Not trickled: a partial head, then nothing (the connection is not idle between requests)."""
    with gateway(tmp_path, "header_timeout = 1\n") as gw, gw.connect(timeout=CLOSED_WITHIN_S) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost")
        reader = Reader(sock)
        assert reader.answer().status == 408
        assert reader.at_eof()


def test_a_body_that_stops_part_way_is_answered_408_even_past_the_keep_alive(tmp_path: Path) -> None:
    """The idle sweep closes connections idle between requests after 5 s (keep-alive); one part-way through a
    body is held to body_timeout (here 7 s) and told why, not cut at 5 s without a word."""
    with gateway(tmp_path, "body_timeout = 7\n") as gw, gw.connect(timeout=CLOSED_WITHIN_S) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 83\r\n\r\n" + b"{" * 40)
        reader = Reader(sock)
        answer = reader.answer()
        assert answer.status == 408 and "body did not arrive within 7 s" in str(error_of(answer)["message"])
        assert reader.at_eof()


def test_timeouts_are_config_keys_with_defaults() -> None:
    gw = cfg.parse({}, source="<test>", env={}).gateway
    assert (gw.header_timeout, gw.body_timeout, gw.send_timeout, gw.shutdown_grace) == (10.0, 60.0, 60.0, 10.0)
    parsed = cfg.parse({"gateway": {"header_timeout": 2.5, "body_timeout": 7}}, source="<test>", env={}).gateway
    assert (parsed.header_timeout, parsed.body_timeout) == (2.5, 7.0)


FILE_LIMIT = 96


def test_past_the_file_limit_the_gateway_goes_on_and_says_so_once(tmp_path: Path) -> None:
    """More connections than the gateway's file limit: those beyond what it keeps for clients are
    closed at once; those it has are served; one warning for the whole episode; and after they
    close, a normal request works."""
    with gateway(tmp_path, preexec=limit_files(FILE_LIMIT)) as gw:
        first = gw.connect(timeout=10)
        socks = [gw.connect(timeout=10) for _ in range(3 * FILE_LIMIT)]
        try:
            # Those refused see the connection end at once.
            closed = 0
            for sock in socks:
                sock.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    if sock.recv(1) == b"":
                        closed += 1
            assert closed >= FILE_LIMIT, f"only {closed} connections past the limit were closed"
            # A connection the gateway kept is still served.
            first.sendall(get("/v1/models"))
            assert Reader(first).answer().status == 200
            wait_until(lambda: "connection limit reached" in gw.log(), 10)
        finally:
            for sock in socks:
                sock.close()
            first.close()
        answer, _ = ask(gw, get("/v1/models"))
        assert answer.status == 200
        assert gw.log().count("connection limit reached") == 1, gw.log()
        assert gw.proc.poll() is None


def test_a_client_that_half_closes_after_its_request_gets_its_answer(tmp_path: Path) -> None:
    """A client that shuts its sending side after a whole request (netcat, some HTTP/1.0 clients) is answered,
    then closed, not cut off with its answer unwritten."""
    # Answered after a pause (slow-whole), so that the half-close arrives while the answer is being made.
    body = b'{"model": "slow-whole", "messages": [{"role": "user", "content": "hi"}]}'
    with gateway(tmp_path, gap_ms=300) as gw, gw.connect(timeout=CLOSED_WITHIN_S) as sock:
        sock.sendall(post("/v1/chat/completions", body))
        sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        assert reader.answer().status == 200
        assert reader.at_eof()
