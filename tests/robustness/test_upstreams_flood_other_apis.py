"""A fast upstream streaming ``/v1/responses`` and ``/v1/messages`` to clients that do not read.

As ``test_upstreams_flood`` does for chat: an upstream that streams as fast as it can
must neither starve the gateway's other clients nor make it hold more than a bounded
amount for a client that does not read. Each token becomes a larger event on these
APIs than on chat (Responses' deltas carry their item, indexes and sequence number),
so the same bounds are a stricter test here. A real ``polyroute serve`` process, with
raw sockets as the clients (a 4 KiB receive buffer, never read).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.robustness.hostile_upstream import FLOOD_WORD, HostileUpstream
from tests.robustness.test_upstreams_flood import MEMORY_BOUND_KIB, OTHER_CLIENT_BOUND_S, STREAMS, _rss_kib
from tests.robustness.test_upstreams_hostile import Gateway, serving, timed
from tests.robustness.test_upstreams_streams_other_apis import body, ended_well, events, text_of
from tests.support.clients import gateway_lines
from tests.support.live import free_port

APIS = ["responses", "messages"]
# One upstream model per API (and per wire), so that what each was sent is counted apart.
FLOOD = {"responses": "flood-200001", "messages": "flood-200002", "messages-claude": "anth-flood-200003"}


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    config = "\n".join([
        "[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
        "[backends.fast]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.flood-responses]", 'backend = "fast"', f'upstream = "{FLOOD["responses"]}"',
        "[models.flood-messages]", 'backend = "fast"', f'upstream = "{FLOOD["messages"]}"',
        "[models.short]", 'backend = "fast"', 'upstream = "flood-20000"',
        "[backends.claude]", 'type = "anthropic"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.flood-messages-claude]", 'backend = "claude"', f'upstream = "{FLOOD["messages-claude"]}"',
        "[models.short-claude]", 'backend = "claude"', 'upstream = "anth-flood-20000"',
    ]) + "\n"
    with serving(tmp_path_factory.mktemp("flood-apis"), port, config, {"UP_KEY": "sk-up-flood"}) as gateway:
        yield gateway


@pytest.mark.parametrize(("api", "model"), [("responses", "short"), ("messages", "short"),
                                           ("messages", "short-claude"), ("responses", "short-claude")])
def test_a_fast_stream_read_whole_arrives_whole(gw: Gateway, api: str, model: str) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as client, client.stream(
            "POST", f"/v1/{api}", json=body(api, model)) as resp:
        assert resp.status_code == 200
        seen = events(resp)
    assert ended_well(api, seen)
    assert text_of(api, seen) == FLOOD_WORD * 20000


@pytest.mark.parametrize("route", list(FLOOD))
def test_fast_streams_to_clients_that_do_not_read_stay_bounded(gw: Gateway, up: HostileUpstream, route: str) -> None:
    api = route.split("-")[0]
    payload = json.dumps(body(api, f"flood-{route}")).encode()
    request = b"POST /v1/%s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        api.encode(), len(payload), payload)
    model = FLOOD[route]
    with httpx.Client(base_url=gw.url, timeout=30) as other:
        assert other.get("/healthz").status_code == 200
        before = _rss_kib(gw)
        hits_before = sum(h.model == model for h in up.hits)
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
                started = sum(h.model == model for h in up.hits) - hits_before
                sent = up.sent.get(model, 0)
                still = still + 1 if started == STREAMS and sent == last else 0
                last = sent
            grown = peak - before
            print(f"\nrobustness: {STREAMS} fast /v1/{api} streams from {model} not read: RSS +{grown / 1024:.1f} MiB, "
                  f"another client waited at worst {worst * 1000:.0f} ms, upstream sent {last / 2**20:.0f} MiB")
            assert worst < OTHER_CLIENT_BOUND_S, f"another client waited {worst:.2f}s"
            assert grown < MEMORY_BOUND_KIB, f"RSS grew by {grown} KiB for {STREAMS} streams"
        finally:
            for sock in socks:
                sock.close()
        assert other.get("/healthz").status_code == 200
