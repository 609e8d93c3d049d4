"""The aiohttp upstream client (``upstream_client = "aiohttp"``) against the hostile upstream and proxy.

The same cases as test_upstreams_limits.py and test_upstreams_proxy.py, for the other client
behind the same interface: the same errors, caps, connection queue and proxy handling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from polyroute import config as cfg
from polyroute.adapters.aio_transport import AioPool
from polyroute.adapters.http import error_from_exception, pool_for
from polyroute.adapters.proxy import Proxy, proxy_for
from polyroute.adapters.transport import (
    MAX_HEADERS,
    ConnectFailed,
    ConnectionBroken,
    Pool,
    PoolFull,
    ReadTimeout,
    ResponseTooLarge,
)
from polyroute.errors import UpstreamBadResponse, UpstreamUnavailable
from tests.robustness.hostile_upstream import ANSWER, ConnectProxy, HostileUpstream
from tests.support.wait import await_until

ASK = b'{"model": "ok", "stream": false}'


def ask(model: str, stream: bool = False) -> bytes:
    return b'{"model": "%s", "stream": %s}' % (model.encode(), b"true" if stream else b"false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_up(ca: trustme.CA) -> Iterator[HostileUpstream]:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    with HostileUpstream(tls=ctx, host="localhost") as server:
        yield server


def test_the_config_key_chooses_the_client_for_every_http_backend() -> None:
    conf = cfg.parse({
        "gateway": {"upstream_client": "aiohttp"},
        "backends": {
            "a": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"},
            "own": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "upstream_client": "builtin"},
            "f": {"type": "fake"},
        },
    })
    assert isinstance(pool_for(conf.backends["a"], {}), AioPool)  # type: ignore[arg-type]
    assert isinstance(pool_for(conf.backends["own"], {}), Pool)  # type: ignore[arg-type]
    default = cfg.parse({"backends": {"a": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}})
    assert default.gateway.upstream_client == "builtin"
    assert isinstance(pool_for(default.backends["a"], {}), Pool)  # type: ignore[arg-type]
    with pytest.raises(cfg.ConfigError, match="upstream_client"):
        cfg.parse({"gateway": {"upstream_client": "requests"}})


@pytest.mark.anyio
async def test_answers_are_read_and_connections_reused(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    for _ in range(5):
        resp = await pool.request("POST", f"{up.base_url}/chat", {"authorization": "Bearer k"}, ask("ok"), 10)
        assert resp.status == 200 and ANSWER.encode() in await resp.read(10)
    assert pool.session is not None and pool.session.connector is not None
    await pool.aclose()


@pytest.mark.anyio
async def test_a_stream_is_read_line_by_line(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok", stream=True), 10)
    lines = [line async for line in resp.iter_lines(10)]
    assert "data: [DONE]" in lines and any(ANSWER in line for line in lines)
    await pool.aclose()


@pytest.mark.anyio
async def test_headers_up_to_the_limit_are_read(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask(f"headers-{MAX_HEADERS - 3}"), 10)
    assert resp.status == 200
    assert await resp.read() == b"{}"
    await pool.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["headers-200000", "longhead-12000000", "headers-1000000"])
async def test_a_head_past_the_limits_fails(up: HostileUpstream, model: str) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    with pytest.raises(ResponseTooLarge) as caught:
        await pool.request("POST", f"{up.base_url}/chat", {}, ask(model), 30)
    err = error_from_exception(caught.value, backend="b", model="m")
    assert isinstance(err, UpstreamBadResponse) and err.may_fall_over
    assert "response head over" in err.message
    if model != "headers-200000":
        await await_until(lambda: model in up.hangups)
        assert up.sent[model] < 8 * 1024 * 1024
    await pool.aclose()


@pytest.mark.anyio
async def test_a_body_past_the_limit_fails_and_the_connection_is_closed(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("body-1073741824"), 30)
    with pytest.raises(ResponseTooLarge, match="response body over 1048576 bytes"):
        await resp.read(30, limit=1 << 20)
    await await_until(lambda: "body-1073741824" in up.hangups)
    assert up.sent["body-1073741824"] < 64 * 1024 * 1024
    await pool.aclose()


@pytest.mark.anyio
async def test_a_body_within_the_limit_is_read_whole(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("body-300000"), 30)
    assert len(await resp.read(30, limit=300000)) == 300000
    await pool.aclose()


@pytest.mark.anyio
async def test_a_line_that_never_ends_fails(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5)
    resp = await pool.request("POST", f"{up.base_url}/chat", {}, ask("sseline", stream=True), 30)
    with pytest.raises(ResponseTooLarge, match="over 1048576 bytes"):
        async for _ in resp.iter_lines(30):
            pass
    await pool.aclose()


@pytest.mark.anyio
async def test_connections_are_capped_with_a_bounded_queue(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5, max_connections=1, max_waiting=1)
    held = await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)  # body unread: still busy
    waiting = asyncio.ensure_future(pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 30))
    await await_until(lambda: len(pool.waiters) == 1)
    with pytest.raises(PoolFull) as caught:
        await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)
    err = error_from_exception(caught.value, backend="b", model="m")
    assert isinstance(err, UpstreamUnavailable) and err.code == "connection_limit_reached"
    assert "connection limit reached: 1 of 1 connections busy and 1 requests waiting" in err.message
    assert not waiting.done()
    await held.read()
    second = await waiting
    assert second.status == 200 and b"hello from upstream" in await second.read()
    assert pool.busy == 0
    await pool.aclose()


@pytest.mark.anyio
async def test_a_request_waiting_past_its_timeout_fails_clearly(up: HostileUpstream) -> None:
    pool = AioPool(up.base_url, connect_timeout=5, max_connections=1, max_waiting=4)
    held = await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 10)
    with pytest.raises(PoolFull, match=r"none of 1 connections freed within 0\.2s"):
        await pool.request("POST", f"{up.base_url}/chat", {}, ask("ok"), 0.2)
    assert not pool.waiters
    await held.read()
    await pool.aclose()


@pytest.mark.anyio
async def test_silence_refusal_garbage_and_a_cut_body_map_to_the_transport_errors() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/silent" in head:
            await asyncio.sleep(5)
        elif b"/garbage" in head:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        else:
            writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    async with srv:
        pool = AioPool(url, connect_timeout=2)
        with pytest.raises(ReadTimeout):
            await pool.request("POST", f"{url}/silent", {}, b"", 0.2)
        with pytest.raises(ConnectionBroken):
            await pool.request("POST", f"{url}/garbage", {}, b"", 5)
        resp = await pool.request("POST", f"{url}/cut", {}, b"", 5)
        with pytest.raises(ConnectionBroken):
            await resp.read(5)
        await pool.aclose()
    gone = AioPool(url, connect_timeout=2)
    with pytest.raises(ConnectFailed):
        await gone.request("POST", url, {}, b"", 2)
    await gone.aclose()


@pytest.mark.anyio
async def test_plain_http_through_a_proxy_uses_absolute_form_and_its_credentials(up: HostileUpstream) -> None:
    with ConnectProxy(credentials="alice:s3cret-pass") as proxy:
        env = {"HTTP_PROXY": f"http://alice:s3cret-pass@127.0.0.1:{proxy.port}"}
        pool = AioPool(up.base_url, connect_timeout=5, proxy=proxy_for(up.base_url, None, env))
        resp = await pool.request("POST", f"{up.base_url}/chat/completions", {}, ASK, 10)
        assert resp.status == 200 and ANSWER.encode() in await resp.read()
        await pool.aclose()
    assert proxy.request_lines == [f"POST {up.base_url}/chat/completions HTTP/1.1"]
    assert proxy.authorizations == [proxy.expected]


@pytest.mark.anyio
async def test_https_through_a_connect_proxy_with_a_private_ca(tls_up: HostileUpstream, ca_file: Path) -> None:
    with ConnectProxy() as proxy:
        pool = AioPool(tls_up.base_url, connect_timeout=5, proxy=Proxy("127.0.0.1", proxy.port, None),
                       ca_bundle=str(ca_file))
        for _ in range(2):  # the second request reuses the tunnel
            resp = await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)
            assert resp.status == 200 and ANSWER.encode() in await resp.read()
        await pool.aclose()
    assert proxy.request_lines == [f"CONNECT localhost:{tls_up.port} HTTP/1.1"]


@pytest.mark.anyio
async def test_without_the_private_ca_the_certificate_is_refused(tls_up: HostileUpstream) -> None:
    with ConnectProxy() as proxy:
        pool = AioPool(tls_up.base_url, connect_timeout=5, proxy=Proxy("127.0.0.1", proxy.port, None))
        with pytest.raises(ConnectFailed):
            await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)
        await pool.aclose()


@pytest.mark.anyio
async def test_a_proxy_that_wants_credentials_fails_without_repeating_ours(tls_up: HostileUpstream) -> None:
    with ConnectProxy(credentials="alice:right") as proxy:
        env = {"HTTPS_PROXY": f"http://alice:wrong-secret-pw@127.0.0.1:{proxy.port}"}
        pool = AioPool(tls_up.base_url, connect_timeout=5, proxy=proxy_for(tls_up.base_url, None, env))
        with pytest.raises(ConnectFailed) as caught:
            await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)
        await pool.aclose()
    assert "wrong-secret-pw" not in str(caught.value)


def test_without_the_extra_the_key_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp now fails as if not installed
    monkeypatch.delitem(sys.modules, "polyroute.adapters.aio_transport")
    conf = cfg.parse({"gateway": {"upstream_client": "aiohttp"},
                      "backends": {"a": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}})
    with pytest.raises(cfg.ConfigError, match=r"pip install 'polyroute\[aiohttp\]'"):
        pool_for(conf.backends["a"], {})  # type: ignore[arg-type]
