"""A stop that says so: what the grace period cuts ends with an error, not a silent end (issue 14, point 7).

On SIGTERM the gateway lets answers in flight finish for ``gateway.shutdown_grace``
seconds. A stream still running then ends with an SSE error event
(``code: "server_shutting_down"``, no ``[DONE]``), and a whole answer still being
computed is answered 503 with the same code, so no client takes a cut answer for
a finished one.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson

from tests.robustness.gateway_proc import Reader, chat, error_of, gateway, unread_by_gateway
from tests.support.wait import wait_until

STREAM = {"model": "slow-stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _events(data: bytes) -> list[bytes]:
    return [line.removeprefix(b"data: ") for line in data.split(b"\n") if line.startswith(b"data: ")]


def test_a_stream_cut_by_the_stop_ends_with_a_shutting_down_event(tmp_path: Path) -> None:
    # A token every 2 s, 8 of them; a grace of 1 s.
    with gateway(tmp_path, "shutdown_grace = 1\n", gap_ms=2000) as gw, gw.connect(timeout=30) as sock:
        sock.sendall(chat(STREAM))
        reader = Reader(sock)
        status, _ = reader.head()
        assert status == 200
        received = reader.chunk()  # the first token
        assert b"one" in received
        stopped_at = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        while chunk := reader.chunk():
            received += chunk
        assert reader.at_eof()
        took = time.monotonic() - stopped_at
        events = _events(received)
        assert b"[DONE]" not in events
        last = orjson.loads(events[-1])
        assert last["error"]["code"] == "server_shutting_down"
        assert last["error"]["type"] == "server_error" and set(last["error"]) == {"message", "type", "param", "code"}
        assert gw.proc.wait(timeout=30) == 0
        assert took < 15, f"the stream ended {took:.1f}s after SIGTERM with a grace of 1 s"
        # Its request is recorded as cut by the stop, not as one its client left.
        access = [line for line in gw.log().splitlines() if "polyroute.access" in line]
        assert len(access) == 1 and "status=200" in access[0] and "error=server_shutting_down" in access[0]
        print(f"\nrobustness: stream cut by SIGTERM (grace 1 s) ended with server_shutting_down after {took:.2f}s")


def test_a_whole_answer_cut_by_the_stop_is_a_503_saying_so(tmp_path: Path) -> None:
    with gateway(tmp_path, "shutdown_grace = 0.5\n", gap_ms=20_000) as gw, gw.connect(timeout=30) as sock:
        sock.sendall(chat({"model": "slow-whole", "messages": [{"role": "user", "content": "hi"}]}))
        wait_until(lambda: unread_by_gateway(gw, sock) == 0, 30)  # read: the answer is being computed
        gw.proc.send_signal(signal.SIGTERM)
        answer = Reader(sock).answer()
        assert answer.status == 503
        assert error_of(answer)["code"] == "server_shutting_down"
        assert gw.proc.wait(timeout=30) == 0


def test_streams_that_finish_within_the_grace_end_as_usual(tmp_path: Path) -> None:
    with gateway(tmp_path, "shutdown_grace = 20\n", gap_ms=100) as gw, gw.connect(timeout=30) as sock:
        sock.sendall(chat(STREAM))
        reader = Reader(sock)
        assert reader.head()[0] == 200
        received = reader.chunk()
        gw.proc.send_signal(signal.SIGTERM)
        while chunk := reader.chunk():
            received += chunk
        assert _events(received)[-1] == b"[DONE]"
        assert b"server_shutting_down" not in received
        assert gw.proc.wait(timeout=30) == 0
