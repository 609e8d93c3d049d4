"""A fast upstream streaming to clients that do not read: memory stays bounded, other clients are served.

An upstream that streams as fast as it can fills the gateway's read buffer at once,
so every step of the stream is ready without waiting. The gateway must still let
its other requests run between turns of such a stream, and must not hold more
than a bounded amount for a client that does not read. A real ``polyroute serve``
process, with raw sockets as the clients (a 4 KiB receive buffer, never read);
memory is read from ``/proc/PID/status`` as an operator's monitor would.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.robustness.hostile_upstream import FLOOD_WORD, HostileUpstream
from tests.robustness.test_upstreams_hostile import Gateway, serving, timed
from tests.support.clients import gateway_lines
from tests.support.live import free_port

STREAMS = 20
# Before a turn was bounded, 20 such streams held 67-107 MiB (3-5 MiB each: a megabyte of unread
# upstream body, the frames made from it, and the answer's text one object a token) and another
# client waited 7.7 s on a 2-core machine. Bounded, they hold about 0.7 MiB each.
MEMORY_BOUND_KIB = 30 * 1024
OTHER_CLIENT_BOUND_S = 2.0  # generous for a busy 2-core machine; the unbounded turns took seconds


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    config = "\n".join([
        "[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
        "[backends.fast]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.flood]", 'backend = "fast"', 'upstream = "flood-200000"',
        "[models.short]", 'backend = "fast"', 'upstream = "flood-20000"',
    ]) + "\n"
    with serving(tmp_path_factory.mktemp("flood"), port, config, {"UP_KEY": "sk-up-flood"}) as gateway:
        yield gateway


def _rss_kib(gw: Gateway) -> int:
    for line in Path(f"/proc/{gw.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_fast_stream_read_whole_arrives_whole(gw: Gateway) -> None:
    """Turns cut a fast stream's writes, never its frames: every word arrives, in one valid stream."""
    words, done = 0, False
    with httpx.Client(base_url=gw.url, timeout=60) as client, client.stream(
            "POST", "/v1/chat/completions",
            json={"model": "short", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                for choice in json.loads(line[6:])["choices"]:
                    words += choice["delta"].get("content") == FLOOD_WORD
    assert done and words == 20000


def test_fast_streams_to_clients_that_do_not_read_stay_bounded(gw: Gateway, up: HostileUpstream) -> None:
    body = json.dumps({"model": "flood", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    with httpx.Client(base_url=gw.url, timeout=30) as other:
        assert other.get("/healthz").status_code == 200
        before = _rss_kib(gw)
        hits_before = sum(h.model == "flood-200000" for h in up.hits)
        socks: list[socket.socket] = []
        try:
            for _ in range(STREAMS):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
                sock.sendall(request)
                socks.append(sock)
            # Another client asks while the streams pour in, until every stream is held back by its
            # client: the upstream has been asked for each, and has sent nothing more for five asks.
            worst, peak, last, still = 0.0, 0, -1, 0
            while still < 5:
                resp, took = timed(lambda: other.get("/healthz"))
                assert resp.status_code == 200
                worst, peak = max(worst, took), max(peak, _rss_kib(gw))
                started = sum(h.model == "flood-200000" for h in up.hits) - hits_before
                sent = up.sent.get("flood-200000", 0)
                still = still + 1 if started == STREAMS and sent == last else 0
                last = sent
            grown = peak - before
            print(f"\nrobustness: {STREAMS} fast streams not read: RSS +{grown / 1024:.1f} MiB, "
                  f"another client waited at worst {worst * 1000:.0f} ms, upstream sent {last / 2**20:.0f} MiB")
            assert worst < OTHER_CLIENT_BOUND_S, f"another client waited {worst:.2f}s"
            assert grown < MEMORY_BOUND_KIB, f"RSS grew by {grown} KiB for {STREAMS} streams"
        finally:
            for sock in socks:
                sock.close()
        # The streams are gone; the gateway answers as before.
        assert other.get("/healthz").status_code == 200
