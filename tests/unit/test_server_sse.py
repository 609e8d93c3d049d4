"""EventStream: frames that are ready together leave in one write, through uvicorn's own send."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from polyroute.server.sse import EventStream, sends_early

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Transport:
    """What uvicorn's send writes to: every write, kept apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Body:
    """An answer's frames, handed over by the test in batches."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False
        self.cancelled = False

    def put(self, *frames: bytes | None) -> None:
        for frame in frames:
            self.queue.put_nowait(frame)

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            while (frame := await self.queue.get()) is not None:
                yield frame
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True


def uvicorn_send(transport: Transport) -> tuple[RequestResponseCycle, FlowControl]:
    flow = FlowControl(transport)  # type: ignore[arg-type]
    scope: Any = {"type": "http", "method": "POST", "http_version": "1.1", "path": "/", "query_string": b""}
    cycle = RequestResponseCycle(
        scope, transport, flow, logging.getLogger("test"), logging.getLogger("test.access"),  # type: ignore[arg-type]
        False, [], asyncio.Event(), False, True, lambda: None,
    )
    return cycle, flow


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_ready_together_leave_in_one_write() -> None:
    transport, body = Transport(), Body()
    cycle, _ = uvicorn_send(transport)
    assert sends_early(cycle.send)
    body.put(b"role ", b"token1 ")
    task = asyncio.ensure_future(EventStream(body.frames(), {"x-a": "1"})({}, never, cycle.send))
    await settle()
    head, first = transport.writes
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-a: 1\r\n" in head
    assert first == chunk(b"role token1 ")
    body.put(b"token2 ")
    await settle()
    assert transport.writes[2:] == [chunk(b"token2 ")]
    body.put(b"last ", b"usage ", b"[DONE]", None)
    await task
    assert transport.writes[3:] == [chunk(b"last usage [DONE]") + b"0\r\n\r\n"]
    assert body.closed


async def test_a_slow_client_gets_its_frames_once_it_drains() -> None:
    transport, body = Transport(), Body()
    cycle, flow = uvicorn_send(transport)
    body.put(b"a")
    task = asyncio.ensure_future(EventStream(body.frames(), {})({}, never, cycle.send))
    await settle()
    assert transport.writes[1:] == [chunk(b"a")]
    flow.pause_writing()  # the client's socket is full
    body.put(b"b")
    await settle()
    assert transport.writes[1:] == [chunk(b"a")], "nothing is written while the client is slow"
    flow.resume_writing()
    body.put(b"c")
    await settle()
    assert transport.writes[1:] == [chunk(b"a"), chunk(b"bc")]
    body.put(None)
    await task
    assert transport.writes[-1] == b"0\r\n\r\n"


async def test_another_server_gets_every_frame_in_its_own_send() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    assert not sends_early(send)
    body = Body()
    body.put(b"a", b"b")
    task = asyncio.ensure_future(EventStream(body.frames(), {})({}, never, send))
    await settle()
    body.put(b"c", None)
    await task
    assert sent[0]["type"] == "http.response.start"
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"a", True), (b"b", True), (b"c", True), (b"", False)
    ]


async def test_a_client_that_leaves_mid_stream_cancels_the_body_where_it_waits() -> None:
    transport, body = Transport(), Body()
    cycle, _ = uvicorn_send(transport)
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    body.put(b"a")
    task = asyncio.ensure_future(EventStream(body.frames(), {})({}, receive, cycle.send))
    await settle()
    left.set()
    await asyncio.wait_for(task, 1.0)  # returns: the cancellation was ours, and it is done with
    assert body.cancelled and body.closed
    assert transport.writes[1:] == [chunk(b"a")]


async def test_a_cancelled_task_stays_cancelled() -> None:
    transport, body = Transport(), Body()
    cycle, _ = uvicorn_send(transport)
    task = asyncio.ensure_future(EventStream(body.frames(), {})({}, never, cycle.send))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.cancelled and body.closed
