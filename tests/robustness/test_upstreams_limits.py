"""The upstream client's limits, against a hostile upstream on loopback: heads, bodies, lines, connections."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.adapters.http import error_from_exception
from polyroute.adapters.sse import EventTooLarge, SSEDecoder
from polyroute.adapters.transport import MAX_HEADERS, Pool, PoolFull, ResponseTooLarge
from polyroute.errors import UpstreamBadResponse, UpstreamUnavailable
from tests.robustness.hostile_upstream import HostileUpstream
from tests.support.wait import await_until


def ask(model: str, stream: bool = False) -> bytes:
    return b'{"model": "%s", "stream": %s}' % (model.encode(), b"true" if stream else b"false")


@pytest.mark.anyio
async def test_headers_up_to_the_limit_are_read_and_repeats_joined_once(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask(f"headers-{MAX_HEADERS - 3}"), 10)
    assert resp.status == 200
    assert resp.headers["x-repeated"] == ", ".join(["v"] * (MAX_HEADERS - 3))
    assert await resp.read() == b"{}"
    await pool.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["headers-200000", "longhead-12000000", "headers-1000000"])
async def test_a_head_past_the_limits_fails_and_is_not_read_on(up: HostileUpstream, model: str) -> None:
    # 200,000 repeated headers (3 MB) or a 12 MB value once froze the gateway for seconds.
    pool = Pool(up.base_url, connect_timeout=5)
    with pytest.raises(ResponseTooLarge) as caught:
        await pool.request("POST", f"{up.base_url}/chat", {}, ask(model), 30)
    err = error_from_exception(caught.value, backend="b", model="m")
    assert isinstance(err, UpstreamBadResponse) and err.may_fall_over
    assert "response head over" in err.message
    if model != "headers-200000":  # small enough to sit whole in the sockets' buffers
        await await_until(lambda: model in up.hangups)
        assert up.sent[model] < 8 * 1024 * 1024  # the connection was closed long before the end
    await pool.aclose()


@pytest.mark.anyio
async def test_a_body_past_the_limit_fails_and_the_connection_is_closed(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("body-1073741824"), 30)
    with pytest.raises(ResponseTooLarge, match="response body over 1048576 bytes"):
        await resp.read(30, limit=1 << 20)
    await await_until(lambda: "body-1073741824" in up.hangups)
    assert up.sent["body-1073741824"] < 64 * 1024 * 1024
    assert pool.idle == []
    await pool.aclose()


@pytest.mark.anyio
async def test_a_body_within_the_limit_is_read_whole(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("body-300000"), 30)
    assert len(await resp.read(30, limit=300000)) == 300000
    await pool.aclose()


@pytest.mark.anyio
async def test_a_line_that_never_ends_fails(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("sseline", stream=True), 30)
    with pytest.raises(ResponseTooLarge, match="over 1048576 bytes"):
        async for _ in resp.iter_lines(30):
            pass
    await pool.aclose()


def test_an_sse_event_past_the_cap_fails_for_a_line_or_for_data_lines() -> None:
    line = SSEDecoder(max_event=4096)
    assert line.feed(b"data: " + b"a" * 3000) == []
    with pytest.raises(EventTooLarge):
        line.feed(b"a" * 2000)
    lines = SSEDecoder(max_event=4096)
    with pytest.raises(EventTooLarge):
        for _ in range(1000):
            lines.feed(b"data: aaaaaaaa\n")


def test_an_event_in_many_pieces_under_the_cap_is_decoded_whole() -> None:
    dec = SSEDecoder(max_event=1 << 20)
    text = "b" * 200_000
    payload = b"event: big\ndata: " + text.encode() + b"\n\ndata: next\n\n"
    out: list[tuple[str, str]] = []
    for i in range(0, len(payload), 1000):
        out += dec.feed(payload[i:i + 1000])
    assert out == [("big", text), ("message", "next")]
    assert dec.feed(b"data: fast\n\n") == [("message", "fast")]


@pytest.mark.anyio
async def test_connections_are_capped_with_a_bounded_queue(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5, max_connections=1, max_waiting=1)
    held = await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)  # body unread: still busy
    waiting = asyncio.ensure_future(pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 30))
    await await_until(lambda: len(pool.waiters) == 1)
    with pytest.raises(PoolFull) as caught:
        await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)
    err = error_from_exception(caught.value, backend="b", model="m")
    assert isinstance(err, UpstreamUnavailable) and err.code == "connection_limit_reached"
    assert "connection limit reached: 1 of 1 connections busy and 1 requests waiting" in err.message
    assert not waiting.done()
    await held.read()  # back to the pool: the waiting request takes it
    second = await waiting
    assert second.status == 200 and b"hello from upstream" in await second.read()
    assert pool.open == 1
    await pool.aclose()


@pytest.mark.anyio
async def test_a_request_waiting_past_its_timeout_fails_clearly(up: HostileUpstream) -> None:
    pool = Pool(up.base_url, connect_timeout=5, max_connections=1, max_waiting=4)
    held = await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)
    with pytest.raises(PoolFull, match=r"none of 1 connections freed within 0\.2s"):
        await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 0.2)
    assert not pool.waiters
    await held.read()
    await pool.aclose()
