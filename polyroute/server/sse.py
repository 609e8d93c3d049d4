"""Server-sent events framing for OpenAI-style chat streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

DONE = b"data: [DONE]\n\n"


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class EventStream:
    """An SSE answer sent straight over ASGI, with one task to notice the client leaving.

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
        sender = asyncio.current_task()
        left = False

        def client_left(waiter: asyncio.Future[Message]) -> None:
            nonlocal left
            if not waiter.cancelled() and sender is not None:
                left = True
                sender.cancel()

        gone: asyncio.Future[Message] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for data in self.body:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                if gone is None:
                    # Set up after the first token has left: it is not kept waiting for a task.
                    gone = asyncio.ensure_future(receive())
                    gone.add_done_callback(client_left)
            if gone is not None:
                gone.remove_done_callback(client_left)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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
