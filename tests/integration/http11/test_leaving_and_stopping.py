"""The HTTP/1.1 server on real sockets: clients that leave or read slowly, stopping, idle connections."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.support.http11_app import FRAMES, Probe, Wire, get, own_server
from tests.support.wait import TIMEOUT, wait_until


def refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused (one that is not is closed at once)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # it was in the listener's backlog as the listener closed: the next try is refused
    return False


# --- clients that leave, clients that read slowly -------------------------------------


def test_a_client_leaving_mid_stream_closes_the_stream_at_once(port: int, root: str, probe: Probe) -> None:
    probe.stream_closed.clear()
    w = Wire(port)
    w.send(get("/stream"))
    assert b"text/event-stream" in w.until(b"\r\n\r\n")
    w.until(b"data: 1\n\n")
    assert not probe.stream_closed.is_set()
    w.close()  # while the stream waits 30 s for its next frame
    assert probe.stream_closed.wait(TIMEOUT), "the stream's generator was not closed when its client left"
    assert httpx.get(f"{root}/hello", timeout=3).status_code == 200


def test_a_slow_reader_of_a_large_stream_gets_every_frame_in_order(port: int, probe: Probe) -> None:
    probe.produced = 0
    w = Wire(port, rcvbuf=16 * 1024)
    w.send(get("/big"))
    wait_until(lambda: probe.produced > 0, what="the stream started")
    time.sleep(1.0)  # not reading: a stream that did not wait for its reader would run to its end meanwhile
    assert 0 < probe.produced < FRAMES, "the stream did not wait for its reader"
    w.sock.settimeout(TIMEOUT)
    a = w.answer()
    assert a.status == 200
    frames = a.body.split(b"\n\n")
    assert frames.pop() == b"" and len(frames) == FRAMES
    for i, frame in enumerate(frames):
        assert frame == b"data: %06d %s" % (i, b"x" * 1000), f"frame {i} damaged"
    w.close()


def test_a_whole_answer_runs_to_its_end_when_its_client_left(port: int, root: str, probe: Probe) -> None:
    probe.delay = 0.5
    probe.started.clear()
    probe.finished.clear()
    probe.cancelled.clear()
    w = Wire(port)
    w.send(get("/slow"))
    assert probe.started.wait(TIMEOUT)
    w.close()
    assert probe.finished.wait(TIMEOUT) and not probe.cancelled.is_set()
    assert httpx.get(f"{root}/hello", timeout=3).status_code == 200


# --- stopping and idle connections ----------------------------------------------------


def test_graceful_stop_finishes_the_answer_in_flight_and_refuses_new_connections() -> None:
    gate = threading.Event()
    probe = Probe(gate=gate)  # the answer is in flight until the test lets it finish
    with own_server(probe) as (server, port):
        w = Wire(port)
        w.send(get("/slow"))
        assert probe.started.wait(TIMEOUT)  # the handler is running
        server.stop()
        wait_until(lambda: refused(port), what="new connections refused")  # stop() is taken up by the loop
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert not probe.finished.is_set()  # still in flight while new connections were refused
        gate.set()
        a = w.answer()
        assert (a.status, a.body) == (200, b"slow")
        assert a.headers.get("connection") == "close", f"no connection: close at stop: {a.headers}"
        assert w.at_eof()
        assert not probe.cancelled.is_set()


def test_a_large_answer_in_flight_at_stop_arrives_whole() -> None:
    gate = threading.Event()
    probe = Probe(gate=gate, repeat=4 * 1024 * 1024)  # 16 MB: more than the socket buffers hold
    # Reading 16 MB through a small window takes a loaded machine seconds: the grace period must not cut it.
    with own_server(probe, grace=60.0) as (server, port):
        w = Wire(port, rcvbuf=16 * 1024)
        w.send(get("/slow"))
        assert probe.started.wait(TIMEOUT)
        server.stop()
        gate.set()  # the answer is made after the stop began
        w.sock.settimeout(TIMEOUT)
        try:
            a = w.answer()
        except EOFError:
            pytest.fail(f"the answer was cut at stop: {len(w.buf)} bytes of its body arrived")
        assert (a.status, len(a.body)) == (200, len(b"slow") * probe.repeat)


def test_idle_keep_alive_connections_are_closed_at_stop() -> None:
    keep_alive = 60.0
    with own_server(Probe(), keep_alive=keep_alive) as (server, port):
        idle = [Wire(port) for _ in range(2)]
        for w in idle:
            w.send(get("/hello"))
            assert w.answer().status == 200
        began = time.monotonic()
        server.stop()
        assert all(w.at_eof(timeout=TIMEOUT) for w in idle)
        assert time.monotonic() - began < keep_alive / 2  # at the stop, not when their keep-alive ran out


def test_the_idle_sweep_closes_idle_connections_after_keep_alive_and_leaves_busy_ones() -> None:
    keep_alive = 0.5
    gate = threading.Event()
    probe = Probe(gate=gate)  # an answer in flight until the test lets it finish
    with own_server(probe, keep_alive=keep_alive) as (_, port):
        busy, idle = Wire(port), Wire(port)
        busy.send(get("/slow"))
        assert probe.started.wait(TIMEOUT)
        idle_since = time.monotonic()  # no later than the server's last word on it
        idle.send(get("/hello"))
        assert idle.answer().status == 200
        assert idle.at_eof(timeout=TIMEOUT), "an idle connection outlived keep_alive"
        assert keep_alive <= time.monotonic() - idle_since
        # The sweep that closed the idle one found the busy one older than keep_alive, and left it.
        assert not probe.finished.is_set()
        gate.set()
        a = busy.answer()
        assert (a.status, a.body) == (200, b"slow") and not probe.cancelled.is_set()


def test_a_body_still_coming_in_is_not_idle() -> None:
    keep_alive = 1.0  # twice the pause between parts: only a test thread stalled for seconds looks idle
    with own_server(Probe(), keep_alive=keep_alive) as (_, port):
        w = Wire(port)
        parts = [b"slow-", b"upload-", b"over-", b"two-", b"sweeps"]
        body = b"".join(parts)
        w.send(f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for part in parts:  # 2.5 s in all: longer than keep_alive, across two sweeps
            time.sleep(0.5)
            w.send(part)
        a = w.answer()
        assert (a.status, a.body) == (200, body)
        w.close()
