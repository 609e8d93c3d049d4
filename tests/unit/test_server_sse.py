"""EventStream.send against a recording Output: one write per batch of ready frames, chunked, paced by drain."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from polyroute.server.sse import TURN_BYTES, EventStream

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
Step = bytes | asyncio.Event | Exception


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Output:
    """Every write kept apart; ``paused`` and ``drain`` in the test's hands."""

    def __init__(self, pause_after_writes: int | None = None) -> None:
        self.writes: list[bytes] = []
        self.pause_after_writes = pause_after_writes  # paused once this many writes were made
        self.drains = 0
        self.drained: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def paused(self) -> bool:
        return self.pause_after_writes is not None and len(self.writes) >= self.pause_after_writes

    def drain(self) -> asyncio.Future[None]:
        self.drains += 1
        self.drained = asyncio.get_running_loop().create_future()
        return self.drained

    def resume(self) -> None:
        self.pause_after_writes = None
        assert self.drained is not None
        self.drained.set_result(None)


class Body:
    """An AsyncIterator played from a script: bytes are yielded, an Event waited for, an exception raised."""

    def __init__(self, *script: Step) -> None:
        self.script = list(script)
        self.asked = 0  # how many times the next frame was asked for
        self.closed = 0
        self.cancelled = False

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        self.asked += 1
        while self.script:
            step = self.script.pop(0)
            if isinstance(step, bytes):
                return step
            if isinstance(step, Exception):
                raise step
            try:
                await step.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed += 1


def dechunk(data: bytes) -> list[bytes]:
    """The chunks of a chunked body, strictly: every size right, CRLFs in place, ``0\\r\\n\\r\\n`` at the end."""
    chunks: list[bytes] = []
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, "a chunk size line without its CRLF"
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n", f"bytes after the last chunk: {data!r}"
            return chunks
        assert data[size : size + 2] == b"\r\n", "a chunk not followed by CRLF"
        chunks.append(data[:size])
        data = data[size + 2 :]


async def test_ready_frames_leave_in_one_write_with_the_head() -> None:
    frames = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    out, body = Output(), Body(b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n")
    await EventStream(body, {}).send(out, HEAD)
    assert out.writes == [HEAD + b"20\r\n" + frames + b"\r\n0\r\n\r\n"]  # 0x20 = 32 bytes of frames
    assert body.closed == 1


async def test_the_head_leaves_with_the_first_frames_when_the_rest_waits() -> None:
    later = asyncio.Event()
    out, body = Output(), Body(b"data: 1\n\n", b"data: 2\n\n", later, b"data: 3\n\n")
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    await asyncio.sleep(0.01)
    # What was ready before the wait has left, in one write, the head in front of it.
    assert out.writes == [HEAD + b"12\r\ndata: 1\n\ndata: 2\n\n\r\n"]
    later.set()
    await asyncio.wait_for(task, 1)
    assert out.writes[1:] == [b"9\r\ndata: 3\n\n\r\n0\r\n\r\n"]


async def test_the_output_is_valid_chunked_encoding_of_every_frame() -> None:
    gate_a, gate_b = asyncio.Event(), asyncio.Event()
    frames = [b"data: a\n\n", b"data: " + b"x" * 300 + b"\n\n", b"", b"data: \xe4\xbd\xa0\r\n\n", b"data: [DONE]\n\n"]
    body = Body(frames[0], gate_a, frames[1], frames[2], gate_b, frames[3], frames[4])
    out = Output()
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    for gate in (gate_a, gate_b):
        await asyncio.sleep(0.01)
        gate.set()
    await asyncio.wait_for(task, 1)
    data = b"".join(out.writes)
    assert data.startswith(HEAD)
    chunks = dechunk(data[len(HEAD) :])
    assert b"".join(chunks) == b"".join(frames)
    assert all(chunks), "an empty chunk would end the body early"
    # One chunk per batch of frames ready together: [a], [x..., ""], [\xe4..., DONE].
    assert chunks == [frames[0], frames[1], frames[3] + frames[4]]


async def test_an_empty_body_is_the_head_and_the_last_chunk() -> None:
    out = Output()
    await EventStream(Body(), {}).send(out, HEAD)
    assert out.writes == [HEAD + b"0\r\n\r\n"]


async def test_what_was_pending_is_written_before_each_wait() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    body = Body(b"a", b"b", gates[0], b"c", gates[1], b"d", b"e", gates[2])
    out = Output()
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    seen = []
    for gate in gates:
        await asyncio.sleep(0.01)
        seen.append(list(out.writes))  # the body is waiting now: its frames so far must be out
        gate.set()
    await asyncio.wait_for(task, 1)
    assert seen == [
        [HEAD + b"2\r\nab\r\n"],
        [HEAD + b"2\r\nab\r\n", b"1\r\nc\r\n"],
        [HEAD + b"2\r\nab\r\n", b"1\r\nc\r\n", b"2\r\nde\r\n"],
    ]
    assert out.writes[3:] == [b"0\r\n\r\n"]


async def test_a_paused_output_is_drained_before_the_body_is_asked_again() -> None:
    gate = asyncio.Event()
    body = Body(b"a", gate, b"b", b"c", b"d")
    out = Output(pause_after_writes=1)  # the first write (head and "a") fills the client's window
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    await asyncio.sleep(0.01)
    assert out.writes == [HEAD + b"1\r\na\r\n"] and body.asked == 2
    gate.set()
    await asyncio.sleep(0.01)
    # "b" came after the wait and the output is paused: "b" is written, then drain is awaited
    # and the body is not asked for "c" until the client has read.
    assert out.writes == [HEAD + b"1\r\na\r\n", b"1\r\nb\r\n"]
    assert out.drains == 1 and body.asked == 2
    await asyncio.sleep(0.05)
    assert body.asked == 2 and not task.done()
    out.resume()
    await asyncio.wait_for(task, 1)
    assert out.writes[2:] == [b"2\r\ncd\r\n0\r\n\r\n"] and body.asked == 5


async def test_paused_from_the_start_the_body_waits_for_drain() -> None:
    body = Body(b"a", b"b")
    out = Output(pause_after_writes=0)
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    await asyncio.sleep(0.02)
    assert body.asked == 0 and out.drains == 1 and not task.done()
    out.resume()
    await asyncio.wait_for(task, 1)
    data = b"".join(out.writes)
    assert data == HEAD + b"2\r\nab\r\n0\r\n\r\n"


async def test_a_cancellation_while_draining_closes_the_body() -> None:
    body = Body(b"a", b"b")
    out = Output(pause_after_writes=0)
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert body.asked == 0 and body.closed == 1


async def test_aclose_runs_when_the_body_ends() -> None:
    gate = asyncio.Event()
    body = Body(b"a", gate)
    task = asyncio.create_task(EventStream(body, {}).send(Output(), HEAD))
    await asyncio.sleep(0.01)
    assert body.closed == 0  # not before the end
    gate.set()
    await asyncio.wait_for(task, 1)
    assert body.closed == 1


@pytest.mark.parametrize("wait_first", [False, True], ids=["raises-at-once", "raises-after-a-wait"])
async def test_aclose_runs_when_the_body_raises(wait_first: bool) -> None:
    gate = asyncio.Event()
    body = Body(b"a", *([gate] if wait_first else []), ValueError("upstream broke"))
    out = Output()
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    if wait_first:
        await asyncio.sleep(0.01)
        gate.set()
    with pytest.raises(ValueError, match="upstream broke"):
        await asyncio.wait_for(task, 1)
    assert body.closed == 1
    assert not any(w.endswith(b"0\r\n\r\n") for w in out.writes), "a failed body must not end like a success"


async def test_aclose_runs_when_the_sending_task_is_cancelled_mid_wait() -> None:
    body = Body(b"a", asyncio.Event(), b"never")
    out = Output()
    task = asyncio.create_task(EventStream(body, {}).send(out, HEAD))
    await asyncio.sleep(0.01)
    assert out.writes == [HEAD + b"1\r\na\r\n"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert body.cancelled, "the cancellation reaches the body's own wait"
    assert body.closed == 1
    assert out.writes == [HEAD + b"1\r\na\r\n"]  # no last chunk: the answer was cut


async def test_an_async_generator_body_runs_its_finally_when_cancelled() -> None:
    finished: list[str] = []

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            finished.append("finally")

    task = asyncio.create_task(EventStream(frames(), {}).send(Output(), HEAD))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert finished == ["finally"]


async def test_a_body_that_never_waits_is_written_in_turns_that_let_other_tasks_run() -> None:
    """A fast upstream's frames all come ready: they must neither pile up unwritten nor hold the loop."""
    frame = b"data: " + b"x" * 1000 + b"\n\n"
    count = 1000  # about 1 MB, every frame ready at once
    body = Body(*([frame] * count))
    out = Output()
    turns = 0  # how many times another task ran while the stream was being sent
    sizes_at_turn: list[int] = []

    async def other() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1
            sizes_at_turn.append(sum(map(len, out.writes)))

    ticker = asyncio.create_task(other())
    await EventStream(body, {}).send(out, HEAD)
    ticker.cancel()
    data = b"".join(out.writes)
    assert b"".join(dechunk(data[len(HEAD):])) == frame * count
    assert all(len(w) <= TURN_BYTES + 2 * len(frame) for w in out.writes), "more than a turn's frames in one write"
    assert turns >= count * len(frame) // (TURN_BYTES + len(frame)) - 1
    # Between two turns of the other task, at most one turn's bytes were written.
    steps = [b - a for a, b in itertools.pairwise(sizes_at_turn)]
    assert max(steps) <= TURN_BYTES + 2 * len(frame) + len(HEAD)
