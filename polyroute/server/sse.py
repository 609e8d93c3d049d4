"""Server-sent events framing for OpenAI-style chat streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator, Mapping
from typing import Any, cast

import orjson
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

DONE = b"data: [DONE]\n\n"


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class EventStream:
    """An SSE answer sent straight over ASGI, one write for the frames that are ready together.

    Frames that are already there when the body is asked for the next one (the
    role chunk with the first token, the last token with the usage chunk and
    ``[DONE]``, everything one read from the upstream carried) leave in one write:
    on loopback and in VMs a write costs more than the rest of a chunk's work.
    To know whether the next frame is ready, each step of the body is started by
    hand (``_Step``); when it would wait, what is pending is written at once, then
    the step is awaited as usual. Time spent on a slow client is spent between
    steps, never inside one, so it never counts as the upstream's stall.

    Starlette's ``StreamingResponse`` runs every answer in a task group of two tasks; on
    the hot path one is enough. A pending ``receive()`` completes with ``http.disconnect``
    when the client goes; its callback cancels the task sending the answer wherever it
    waits, so the generator's cleanup (cancel the attempt, bill what the upstream sent)
    runs at once, as it would there.
    """

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.body = body
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self.status_code = 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        sender = asyncio.current_task(loop)
        left = False

        def client_left(waiter: asyncio.Future[Message]) -> None:
            nonlocal left
            if not waiter.cancelled() and sender is not None:
                left = True
                sender.cancel()

        gone: asyncio.Future[Message] | None = None
        pending: list[bytes] = []
        early = sends_early(send)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while True:
                if pending and not early:
                    await send(_body(pending, True))
                    pending = []
                step = _Step(self.body)
                if step.ready:
                    if step.ended:
                        break
                    pending.append(step.value)
                    continue
                if pending and _send_now(send, _body(pending, True)):
                    pending = []
                if gone is None and not pending:
                    # Set up after the first token has left: it is not kept waiting for a task.
                    gone = asyncio.ensure_future(receive(), loop=loop)
                    gone.add_done_callback(client_left)
                try:
                    pending.append(await step)
                except StopAsyncIteration:
                    break
            if gone is not None:
                gone.remove_done_callback(client_left)
            await send(_body(pending, False))
        except asyncio.CancelledError:
            if not left or sender is None:
                raise
            sender.uncancel()  # our own cancellation, done with: the task goes on to clean up
        finally:
            if gone is not None:
                gone.remove_done_callback(client_left)
                gone.cancel()
            aclose = getattr(self.body, "aclose", None)
            if aclose is not None:
                await aclose()


def _body(frames: list[bytes], more: bool) -> Message:
    return {"type": "http.response.body", "body": b"".join(frames), "more_body": more}


def sends_early(send: Send) -> bool:
    """Whether ``send`` may be run by hand while a step of the body is under way.

    uvicorn's ``send`` (its httptools protocol, which ``polyroute serve`` runs) waits,
    if at all, only for a slow client to drain, and before it writes anything: one
    that stops there can be dropped and sent again later.
    Of other servers nothing is known; with them each frame is sent and awaited in turn.
    """
    return isinstance(getattr(send, "__self__", None), RequestResponseCycle)


def _send_now(send: Send, message: Message) -> bool:
    """Send ``message`` if that needs no waiting; False leaves it unsent."""
    sending = cast(Coroutine[Any, Any, None], send(message))
    try:
        sending.send(None)
    except StopIteration:
        return True
    sending.close()  # it stopped before writing anything: the frames stay pending
    return False


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
                    return cast(bytes, done.value)
                continue
            try:
                future = it.send(result)
            except StopIteration as done:
                return cast(bytes, done.value)
