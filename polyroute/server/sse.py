"""Server-sent events framing for OpenAI-style chat streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

from polyroute.server.answers import Output, header_lines

DONE = b"data: [DONE]\n\n"
_TYPE = b"content-type: text/event-stream; charset=utf-8\r\n"
_CHUNKED = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
# Frames that keep coming ready are written, and the other tasks let run, every this many bytes:
# a body that never has to wait must neither hold the event loop nor pile up unwritten.
TURN_BYTES = 64 * 1024


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(frames: list[bytes]) -> bytes:
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def _plain(frames: list[bytes]) -> bytes:
    return b"".join(frames)


class EventStream:
    """An SSE answer, chunked, one write for the frames that are ready together.

    Frames that are already there when the body is asked for the next one (the
    role chunk with the first token, the last token with the usage chunk and
    ``[DONE]``, everything one read from the upstream carried) leave in one write:
    on loopback and in VMs a write costs more than the rest of a chunk's work.
    To know whether the next frame is ready, each step of the body is started by
    hand (``_Step``); when it would wait, what is pending is written at once, then
    the step is awaited as usual. The response head leaves with the first frames.

    A client that reads slower than the stream comes is waited for between steps,
    never inside one, so that time never counts as the upstream's stall. Frames
    that are all ready at once leave every ``TURN_BYTES``, each time letting the
    other tasks run, so what waits to be written stays bounded however fast the
    body comes.
    """

    status = 200

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.body = body
        self.headers = headers
        # HTTP/1.0 has no chunked encoding: the body then ends with the connection.
        self.chunked = True

    def head_fields(self) -> list[bytes]:
        return [_TYPE, _CHUNKED, *header_lines(self.headers)] if self.chunked else [_TYPE, *header_lines(self.headers)]

    async def send(self, out: Output, head: bytes) -> None:
        framed = _chunk if self.chunked else _plain
        pending: list[bytes] = []
        size = 0
        try:
            while True:
                if out.paused():
                    out.write(head + framed(pending))
                    head, pending, size = b"", [], 0
                    await out.drain()
                step = _Step(self.body)
                if step.ready:
                    if step.ended:
                        break
                    pending.append(step.value)
                    size += len(step.value)
                    if size > TURN_BYTES:
                        out.write(head + framed(pending))
                        head, pending, size = b"", [], 0
                        await asyncio.sleep(0)
                    continue
                if pending or head:
                    out.write(head + framed(pending))
                    head, pending, size = b"", [], 0
                try:
                    pending.append(await step)
                except StopAsyncIteration:
                    break
            out.write(head + framed(pending) + (_LAST_CHUNK if self.chunked else b""))
        finally:
            await _close(self.body)

    def closing(self, payload: Any) -> bytes:
        """The last bytes of a stream cut before its end: an event saying why, then the body's end."""
        if self.chunked:
            return _chunk([self.error_event(payload)]) + _LAST_CHUNK
        return self.error_event(payload)

    def error_event(self, payload: Any) -> bytes:
        """The event that says why a stream was cut (``payload``: the error in OpenAI's shape), as its wire format
        frames errors."""
        return event(payload)

    async def aclose(self) -> None:
        """Never sent (its client left first): a body that can be told so (``Unsent``) is, else it is closed."""
        if isinstance(self.body, Unsent):
            await self.body.unsent()
        else:
            await _close(self.body)


@runtime_checkable
class Unsent(Protocol):
    """A body that ends otherwise when its answer was never sent (the request then ends as unanswered)."""

    async def unsent(self) -> None: ...


async def _close(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


class _Step:
    """One ``anext`` of a body, started at once: ``ready`` when it finished without waiting.

    When it did not, awaiting the step goes on from where it stopped, exactly as
    ``await anext(body)`` would have: the future it waits on is handed to the task,
    and a cancellation is passed in to it.
    """

    __slots__ = ("_future", "_it", "ended", "ready", "value")

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._it = anext(body).__await__()
        self.ready = True
        self.ended = False
        self.value = b""
        try:
            self._future = self._it.send(None)
        except StopIteration as done:
            self.value = done.value
            return
        except StopAsyncIteration:
            self.ended = True
            return
        self.ready = False

    def __await__(self) -> Generator[Any, None, bytes]:
        it, future = self._it, self._future
        while True:
            try:
                result = yield future
            except BaseException as exc:  # a cancellation, or the task being closed
                try:
                    future = it.throw(exc)
                except StopIteration as done:
                    value: bytes = done.value
                    return value
                continue
            try:
                future = it.send(result)
            except StopIteration as done:
                value = done.value
                return value
