"""The hot-path HTTP client against small real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from polyroute.adapters.transport import TURN_BYTES, ConnectFailed, ConnectionBroken, Pool, ReadTimeout
from polyroute.eager import EagerTask
from tests.support.http11_app import called_from
from tests.support.wait import await_until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

BODY = b'{"ok": true}'
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """Serve ``handler`` per connection; yield the base URL and a connection counter."""
    conns = [0]

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns[0] += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield f"http://127.0.0.1:{port}", conns


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


@pytest.mark.anyio
async def test_connections_are_reused() -> None:
    async with server(keep_alive) as (url, conns):
        pool = Pool(url, connect_timeout=2)
        for _ in range(20):
            resp = await pool.request("POST", f"{url}/v1/x", {}, b"{}", 2)
            assert resp.status == 200 and await resp.read() == b'{"ok": true}'
        assert conns[0] == 1
        await pool.aclose()


@pytest.mark.anyio
async def test_request_line_headers_and_body_are_sent() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    async with server(record) as (url, _):
        pool = Pool(url + "/v1", connect_timeout=2)
        await (await pool.request("POST", f"{url}/v1/chat/completions", {"authorization": "Bearer k"},
                                  b'{"a":1}', 2)).read()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"authorization: Bearer k" in lines and b"content-length: 7" in lines
    assert body == b'{"a":1}'


@pytest.mark.anyio
async def test_chunked_body_is_decoded_and_read_line_by_line() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: one\n\n", b"data: tw", b"o\n\ndata: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # still open for the next request

    async with server(chunked) as (url, _):
        pool = Pool(url, connect_timeout=2)
        resp = await pool.request("POST", url + "/s", {}, b"", 2)
        lines = [line async for line in resp.iter_lines()]
        assert lines == ["data: one", "", "data: two", "", "data: [DONE]", ""]
        assert len(pool.idle) == 1  # read to the end: back in the pool


@pytest.mark.anyio
async def test_idle_connection_closed_by_upstream_is_replaced_transparently() -> None:
    async def one_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK[: OK.index(b"\r\n")] + b"\r\nconnection: keep-alive" + OK[OK.index(b"\r\n"):])
        await writer.drain()
        # close without saying so: the client still holds it as idle

    async with server(one_and_close) as (url, conns):
        pool = Pool(url, connect_timeout=2)
        await (await pool.request("POST", url, {}, b"", 2)).read()
        await await_until(lambda: all(c.closed for c in pool.idle), what="the upstream's close seen")
        resp = await pool.request("POST", url, {}, b"", 2)
        assert resp.status == 200 and await resp.read() == b'{"ok": true}'
        assert conns[0] == 2


@pytest.mark.anyio
async def test_no_headers_in_time_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with server(silent) as (url, _):
        pool = Pool(url, connect_timeout=2)
        with pytest.raises(ReadTimeout):
            await pool.request("POST", url, {}, b"", 0.2)


@pytest.mark.anyio
async def test_refused_and_garbage_and_cut() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial")
        await writer.drain()

    async with server(garbage) as (url, _):
        with pytest.raises(ConnectionBroken):
            await Pool(url, connect_timeout=2).request("POST", url, {}, b"", 2)
    async with server(cut) as (url, _):
        resp = await Pool(url, connect_timeout=2).request("POST", url, {}, b"", 2)
        with pytest.raises(ConnectionBroken):
            await resp.read(2)
    with pytest.raises(ConnectFailed):
        await Pool(url, connect_timeout=2).request("POST", url, {}, b"", 2)  # that server is gone


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_eager_task_goes_on_from_the_callback_that_read_the_response_head() -> None:
    """A response's head is relayed at once (polyroute.eager), a stream's later chunks on the task's turn."""
    started = asyncio.Event()
    release_rest = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release_rest.wait()
        writer.write(b"4\r\nrest\r\n0\r\n\r\n")
        await writer.drain()

    async with server(stream) as (url, _):
        pool = Pool(url, connect_timeout=2)
        where: list[tuple[str, bool]] = []

        async def relay() -> bytes:
            started.set()
            resp = await pool.request("POST", url, {}, b"", 2)
            where.append(("head", called_from("data_received")))
            first = await resp.next(2)
            release_rest.set()
            rest = await resp.next(2)
            where.append(("rest", called_from("data_received")))
            assert await resp.next(2) is None
            return (first or b"") + (rest or b"")

        loop = asyncio.get_running_loop()
        box: list[EagerTask[bytes]] = []

        def start() -> None:  # as a protocol callback would: no task current
            box.append(EagerTask(loop, relay()))
            box[0].start()

        loop.call_soon(start)
        await started.wait()
        assert await box[0].task == b"firstrest"
        assert where == [("head", True), ("rest", False)]
        await pool.aclose()


@pytest.mark.anyio
async def test_a_body_already_buffered_is_read_in_turns_that_let_other_tasks_run() -> None:
    """A fast upstream fills the buffer faster than it is read: reading it must not hold the event loop."""
    piece = b"data: " + b"y" * 4000 + b"\n\n"
    pieces = 256  # 1 MB

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(pieces)) + b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    async with server(flood) as (url, _):
        pool = Pool(url, connect_timeout=2)
        resp = await pool.request("POST", url + "/s", {}, b"", 2)
        conn = resp._conn
        await await_until(lambda: conn.paused or conn.complete, timeout=10)  # the buffer is full
        read_at_turn: list[int] = []
        read = 0

        async def other() -> None:
            while True:
                await asyncio.sleep(0)
                read_at_turn.append(read)

        ticker = asyncio.create_task(other())
        async for data in resp.iter_bytes(2):
            read += len(data)
        ticker.cancel()
        assert read == len(piece) * pieces
        steps = [b - a for a, b in itertools.pairwise(read_at_turn)]
        # Between two turns of the other task, the reader took at most a turn's bytes and one read's.
        assert max(steps) <= TURN_BYTES + 256 * 1024
        assert len(steps) >= 3
